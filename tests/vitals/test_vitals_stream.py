"""The streaming scorer: an alert on each escalation and only then, at most once per band within the repeat window,
and every kind of bad or awkward record counted (and, where the sender must fix it, reported) without stopping."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from fhir_vitals import LATER, T0, full_set, observation, when
from rcp_tables import MISSING, NEWS2, NEWS2_FILE, band_score, risk_reference

from medml.errors import ConfigError, NotFoundError
from medml.vitals import EarlyWarningStream, StreamConfig
from medml.vitals.stream import (
    ALERTS,
    CORRECTED,
    DUPLICATE,
    FUTURE,
    HELD_BACK,
    NOT_JSON,
    OUT_OF_ORDER,
    USED,
    Assessment,
)

pytestmark = pytest.mark.skipif(not NEWS2_FILE.is_file(), reason=MISSING)


def stream(**config: Any) -> tuple[EarlyWarningStream, list[str]]:
    problems: list[str] = []
    return EarlyWarningStream(StreamConfig(**config), clock=lambda: LATER, on_problem=problems.append), problems


def send(s: EarlyWarningStream, resources: list[dict[str, Any]]) -> list[Assessment]:
    out = []
    for r in resources:
        a = s.add(r)
        if a is not None:
            out.append(a)
    return out


def lines(resources: list[dict[str, Any]]) -> list[str]:
    return [json.dumps(r) for r in resources]


def test_a_normal_patient_raises_nothing_and_escalation_alerts_once_per_band() -> None:
    s, problems = stream()
    assert send(s, full_set(minutes=0)) == []
    alerts = send(s, full_set(minutes=60, rr=26, pulse=115, temp=38.5))
    # RR 26 scores 3 (a red score: low-medium), then pulse 115 takes it to 5 (medium); temperature 38.5 adds 1.
    assert [a.news2.band for a in alerts] == ["low-medium", "medium"]
    last = alerts[-1].to_dict()
    assert last["type"] == "NEWS2 alert" and last["patient"] == "Patient/1" and last["time"] == when(60)
    assert last["previous_band"] == "low-medium" and last["score"] == "NEWS2" and last["version"] == "RCP 2017"
    assert last["produced_by"].startswith("medml ") and "not a diagnosis" in last["intended_use"]
    assert last["parameters"]["respiratory rate"] == {"value": 26, "unit": "/min", "time": when(60)}
    assert s.counts()[ALERTS] == 2 and problems == []
    final = s.current("Patient/1").news2
    p = NEWS2["parameters"]
    expected = (
        band_score(p["respiration_rate_per_min"], 26)
        + band_score(p["pulse_per_min"], 115)
        + band_score(p["temperature_celsius"], 38.5, places=1)
    )
    assert final.complete and final.total == expected
    assert final.band == risk_reference(expected, True)["clinical_risk"]


def test_no_repeat_alert_for_the_same_band_within_the_window_and_again_after_it() -> None:
    s, _ = stream(repeat_after=timedelta(minutes=30))
    send(s, full_set(minutes=0))
    first = send(s, full_set(minutes=1, rr=26))  # red score: low-medium
    assert [a.news2.band for a in first] == ["low-medium"]
    assert send(s, full_set(minutes=2)) == []  # back to low
    assert send(s, full_set(minutes=3, rr=26)) == []  # low-medium again within 30 min: held back
    assert s.counts()[HELD_BACK] == 1
    send(s, full_set(minutes=20))
    again = send(s, full_set(minutes=40, rr=26))  # 39 min after the first alert
    assert [a.news2.band for a in again] == ["low-medium"] and s.counts()[ALERTS] == 2


def test_a_set_sent_as_one_bundle_is_scored_once() -> None:
    s, _ = stream()
    s.feed(json.dumps({"resourceType": "Bundle", "entry": [{"resource": r} for r in full_set()]}), 1)
    bundle = {"resourceType": "Bundle", "entry": [{"resource": r} for r in full_set(minutes=5, rr=26, pulse=135)]}
    alerts = s.feed(json.dumps(bundle), 2)
    assert [a.news2.band for a in alerts] == ["medium"] and alerts[0].previous_band == "low"


def test_out_of_order_observations_are_counted_and_not_used() -> None:
    s, _ = stream()
    send(s, full_set(minutes=10))
    assert send(s, [observation("9279-1", 30, minutes=5)]) == []
    assert s.counts()[OUT_OF_ORDER] == 1
    assert s.current("Patient/1").parameters["respiratory rate"]["value"] == 16


def test_duplicates_by_id_and_by_measurement_time_and_value() -> None:
    s, _ = stream()
    send(s, [observation("8867-4", 80, id="a")])
    send(s, [observation("8867-4", 80, id="a")])  # same id
    send(s, [observation("8867-4", 80, minutes=0)])  # same measurement, time and value, no id
    send(s, [observation("8867-4", 80, minutes=0, id="b")])  # a new id, but the same measurement again
    assert s.counts()[DUPLICATE] == 3 and s.counts()[USED] == 1
    send(s, [observation("8867-4", 80, id="a", meta={"versionId": "2"}, minutes=1)])  # an amended version
    assert s.counts()[USED] == 2


def test_a_correction_at_the_same_time_replaces_the_value() -> None:
    s, _ = stream()
    send(s, full_set())
    alerts = send(s, [observation("8867-4", 135, minutes=0)])
    assert s.counts()[CORRECTED] == 1 and [a.news2.band for a in alerts] == ["low-medium"]


def test_remembered_ids_are_bounded() -> None:
    s, _ = stream(max_remembered_ids=2)
    for i, minute in enumerate((0, 1, 2)):
        send(s, [observation("8867-4", 80 + i, id=f"id{i}", minutes=minute)])
    send(s, [observation("8867-4", 90, id="id2", minutes=3)])
    assert s.counts()[DUPLICATE] == 1


def test_implausible_values_and_refused_units_are_counted_reported_and_left_out() -> None:
    s, problems = stream()
    send(s, [observation("59408-5", 30), observation("8310-5", 310.15, unit="K")])
    counts = s.counts()
    assert counts["implausible value"] == 1 and counts["unit refused"] == 1 and counts[USED] == 0
    assert "SpO2 30 %" in problems[0] and "'K' is refused" in problems[1]


def test_fahrenheit_is_converted_before_scoring() -> None:
    s, _ = stream()
    send(s, [*full_set()[:6], observation("8310-5", 102.2, unit="[degF]")])
    a = s.current("Patient/1")
    assert a.news2.sub_scores["temperature"] == band_score(NEWS2["parameters"]["temperature_celsius"], 39.0, 1)
    assert a.parameters["temperature"]["measured"] == "converted from degF"


def test_bad_lines_are_reported_by_number_and_the_stream_goes_on() -> None:
    s, problems = stream()
    no_subject = observation("8867-4", 80)
    del no_subject["subject"]
    future = observation("8867-4", 80, minutes=0)
    feed = ["{not json", json.dumps(no_subject), "", *lines(full_set(rr=30))]
    alerts = [a for number, line in enumerate(feed, start=1) for a in s.feed(line, number)]
    assert problems[0].startswith("line 1: not JSON") and problems[1].startswith("line 2: pulse Observation has no")
    assert s.counts()[NOT_JSON] == 1 and s.counts()["no subject"] == 1 and [a.news2.band for a in alerts]
    early = EarlyWarningStream(clock=lambda: T0.timestamp() - 3600, on_problem=problems.append)
    early.feed(json.dumps(future), 9)
    assert early.counts()[FUTURE] == 1 and problems[-1].startswith("line 9: pulse of Patient/1 at ")


def test_the_future_tolerance_is_configurable() -> None:
    obs = observation("8867-4", 80, minutes=0)
    ahead = EarlyWarningStream(StreamConfig(future_tolerance=timedelta(minutes=10)), clock=lambda: T0.timestamp() - 300)
    ahead.add(obs)
    assert ahead.counts()[USED] == 1


def test_reports_of_one_kind_stop_after_a_limit_but_the_counts_go_on() -> None:
    s, problems = stream(max_messages_per_kind=3)
    for n in range(10):
        s.feed("garbage", n)
    assert len(problems) == 4 and "no longer reported" in problems[-1] and s.counts()[NOT_JSON] == 10


def test_a_stale_parameter_is_named_in_the_alert_not_scored_as_normal() -> None:
    s, _ = stream()
    send(s, full_set(minutes=0))
    alerts = send(s, [observation("8867-4", 135, minutes=4 * 60 + 1)])
    n = alerts[0].news2
    assert not n.complete and set(n.stale) == {
        "respiratory rate",
        "SpO2",
        "supplemental oxygen",
        "systolic blood pressure",
        "consciousness",
        "temperature",
    }
    assert n.sub_scores == {"pulse": 3} and alerts[0].to_dict()["stale"] == list(n.stale)
    longer, _ = stream(validity=timedelta(hours=6))
    send(longer, full_set(minutes=0))
    send(longer, [observation("8867-4", 135, minutes=4 * 60 + 1)])
    assert longer.current("Patient/1").news2.complete


def test_gcs_and_fio2_stand_in_for_acvpu_and_oxygen_flow() -> None:
    s, _ = stream()
    sets = full_set()
    sets[2] = observation("3150-0", 40)  # FiO2 40 %: on oxygen
    sets[5] = observation("9269-2", 13)  # GCS 13: not alert
    send(s, sets)
    a = s.current("Patient/1")
    p = NEWS2["parameters"]
    assert a.news2.sub_scores["supplemental oxygen"] == p["air_or_oxygen"]["oxygen"]
    assert a.news2.sub_scores["consciousness"] == p["consciousness_acvpu"]["C"]
    assert a.parameters["supplemental oxygen"]["measured"] == "FiO2 40 %"
    assert a.qsofa.criteria["altered mentation"] == 1


def test_scale_2_patients_are_scored_on_scale_2() -> None:
    s, _ = stream(spo2_scale2=frozenset({"Patient/2"}))
    for patient in ("Patient/1", "Patient/2"):
        send(s, full_set(patient=patient, spo2=89))
    p = NEWS2["parameters"]
    assert s.current("Patient/1").news2.sub_scores["SpO2"] == band_score(p["spo2_scale1_percent"], 89)
    assert s.current("Patient/2").news2.sub_scores["SpO2"] == band_score(
        p["spo2_scale2_percent"]["any_air_or_oxygen"], 89
    )
    s.set_spo2_scale("Patient/2", 1)
    assert s.current("Patient/2").news2.spo2_scale == 1
    with pytest.raises(ConfigError):
        s.set_spo2_scale("Patient/2", 3)


def test_every_score_yields_a_score_for_each_used_observation() -> None:
    s, _ = stream(every_score=True)
    out = send(s, full_set())
    assert len(out) == 7 and not any(a.alert for a in out)
    assert out[-1].to_dict()["type"] == "NEWS2 score" and out[-1].news2.complete


def test_a_negative_window_is_refused() -> None:
    with pytest.raises(ConfigError, match="negative"):
        StreamConfig(validity=timedelta(hours=-1))


def test_asking_for_a_patient_never_seen_says_so() -> None:
    s, _ = stream()
    with pytest.raises(NotFoundError, match="Patient/9"):
        s.current("Patient/9")
