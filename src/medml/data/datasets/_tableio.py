"""Reading a user's CSV or Parquet table, with errors that say what is wrong with the file and what to do.

CSV cells are read as text first, so that a number column is recognised by its contents, never by pandas'
guess: a column is numeric when at least ``NUMERIC_SHARE`` (90%) of its non-missing cells are numbers. In such a
column any other cell is an error naming the column, the count and the first offending value and row ("text in a
numeric column", e.g. ``<5`` in a lab result), instead of silently turning the column into categories. A column
with fewer numbers than that is categorical. Missing cells are empty or one of ``MISSING_TOKENS``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from medml.errors import DataError, InputFileError, clip, quote

MISSING_TOKENS = ("", "NA", "N/A", "n/a", "na", "NaN", "nan", "NULL", "null", "?", ".")
NUMERIC_SHARE = 0.9
CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    suffix = "".join(path.suffixes) or "(none)"
    raise InputFileError(
        f"cannot read {path}: unsupported format '{suffix}'",
        "save the table as CSV (.csv, .csv.gz, .tsv) or Parquet (.parquet)",
    )


def read_table(path: str | Path) -> pd.DataFrame:
    """The table at ``path``: CSV cells as text (missing as NA), Parquet columns as stored."""
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"no file at {p}", "check the path (relative paths start from the current folder)")
    if p.is_dir():
        raise InputFileError(f"{p} is a folder, not a table", "give the path of a CSV or Parquet file")
    kind = _kind(p)
    if p.stat().st_size == 0:
        raise InputFileError(f"{p} is empty (0 bytes)", "export the table again, with a header row and data rows")
    frame = _read_csv(p) if kind == "csv" else _read_parquet(p)
    if frame.shape[1] == 0:
        raise InputFileError(f"{p} has no columns", "export the table again, with a header row and data rows")
    if len(frame) == 0:
        raise InputFileError(
            f"{p} has a header ({frame.shape[1]} columns) but no data rows", "export the table again with its data rows"
        )
    return frame


def _read_csv(p: Path) -> pd.DataFrame:
    sep = "\t" if p.name.lower().endswith((".tsv", ".tsv.gz")) else ","
    try:
        frame = pd.read_csv(
            p,
            sep=sep,
            dtype=str,
            keep_default_na=False,
            na_values=list(MISSING_TOKENS),
            encoding="utf-8-sig",
            skipinitialspace=True,
        )
    except pd.errors.EmptyDataError as e:
        raise InputFileError(f"{p} is empty (no header row)", "export the table again, with a header row") from e
    except UnicodeDecodeError as e:
        raise InputFileError(
            f"{p} is not UTF-8 text (byte {e.start}: {e.reason})", "save it as UTF-8 CSV, or as Parquet"
        ) from e
    except (pd.errors.ParserError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputFileError(
            f"{p} is not a readable CSV table: {first}",
            "check that every row has the same number of comma-separated fields",
        ) from e
    except (OSError, EOFError) as e:
        raise InputFileError(f"cannot read {p}: {e}", "check that the file is a complete CSV (or .csv.gz)") from e
    duplicated = _duplicate_header(p, sep)
    if duplicated:
        raise InputFileError(
            f"{p} has duplicate column names: {names_list(duplicated)}", "give every column a distinct name"
        )
    return frame


def _duplicate_header(p: Path, sep: str) -> list[str]:
    """Names appearing twice in the header (pandas would silently rename the second to ``name.1``).

    The header row is read by pandas again, as data: the same quoting rules, and no field size limit (the csv
    module stops at 128 KiB, an internal error for a file whose header holds a huge cell).
    """
    row = pd.read_csv(p, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    seen: set[str] = set()
    dups = []
    for name in (str(h).strip() for h in row.iloc[0]):
        if name in seen and name not in dups:
            dups.append(name)
        seen.add(name)
    return dups


def _read_parquet(p: Path) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(p)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise InputFileError(
            f"{p} is not a readable Parquet file ({e})",
            "write it again with pandas.DataFrame.to_parquet or pyarrow, or save it as CSV",
        ) from e
    names = table.column_names
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise InputFileError(f"{p} has duplicate column names: {names_list(dups)}", "give every column a distinct name")
    return table.to_pandas()


def names_list(names: list[str], most: int = 40) -> str:
    """Column names for a message: each shortened (:func:`medml.errors.clip`), at most ``most`` of them."""
    shown = ", ".join(clip(str(n)) for n in names[:most])
    return shown + (f" ... ({len(names)} in all)" if len(names) > most else "")


def is_text(col: pd.Series) -> bool:
    return not (
        pd.api.types.is_numeric_dtype(col)
        or pd.api.types.is_bool_dtype(col)
        or isinstance(col.dtype, pd.CategoricalDtype)
        or pd.api.types.is_datetime64_any_dtype(col)
    )


def as_numeric_if_numeric(col: pd.Series, name: str, where: str, line_offset: int) -> pd.Series:
    """A text column that is mostly numbers -> numbers; a stray text cell in it -> DataError (see module doc).

    ``line_offset`` turns a 0-based row position into the file's line number (CSV: 2, for the header).
    """
    if not is_text(col):
        return col
    text = col.astype("string").str.strip()
    text = text.where(~text.isin(MISSING_TOKENS))
    present = text.notna()
    if not present.any():
        return pd.to_numeric(text, errors="coerce").astype(float)
    numbers = pd.to_numeric(text.where(present), errors="coerce")
    bad = present & numbers.isna()
    n_present, n_bad = int(present.sum()), int(bad.sum())
    if n_bad == 0:
        return numbers
    if (n_present - n_bad) / n_present < NUMERIC_SHARE:
        return col
    pos = int(bad.to_numpy().nonzero()[0][0])
    line = f" (line {pos + line_offset} of the file)" if line_offset else ""
    raise DataError(
        f"column {quote(name)} in {where} holds numbers, but {n_bad} of its {n_present} filled cells are text; "
        f"the first is {quote(text.iloc[pos])} in data row {pos + 1}{line}",
        "correct those cells, or leave them empty where the value is unknown "
        "(a column is read as numeric when at least 90% of its filled cells are numbers)",
    )
