"""PhysioNet 2012 features built on Spark equal those built on DuckDB: the same FeatureDefinition, the same SQL.

A subset of set A (converted to FHIR NDJSON) goes through the Spark ingest to Parquet; the features are then built
from that Parquet on Spark and from a DuckDB store of the same NDJSON. Means are compared to 1e-12 relative (a
floating-point sum depends on the order rows arrive in, which neither engine fixes); everything else exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from medml.config import get_settings
from medml.fhir.convert import physionet2012 as convert
from medml.fhir.features import build_features
from medml.fhir.ingest import ingest
from medml.fhir.store import FhirStore
from medml.fhir.tasks import physionet_definition, stays
from medml.scale.features import build_features_spark
from medml.scale.ingest import ingest_ndjson, load_resources

PHYSIONET = get_settings().data_root / "icu" / "physionet-2012-set-a"
N_STAYS = 40


def test_physionet_features_are_equal_on_spark_and_duckdb(spark: Any, tmp_path: Path) -> None:
    if not PHYSIONET.is_dir():
        pytest.skip(f"PhysioNet 2012 set A not found at {PHYSIONET}")
    ndjson = tmp_path / "ndjson"
    convert.write_ndjson(PHYSIONET, ndjson, limit=N_STAYS)
    with FhirStore(tmp_path / "store.duckdb") as store:
        ingest(store, [ndjson])
        enc = stays(store)
        index = pd.Series((enc["admitted"] + pd.Timedelta(hours=48)).to_numpy(), index=enc["patient_id"].to_numpy())
        definition = physionet_definition()
        on_duckdb = build_features(store, definition, index)
    report = ingest_ndjson(spark, [ndjson], tmp_path / "parquet")
    assert report.by_type["Encounter"] == N_STAYS
    on_spark = build_features_spark(spark, load_resources(spark, [tmp_path / "parquet"]), definition, index)

    a, b = on_duckdb.X, on_spark.X
    assert len(a) == N_STAYS and list(b.columns) == list(a.columns) == definition.columns()
    assert on_spark.patient_ids == on_duckdb.patient_ids
    assert (b["Gender"].astype(str) == a["Gender"].astype(str)).all()
    means = [c for c in a.columns if c.endswith("_mean")]
    exact = [c for c in a.columns if c != "Gender" and c not in means]
    pd.testing.assert_frame_equal(b[exact], a[exact], check_exact=True)
    np.testing.assert_allclose(b[means].to_numpy(float), a[means].to_numpy(float), rtol=1e-12)
    assert np.array_equal(np.isnan(b[means].to_numpy(float)), np.isnan(a[means].to_numpy(float)))
    assert a[exact].notna().to_numpy().mean() > 0.3  # real values were compared, not only missing ones
    assert on_spark.dropped_by_patient == on_duckdb.dropped_by_patient
