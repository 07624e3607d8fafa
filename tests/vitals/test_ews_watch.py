"""The learned early-warning model beside NEWS2 in `medml vitals watch --model`: its inputs, rebuilt from the FHIR
stream of a stay, are the training features of that stay and hour (the tabular path: set A's files through the
dataset adapter and :func:`medml.vitals.ews.stay_hours`), and the risk on each line is the registered model's on them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from medml.config import get_settings
from medml.data.cohort import Cohort
from medml.vitals.ews import stay_hours
from medml.vitals.ews_stream import LearnedWatch, learned_variable

ROOT = get_settings().data_root
SET_A = ROOT / "icu" / "physionet-2012-set-a"
RECORDS = (132539, 132548, 135757)
needs_set_a = pytest.mark.skipif(not (SET_A / "set-a.tar.gz").is_file(), reason=f"no PhysioNet 2012 set A at {SET_A}")


@pytest.fixture(scope="module")
def real_cohort(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cohort]:
    if not (SET_A / "set-a.tar.gz").is_file():
        pytest.skip(f"no PhysioNet 2012 set A at {SET_A}")
    from medml.data.datasets import physionet2012

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDML_HOME", str(tmp_path_factory.mktemp("medml-home")))
        yield physionet2012.load_cohort(ROOT)


@pytest.fixture(scope="module")
def stays() -> dict[str, list[dict[str, Any]]]:
    from medml.fhir.convert.physionet2012 import iter_stays

    if not (SET_A / "set-a.tar.gz").is_file():
        pytest.skip(f"no PhysioNet 2012 set A at {SET_A}")
    return {s[0]["id"]: s for s in iter_stays(SET_A, record_ids=RECORDS)}


def stand_in(dataset: str = "physionet-2012-ews") -> Any:
    """What LearnedWatch reads of a bundle to build features (no model is asked here)."""
    md = SimpleNamespace(dataset=dataset, headline=None, population="", intended_use="")
    return SimpleNamespace(metadata=md, ref="ews@1")


def same(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    """The columns where two one-row frames differ (NaN equals NaN)."""
    out = []
    for c in a.columns:
        x, y = float(a[c].iloc[0]), float(b[c].iloc[0])
        if not ((np.isnan(x) and np.isnan(y)) or np.isclose(x, y, rtol=1e-9, atol=1e-9)):
            out.append(f"{c}: {x} != {y}")
    return out


@needs_set_a
def test_the_streamed_window_gives_the_training_features_of_each_stay_and_hour(
    real_cohort: Cohort, stays: dict[str, list[dict[str, Any]]]
) -> None:
    reference = stay_hours(real_cohort).frame.set_index(["stay_id", "hour"])
    watch = LearnedWatch(stand_in())
    for resources in stays.values():
        for r in resources[1:]:  # the Encounter (admission), then the Observations, as an EHR's feed sends them
            watch.observe(r)
    for pid in stays:
        record = int(pid.split("-")[1])
        for hour in (1, 2, 7, 24, 48):
            got = watch.features(f"Patient/{pid}", hour).drop(columns=["stay_id", "died"])
            want = reference.loc[[(record, float(hour))]].reset_index(drop=False)[got.columns]
            assert len(got) == 1 and same(got, want) == [], (pid, hour)


def test_generic_codes_are_read_as_the_cuff_pressure_and_a_foreign_unit_is_not_read() -> None:
    def obs(code: str, value: float, unit: str) -> dict[str, Any]:
        return {
            "resourceType": "Observation",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "valueQuantity": {"value": value, "system": "http://unitsofmeasure.org", "code": unit},
        }

    assert learned_variable(obs("8480-6", 120, "mm[Hg]")) == ("NISysABP", 120.0)
    assert learned_variable(obs("59408-5", 95, "%")) == ("SaO2", 95.0)
    assert learned_variable(obs("3150-0", 40, "%")) == ("FiO2", 0.4)  # the table's fraction
    assert learned_variable(obs("8310-5", 98.6, "[degF]")) is None
    assert learned_variable(obs("1234-5", 1, "%")) is None


def test_a_model_that_is_not_an_early_warning_model_is_refused() -> None:
    from medml.errors import ConfigError

    with pytest.raises(ConfigError, match="train-ews"):
        LearnedWatch(stand_in("physionet-2012"))


def test_watch_with_an_unknown_model_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "MEDML_HOME": str(tmp_path), "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "medml.cli", "vitals", "watch", "-", "--model", "no-such-model"],
        input="",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.count("error:") == 1
    assert "no-such-model" in proc.stderr


@needs_set_a
@pytest.mark.slow  # about a minute: trains and registers a small early-warning model
def test_watch_puts_the_registered_models_risk_beside_each_news2_line(
    real_cohort: Cohort, stays: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    from medml.pipelines.ews import train_early_warning
    from medml.pipelines.tabular import TrainConfig
    from medml.registry import load_bundle

    keep = real_cohort.table["stay_id"].isin(real_cohort.table["stay_id"].iloc[:600])
    assert real_cohort.events is not None
    small = Cohort(
        name=real_cohort.name,
        table=real_cohort.table[keep].reset_index(drop=True),
        patient_id="patient_id",
        unit_id="stay_id",
        events=real_cohort.events[real_cohort.events["stay_id"].isin(real_cohort.table["stay_id"][keep])],
        provenance=real_cohort.provenance,
    )
    settings = replace(get_settings(), home=tmp_path)
    train_early_warning(
        TrainConfig(budget_seconds=5, max_trials=2, n_boot=20, name="ews-watch"), settings, cohort=small
    )
    bundle = load_bundle("ews-watch@1", settings)
    pid = "pn2012-132539"
    feed = tmp_path / "stay.ndjson"
    feed.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in stays[pid][1:]))
    env = {**os.environ, "MEDML_HOME": str(tmp_path), "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "medml.cli", "vitals", "watch", str(feed), "--model", "ews-watch", "--no-audit"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.strip()]
    assert lines, "the stay raises NEWS2 alerts"
    reference = stay_hours(real_cohort).frame.set_index(["stay_id", "hour"])
    for line in lines:
        learned = line["learned"]
        assert learned["model"] == "ews-watch@1" and learned["not_scored"] is None
        row = reference.loc[[(132539, float(learned["hour"]))]].reset_index()
        expected = float(bundle.predict_proba(row[bundle.feature_names])[0, 1])
        assert learned["risk"] == pytest.approx(round(expected, 4), abs=1e-4)
        assert learned["intended_use"] == bundle.metadata.intended_use and learned["auroc_test"]["value"] > 0.5
