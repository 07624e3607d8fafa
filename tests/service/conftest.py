"""A deployed PhysioNet model and real stays as FHIR, shared by the service tests."""

from __future__ import annotations

from typing import Any

import pytest
from cds_requests import SET_A, STAYS, data_root

# ---- a deployed PhysioNet model and real stays as FHIR, shared by the service tests -------------------------------


@pytest.fixture(scope="session")
def model_home(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Settings whose registry holds a small LightGBM model of PhysioNet 2012 in-hospital death (about 15 s)."""
    from medml.config import Settings
    from medml.pipelines.catalogue import load_dataset
    from medml.pipelines.tabular import TrainConfig, train

    if not (SET_A / "set-a.tar.gz").is_file():
        pytest.skip(f"no PhysioNet data at {SET_A}")
    home = tmp_path_factory.mktemp("medml-home")
    settings = Settings(home=home, data_root=data_root())
    mp = pytest.MonkeyPatch()
    mp.setenv("MEDML_HOME", str(home))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    try:
        train(
            load_dataset("physionet-2012"),
            # two trials whatever the machine's speed: the same model every run (test_cards_golden.py)
            TrainConfig(model="lgbm", budget_seconds=600, max_trials=2, n_boot=100),
            settings,
        )
    finally:
        mp.undo()
    return settings


@pytest.fixture(scope="session")
def stays() -> dict[str, list[dict[str, Any]]]:
    """The picked stays converted to FHIR: Patient id -> its Patient, Encounter and Observations."""
    from medml.fhir.convert.physionet2012 import iter_stays

    if not (SET_A / "set-a.tar.gz").is_file():
        pytest.skip(f"no PhysioNet data at {SET_A}")
    return {stay[0]["id"]: stay for stay in iter_stays(SET_A, record_ids=STAYS)}


@pytest.fixture(scope="session")
def stay_store(tmp_path_factory: pytest.TempPathFactory, stays: dict[str, list[dict[str, Any]]]) -> Any:
    """A DuckDB FHIR store file holding the picked stays."""
    from medml.fhir.store import FhirStore

    path = tmp_path_factory.mktemp("store") / "fhir.duckdb"
    with FhirStore(path) as store:
        store.add([r for rs in stays.values() for r in rs])
    return path
