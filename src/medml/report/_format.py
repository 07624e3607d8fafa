"""Number and text formatting shared by the HTML report and the model card: one place for the house style."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

DASH = "–"  # shown for a value that was not computed


def value_of(x: Any) -> float | None:
    """The point value of an Estimate dict, a number or None; NaN and None become None."""
    if isinstance(x, Mapping):
        x = x.get("value")
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def floats(values: Sequence[Any] | None) -> npt.NDArray[np.float64]:
    """A list of numbers (or Estimate dicts, or None) as a float array with NaN for the missing."""
    vals = [value_of(v) for v in (values or [])]
    return np.array([np.nan if v is None else v for v in vals], dtype=float)


def interval_of(x: Any) -> tuple[float, float] | None:
    """``(low, high)`` of an Estimate dict when both are present."""
    if not isinstance(x, Mapping):
        return None
    low, high = value_of(x.get("low")), value_of(x.get("high"))
    return None if low is None or high is None else (low, high)


def num(x: Any, digits: int = 3) -> str:
    """A number to ``digits`` decimals; a dash when missing."""
    v = value_of(x)
    return DASH if v is None else f"{v:.{digits}f}"


def est(x: Any, digits: int = 3) -> str:
    """An estimate with its interval, ``0.812 (0.790-0.833)``; ``to`` between bounds when one is negative."""
    v = value_of(x)
    if v is None:
        return DASH
    ci = interval_of(x)
    if ci is None:
        return f"{v:.{digits}f}"
    low, high = ci
    sep = " to " if low < 0 or high < 0 else "-"
    return f"{v:.{digits}f} ({low:.{digits}f}{sep}{high:.{digits}f})"


def pct(x: Any, digits: int = 1) -> str:
    """A fraction as a percentage, ``0.1234`` -> ``12.3%``."""
    v = value_of(x)
    return DASH if v is None else f"{100 * v:.{digits}f}%"


def count(x: Any) -> str:
    """An integer count with thousands separators."""
    v = value_of(x)
    return DASH if v is None else f"{round(v):,}"


def measure_digits(x: float | None) -> int:
    """Decimals for a clinical measurement of magnitude ``x``: 67 years, 1.12 mg/dL, 0.034 ng/mL."""
    if x is None or not math.isfinite(x):
        return 1
    a = abs(x)
    return 0 if a >= 1000 else 1 if a >= 10 else 2 if a >= 1 else 3


def clinical_name(label: str, unit: str = "") -> str:
    """``Creatinine (mg/dL)``: the label a clinician reads, with its unit when there is one."""
    return f"{label} ({unit})" if unit else label


def esc(x: Any) -> str:
    """Any value as escaped HTML text."""
    return html.escape("" if x is None else str(x), quote=True)
