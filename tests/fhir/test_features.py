"""Features from FHIR: the same numbers as the tabular adapter, the same from a store as from a prefetch Bundle.

The reference for PhysioNet 2012 is the tabular adapter (its own parser of the record files, pandas aggregation):
an independent path to the same 225 inputs. Units, windows and plausibility limits are checked on small
resources whose answers are computed by hand.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from medml.config import get_settings
from medml.errors import DataError
from medml.fhir.convert import physionet2012 as convert
from medml.fhir.features import Conversion, FeatureDefinition, Measurement, build_features
from medml.fhir.ingest import ingest
from medml.fhir.store import FhirStore
from medml.fhir.tasks import physionet_definition, physionet_in_hospital_death, stays
from medml.pipelines.catalogue import load_dataset

PHYSIONET = get_settings().data_root / "icu" / "physionet-2012-set-a"
N_STAYS = 120


@pytest.fixture(scope="module")
def physionet_store(tmp_path_factory: pytest.TempPathFactory) -> FhirStore:
    out = tmp_path_factory.mktemp("pn-fhir")
    convert.write_ndjson(PHYSIONET, out, limit=N_STAYS)
    store = FhirStore(out / "store.duckdb")
    ingest(store, [out])
    return store


def test_fhir_features_equal_the_tabular_adapter(physionet_store: FhirStore) -> None:
    ds = physionet_in_hospital_death(physionet_store)
    tab = load_dataset("physionet-2012")
    assert len(ds) == N_STAYS
    ids = list(ds.ids)
    expected = tab.X.set_index(pd.Index(tab.ids)).loc[ids]
    got = ds.X.set_index(pd.Index(ds.ids))
    assert list(got.columns) == list(expected.columns)
    numeric = [c for c in expected.columns if c != "Gender"]
    np.testing.assert_allclose(got[numeric].to_numpy(float), expected[numeric].to_numpy(float), rtol=1e-12)
    assert (got["Gender"].astype(str) == expected["Gender"].astype(str)).all()
    y_tab = pd.Series(tab.y.values, index=tab.ids).loc[ids].to_numpy()
    assert np.array_equal(ds.y.values, y_tab)
    assert ds.binary_target.prevalence > 0


def test_scoring_from_the_store_equals_scoring_from_per_patient_bundles(physionet_store: FhirStore) -> None:
    definition = physionet_definition()
    enc = stays(physionet_store).head(6)
    index = pd.Series((enc["admitted"] + pd.Timedelta(hours=48)).to_numpy(), index=enc["patient_id"].to_numpy())
    from_store = build_features(physionet_store, definition, index).X
    records = _record_files(PHYSIONET, enc["stay_id"].tolist())
    for i, (pid, when) in enumerate(index.items()):
        bundle = convert.stay_bundle(records[i])
        one = build_features(bundle, definition, pd.Series([when], index=[pid])).X
        pd.testing.assert_frame_equal(one.reset_index(drop=True), from_store.iloc[[i]].reset_index(drop=True))


def _record_files(root: Path, stay_ids: list[str]) -> list[Path]:
    import tarfile
    import tempfile

    tmp = Path(tempfile.mkdtemp())
    with tarfile.open(root / "set-a.tar.gz") as tf:
        members = {Path(m.name).stem: m for m in tf if m.name.endswith(".txt")}
        out = []
        for sid in stay_ids:
            data = tf.extractfile(members[sid])
            assert data is not None
            path = tmp / f"{sid}.txt"
            path.write_bytes(data.read())
            out.append(path)
    return out


# --- units, windows, plausibility, age and sex, on resources whose answers are known ------------------------


def _obs(oid: str, pid: str, code: str, value: float, unit: str, when: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }


TEMP = Measurement(
    "temp",
    "Body temperature",
    ("8310-5",),
    "Cel",
    aggregates=("first", "last", "max", "count"),
    conversions=(Conversion("[degF]", multiply=5, divide=9, offset=-160 / 9),),
    plausible=(25, 45),
)
HR = Measurement("hr", "Heart rate", ("8867-4",), "/min", aggregates=("mean", "count", "since"))
DEFINITION = FeatureDefinition("test", (TEMP, HR), window_hours=24)
INDEX = pd.Series({"p1": datetime(2024, 5, 2, 12, tzinfo=UTC), "p2": datetime(2024, 5, 2, 12, tzinfo=UTC)})


def _resources() -> list[dict[str, Any]]:
    return [
        {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1954-05-02"},
        {"resourceType": "Patient", "id": "p2", "gender": "other"},
        _obs("t1", "p1", "8310-5", 37.0, "Cel", "2024-05-02T01:00:00Z"),
        _obs("t2", "p1", "8310-5", 102.2, "[degF]", "2024-05-02T06:00:00+02:00"),  # 39 Cel, 04:00Z
        _obs("t3", "p1", "8310-5", 310.0, "K", "2024-05-02T07:00:00Z"),  # a unit we do not convert: left out
        _obs("t4", "p1", "8310-5", 0.0, "Cel", "2024-05-02T08:00:00Z"),  # implausible: left out
        _obs("t5", "p1", "8310-5", 36.0, "Cel", "2024-05-01T11:59:00Z"),  # before the 24 h window
        _obs("t6", "p1", "8310-5", 40.0, "Cel", "2024-05-02T12:01:00Z"),  # after the index time
        _obs("h1", "p1", "8867-4", 80.0, "/min", "2024-05-02T09:00:00Z"),
        _obs("h2", "p1", "8867-4", 100.0, "/min", "2024-05-02T10:00:00Z"),
        {**_obs("a1", "p2", "30525-0", 71.0, "a", "2024-05-02T00:00:00Z")},
    ]


def test_units_windows_and_limits() -> None:
    built = build_features(_resources(), DEFINITION, INDEX)
    p1 = built.X.iloc[0]
    assert p1["temp_first"] == 37.0 and p1["temp_last"] == pytest.approx(39.0) and p1["temp_count"] == 2
    assert p1["temp_max"] == pytest.approx(39.0)
    assert p1["hr_mean"] == 90.0 and p1["hr_count"] == 2 and p1["hr_since"] == 2.0  # last at 10:00, index 12:00
    assert built.dropped == {("temp", "unit K"): 1, ("temp", "implausible"): 1}
    assert p1["age"] == pytest.approx(70.0, abs=0.01) and p1["sex"] == "Female"
    p2 = built.X.iloc[1]
    assert p2["age"] == 71.0 and pd.isna(p2["sex"]) and p2["temp_count"] == 0 and pd.isna(p2["temp_first"])
    assert pd.isna(p2["hr_since"])
    assert built.missing("p2", DEFINITION) == ["Body temperature", "Heart rate"]
    assert built.missing("p1", DEFINITION) == []


def test_the_same_features_from_a_store_a_list_and_a_bundle() -> None:
    resources = _resources()
    from_list = build_features(resources, DEFINITION, INDEX).X
    from_store = build_features(FhirStore.in_memory(resources), DEFINITION, INDEX).X
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
    from_bundle = build_features(bundle, DEFINITION, INDEX).X
    pd.testing.assert_frame_equal(from_list, from_store)
    pd.testing.assert_frame_equal(from_list, from_bundle)


def test_bad_index_times_are_clear_errors() -> None:
    with pytest.raises(DataError, match="no patients"):
        build_features(_resources(), DEFINITION, pd.Series(dtype=object))
    with pytest.raises(DataError, match="unreadable.*p1"):
        build_features(_resources(), DEFINITION, pd.Series({"p1": "yesterday-ish"}))
    with pytest.raises(DataError, match="Bundle or a list"):
        build_features({"resourceType": "Patient", "id": "x"}, DEFINITION, INDEX)
