"""What every adapter shares: where the real data lies, provenance, age bands, sensitive attributes, ids."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from medml.config import get_settings
from medml.errors import InputFileError

AGE_BANDS = ("<40", "40-59", "60-79", "80+")
UNKNOWN = "Unknown"
SEX = ("Female", "Male")


def resolve_data_root(data_root: str | Path | None = None) -> Path:
    """``data_root``, or the settings' shared data folder; it must exist."""
    root = Path(data_root) if data_root is not None else get_settings().data_root
    if not root.is_dir():
        raise InputFileError(
            f"the shared data folder {root} does not exist",
            "set MEDML_DATA to the folder that holds tabular/ and icu/ (../shared/data beside the checkout), "
            "or pass data_root",
        )
    return root


def source_file(root: Path, relative: str) -> Path:
    """The file ``relative`` under ``root``; a clear error when it is missing."""
    path = root / relative
    if not path.is_file():
        raise InputFileError(
            f"data file {path} is missing",
            f"restore it from the source named in {path.parent / 'SOURCE.txt'}, or point MEDML_DATA elsewhere",
        )
    return path


def provenance(root: Path, *relative: str) -> str:
    """The source files (relative to the data root) and the citation from their folder's SOURCE.txt."""
    cite_file = (root / relative[0]).parent / "SOURCE.txt"
    cite = " ".join(cite_file.read_text(encoding="utf-8").split()) if cite_file.is_file() else "no SOURCE.txt"
    return f"{' + '.join(relative)} (under {root}). SOURCE.txt: {cite}"


def age_band(age: pd.Series) -> pd.Series:
    """Age in years -> "<40", "40-59", "60-79", "80+"; missing -> "Unknown"."""
    bands = pd.cut(
        pd.to_numeric(age, errors="coerce"), [-np.inf, 40, 60, 80, np.inf], right=False, labels=list(AGE_BANDS)
    )
    return bands.astype("string").fillna(UNKNOWN).astype(str)


def sensitive_frame(columns: Mapping[str, pd.Series | Sequence[object]]) -> pd.DataFrame:
    """Sensitive attributes as text, missing -> "Unknown", on a fresh 0..n-1 index."""
    out = {}
    for name, values in columns.items():
        s = pd.Series(np.asarray(values, dtype=object))
        out[name] = s.where(s.notna(), UNKNOWN).map(str)
    return pd.DataFrame(out).astype(str)


def categorical(values: pd.Series, categories: Sequence[str], mapping: Mapping[Any, str] | None = None) -> pd.Series:
    """A categorical column with a fixed category list, so that every site and split shares one schema.

    ``mapping`` translates source codes to labels first; codes it does not know, and values outside
    ``categories``, become missing.
    """
    v = values.map(mapping) if mapping is not None else values
    v = v.where(v.isin(list(categories)))
    return pd.Series(pd.Categorical(v, categories=list(categories)), index=values.index, name=values.name)


def id_array(values: Iterable[object]) -> npt.NDArray[np.object_]:
    """Identifiers as an object array of strings (``groups`` and ``ids`` of a TaskDataset)."""
    return np.asarray([str(v) for v in values], dtype=object)
