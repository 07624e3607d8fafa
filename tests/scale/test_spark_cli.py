"""The Spark engine end to end at the command line (slow: each command starts its own JVM, about 30 s here).

NDJSON (gzipped, a Bulk Data folder) to Parquet by resource type, a view over it written as Parquet with the rows
DuckDB gives, a bad line refused with nothing written, and batch scores equal to ``medml predict`` (1e-9).
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from medml.config import get_settings
from medml.fhir.conformance import same_rows
from medml.fhir.convert import physionet2012 as convert
from medml.fhir.ingest import ingest
from medml.fhir.store import FhirStore
from medml.fhir.view import run_view
from medml.fhir.views import get_view

pytest.importorskip("pyspark", reason="the Spark extra is not installed (pip install -e '.[spark]')")
pytestmark = pytest.mark.slow

MEDML = [sys.executable, "-m", "medml.cli"]
PHYSIONET = get_settings().data_root / "icu" / "physionet-2012-set-a"


def run(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEDML_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([*MEDML, *args], capture_output=True, text=True, env=env, timeout=900)


def test_ingest_and_a_view_on_spark_give_the_rows_of_duckdb(tmp_path: Path) -> None:
    ndjson = tmp_path / "export"
    convert.write_ndjson(PHYSIONET, ndjson, limit=20, compress=True)
    proc = run(["fhir", "ingest", str(ndjson), "--engine", "spark", "--out", str(tmp_path / "parquet")], tmp_path)
    assert proc.returncode == 0, proc.stderr
    with FhirStore(tmp_path / "store.duckdb") as store:
        ingest(store, [ndjson])
        counts = store.counts()
        want = run_view(store.con, get_view("observations")).to_pylist()
    written = pq.read_table(tmp_path / "parquet").to_pandas()
    assert written.groupby("resource_type", observed=True).size().to_dict() == counts
    view_args = ["fhir", "view", "run", "observations", "--engine", "spark", "--input", str(tmp_path / "parquet")]
    proc = run([*view_args, "--out", str(tmp_path / "rows")], tmp_path)
    assert proc.returncode == 0, proc.stderr
    got = pq.read_table(tmp_path / "rows").to_pylist()
    assert len(got) == len(want) > 1000 and same_rows(got, want)

    with gzip.open(ndjson / "Broken.ndjson.gz", "wt") as f:
        f.write('{"resourceType": "Observation", "id": "ok"}\n{"resourceType": "Observation"\n')
    proc = run(["fhir", "ingest", str(ndjson), "--engine", "spark", "--out", str(tmp_path / "again")], tmp_path)
    assert proc.returncode == 2 and "not a FHIR R4 resource with an id" in proc.stderr
    assert not (tmp_path / "again").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".again")] == []


def test_batch_scores_on_spark_equal_medml_predict(tmp_path: Path) -> None:
    from medml.pipelines.catalogue import load_dataset

    home = tmp_path / "home"
    train = ["train", "pima", "--model", "lgbm", "--budget-seconds", "2", "--max-trials", "3", "--n-boot", "20"]
    proc = run(train, home)
    assert proc.returncode == 0, proc.stderr
    ds = load_dataset("pima")
    frame = ds.X.copy()
    frame.insert(0, "pid", [str(i) for i in ds.ids])
    numeric = [c for c in ds.X.columns if pd.api.types.is_numeric_dtype(ds.X[c])]
    frame.loc[:2, numeric[0]] = -1000.0  # implausible: left out and named, the same way on both engines
    frame.to_parquet(tmp_path / "inputs.parquet")
    args = ["predict", "pima-lgbm", "--id", "pid", "--top", "2"]
    proc = run([*args, str(tmp_path / "inputs.parquet"), "--out", str(tmp_path / "scores.csv"), "--no-record"], home)
    assert proc.returncode == 0, proc.stderr
    proc = run(
        [*args, "--engine", "spark", "--input", str(tmp_path / "inputs.parquet"), "--out", str(tmp_path / "spark")],
        home,
    )
    assert proc.returncode == 0, proc.stderr
    assert "pima-lgbm@1" in proc.stdout and "not a diagnosis" in proc.stdout
    local = pd.read_csv(tmp_path / "scores.csv", dtype={"id": str}, keep_default_na=False).set_index("id")
    spark = pq.read_table(tmp_path / "spark").to_pandas().set_index("id").loc[local.index]
    assert len(spark) == len(local) == len(ds.X)
    np.testing.assert_allclose(spark["risk"].to_numpy(), local["risk"].to_numpy(), rtol=0, atol=1e-9)
    for col in ("factor_1", "factor_2", "left_out", "model"):
        assert (spark[col].fillna("") == local[col]).all(), col
    assert (local["left_out"] != "").sum() == 3
