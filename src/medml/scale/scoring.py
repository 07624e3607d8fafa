"""Batch scoring on Spark: a registered model scores a DataFrame with ``mapInPandas``, row for row as ``medml predict``.

The bundle is loaded and verified once on the driver and broadcast, so executors need no access to the model store.
Each Arrow batch goes through :func:`medml.pipelines.tabular.score_table`, the function ``medml predict`` calls:
the same risk, the same contributing factors, the same values left out as implausible, and the model's name@version
on every row.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from medml.errors import ConfigError, DataError, InputFileError
from medml.registry import ModelBundle
from medml.scale._output import check_new_folder, folder_written_whole
from medml.scale._session import pandas_interop


def scores_schema(top: int) -> str:
    """The columns of the scores (as ``medml predict --out`` writes them), as Spark DDL."""
    factors = "".join(f", factor_{k + 1} STRING" for k in range(top))
    return f"id STRING, risk DOUBLE{factors}, left_out STRING, model STRING"


def score_spark(spark: Any, bundle: ModelBundle, frame: Any, *, id_column: str, top: int = 3) -> Any:
    """Each row's calibrated risk and top factors, a lazy Spark DataFrame; ``id_column`` names each patient."""
    if bundle.artifact != "joblib":
        raise ConfigError(
            f"{bundle.metadata.name}@{bundle.metadata.version} is an image model",
            "Spark scores tabular models; score images with medml image predict",
        )
    if id_column not in frame.columns:
        raise DataError(f"no id column {id_column!r} in the input", f"columns are: {', '.join(frame.columns[:20])}")
    shared = spark.sparkContext.broadcast(bundle)

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from medml.pipelines.tabular import score_table

        for batch in batches:
            yield score_table(shared.value, batch, id_column=id_column, top=top)

    return frame.mapInPandas(score, scores_schema(top))


def read_inputs(spark: Any, path: Path) -> Any:
    """The rows to score: a Parquet file or folder (columns as stored, as ``medml predict`` reads Parquet)."""
    if not path.exists():
        raise InputFileError(f"no input at {path}", "give a Parquet file or a folder of Parquet files")
    if path.is_dir() and not any(path.rglob("*.parquet")):
        raise InputFileError(f"{path} holds no Parquet files", "give a Parquet file or a folder of them")
    if path.is_file() and path.suffix.lower() not in (".parquet", ".pq"):
        raise InputFileError(f"--engine spark reads Parquet, not {path.name}", "convert the table to Parquet first")
    return spark.read.parquet(str(path))


def write_scores(spark: Any, bundle: ModelBundle, inputs: Path, out: Path, *, id_column: str, top: int = 3) -> int:
    """Score the Parquet at ``inputs`` and write the scores to the new folder ``out`` (Parquet), whole or not at all.

    Returns the number of rows scored.
    """
    check_new_folder(out)
    frame = read_inputs(spark, inputs)
    with folder_written_whole(out) as tmp, pandas_interop():
        score_spark(spark, bundle, frame, id_column=id_column, top=top).write.parquet(str(tmp))
        rows = int(spark.read.parquet(str(tmp)).count())
    return rows
