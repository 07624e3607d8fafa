"""The one console of the `medml` command, its progress bar and how it prints a model's headline numbers."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    from medml.evaluate.schema import Estimate

# Wide enough for the metric tables when the output is a file or a pipe (rich would assume 80 columns).
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)


@contextmanager
def progress_bar(title: str) -> Iterator[Any]:
    """A progress bar on stderr; yields a callback (description, fraction) for the workflow steps."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as bar:
        task = bar.add_task(title, total=1.0)

        def update(desc: str, frac: float) -> None:
            bar.update(task, description=f"{title}: {desc}", completed=max(0.0, min(frac, 1.0)))

        yield update


def split_list(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else ()


def fmt(v: Any, digits: int = 3) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def interval(h: dict[str, Any]) -> str:
    return f"{fmt(h['auroc'])} ({fmt(h['auroc_low'])}-{fmt(h['auroc_high'])})"


def estimate_text(e: Estimate, digits: int = 3) -> str:
    """A value with its interval, ``0.875 (0.843-0.897)``; ``-`` where not measured."""
    return f"{fmt(e.value, digits)} ({fmt(e.low, digits)}-{fmt(e.high, digits)})"


def print_metrics(title: str, h: dict[str, Any]) -> None:
    t = Table(title=title, show_header=True, header_style="bold")
    for col in ("n", "events", "AUROC (95% CI)", "AUPRC", "Brier", "cal. slope", "cal. intercept"):
        t.add_column(col, justify="right")
    t.add_row(
        str(h["n"]),
        str(h.get("n_events", "-")),
        interval(h),
        fmt(h["auprc"]),
        fmt(h["brier"]),
        fmt(h["calibration_slope"]),
        fmt(h["calibration_intercept"]),
    )
    out.print(t)


__all__ = ["err", "estimate_text", "fmt", "interval", "out", "print_metrics", "progress_bar", "split_list"]
