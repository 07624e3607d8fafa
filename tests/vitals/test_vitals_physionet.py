"""The hourly PhysioNet 2012 replay: its mapping of set A's variables (SaO2 for SpO2, GCS for ACVPU, MechVent/FiO2
for oxygen, the later of invasive and cuff systolic pressure), the validity window, and a run over the real set A."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rcp_tables import MISSING, NEWS2, NEWS2_FILE, band_score, spo2_reference

from medml.config import get_settings
from medml.data.cohort import Cohort
from medml.errors import DataError
from medml.vitals.physionet import replay_physionet2012

pytestmark = pytest.mark.skipif(not NEWS2_FILE.is_file(), reason=MISSING)
P = NEWS2.get("parameters", {})


def cohort(events: list[tuple[int, int, str, float]]) -> Cohort:
    table = pd.DataFrame(
        {
            "stay_id": [1, 2],
            "patient_id": [1, 2],
            "SAPS-I": [10, -1],
            "SOFA": [4, 2],
            "In-hospital_death": [1, 0],
            "has_time_series": [True, True],
        }
    )
    ev = pd.DataFrame(events, columns=["stay_id", "time", "variable", "value"])
    ev["time"] = ev["time"].astype(np.int32)
    ev["variable"] = ev["variable"].astype("category")
    return Cohort(name="t", table=table, patient_id="patient_id", unit_id="stay_id", events=ev, provenance="test")


EVENTS = [
    # stay 1: a full set at 00:30 (air, GCS 14), then invasive SBP 95 at 01:30 and ventilation from 03:20
    (1, 30, "RespRate", 26),
    (1, 30, "SaO2", 95),
    (1, 30, "FiO2", 0.21),
    (1, 30, "NISysABP", 120),
    (1, 30, "HR", 80),
    (1, 30, "GCS", 14),
    (1, 30, "Temp", 37.0),
    (1, 90, "SysABP", 95),
    (1, 100, "HR", 5),  # implausible: left out
    (1, 200, "MechVent", 1),
    # stay 2: one heart rate only
    (2, 10, "HR", 135),
]


def test_the_mapping_and_the_worst_hour() -> None:
    r = replay_physionet2012(cohort(EVENTS), hours=6)
    one, two = r.stays.set_index("stay_id").loc[1], r.stays.set_index("stay_id").loc[2]
    # hour 4 (04:00): everything from 00:30 is 210 min old, still valid; SBP 95 (invasive, later); on oxygen
    worst = (
        band_score(P["respiration_rate_per_min"], 26)
        + int(spo2_reference(95, 1, True))  # type: ignore[arg-type]
        + P["air_or_oxygen"]["oxygen"]
        + band_score(P["systolic_bp_mmHg"], 95)
        + band_score(P["pulse_per_min"], 80)
        + P["consciousness_acvpu"]["C"]  # GCS 14: not alert
        + band_score(P["temperature_celsius"], 37.0, 1)
    )
    assert one["worst_news2"] == worst == one["worst_complete_news2"]
    # complete at hours 1-4; from hour 5 (04:30 + 30 s) the 00:30 values are stale
    assert one["complete_news2_hours"] == 4
    assert one["worst_qsofa"] == 3  # RR 26 >= 22, GCS 14 < 15, SBP 95 <= 100
    assert two["worst_news2"] == band_score(P["pulse_per_min"], 135) and np.isnan(two["worst_complete_news2"])
    assert two["complete_news2_hours"] == 0 and two["worst_qsofa"] == 0 and np.isnan(two["worst_complete_qsofa"])
    assert np.isnan(two["SAPS-I"]) and one["died"] == 1
    assert r.dropped["HR"] == 1 and r.coverage["respiratory rate"] == 0.5 and r.coverage["pulse"] == 1.0
    assert "SaO2" in r.mapping["SpO2"] and "GCS" in r.mapping["consciousness"]


def test_the_validity_window_is_configurable() -> None:
    r = replay_physionet2012(cohort(EVENTS), hours=6, validity=timedelta(hours=6))
    assert r.stays.set_index("stay_id").loc[1, "complete_news2_hours"] == 6


def test_refuses_what_it_cannot_replay() -> None:
    with pytest.raises(DataError, match="1-48"):
        replay_physionet2012(cohort(EVENTS), hours=72)
    bare = Cohort(name="t", table=pd.DataFrame({"patient_id": [1]}), patient_id="patient_id", provenance="t")
    with pytest.raises(DataError, match="load_cohort"):
        replay_physionet2012(bare)


@pytest.fixture(scope="module")
def real_cohort(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cohort]:
    root = get_settings().data_root
    if not (root / "icu" / "physionet-2012-set-a" / "set-a.tar.gz").is_file():
        pytest.skip(f"PhysioNet 2012 set A is not under {root} (set MEDML_DATA)")
    from medml.data.datasets import physionet2012

    home: Path = tmp_path_factory.mktemp("medml-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDML_HOME", str(home))
        yield physionet2012.load_cohort(root)


def test_every_stay_of_set_a_is_replayed(real_cohort: Cohort) -> None:
    r = replay_physionet2012(real_cohort)
    stays = real_cohort.table[real_cohort.table["has_time_series"]]
    assert len(r.stays) == len(stays) == 3996
    assert r.stays["worst_news2"].between(0, 20).all() and r.stays["worst_qsofa"].between(0, 3).all()
    assert r.stays["died"].sum() == stays["In-hospital_death"].sum()
    events = real_cohort.events
    assert events is not None
    first_day = events[(events["time"] <= 24 * 60) & (events["variable"] == "RespRate")]
    with_rr = first_day[first_day["value"].between(0, 80)]["stay_id"].nunique()
    assert r.coverage["respiratory rate"] == pytest.approx(with_rr / 3996)
