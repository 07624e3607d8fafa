"""NEWS2 against the RCP 2017 chart: every test vector, every band of Chart 1 over its whole range, the rounding rule
on the band edges, both SpO2 scales, the Chart 2/3 bands and responses, and missing or stale parameters."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rcp_tables import (
    MISSING,
    NEWS2,
    NEWS2_FILE,
    band_score,
    news2_reference,
    risk_reference,
    spo2_reference,
)

from medml.errors import DataError
from medml.vitals import Reading, VitalSigns, as_of, news2
from medml.vitals.news2 import (
    clinical_risk,
    pulse_score,
    respiratory_rate_score,
    response,
    spo2_score,
    systolic_bp_score,
    temperature_score,
)

pytestmark = pytest.mark.skipif(not NEWS2_FILE.is_file(), reason=MISSING)
VECTORS = NEWS2.get("test_vectors", [])
PARAMS = NEWS2.get("parameters", {})
NORMAL = {"rr": 16, "spo2": 97, "scale": 1, "o2": "air", "sbp": 125, "pulse": 72, "acvpu": "A", "temp": 36.8}


def vitals_of(inp: dict[str, Any]) -> VitalSigns:
    return VitalSigns(
        respiratory_rate=inp["rr"],
        spo2=inp["spo2"],
        supplemental_oxygen=inp["o2"] == "oxygen",
        systolic_bp=inp["sbp"],
        pulse=inp["pulse"],
        consciousness=inp["acvpu"],
        temperature=inp["temp"],
    )


@pytest.mark.parametrize("vector", VECTORS, ids=[f"vector{i}" for i in range(len(VECTORS))])
def test_every_rcp_test_vector(vector: dict[str, Any]) -> None:
    result = news2(vitals_of(vector["in"]), spo2_scale=vector["in"]["scale"])
    assert result.total == vector["expect_total"]
    assert result.band == vector["expect_risk"]
    assert result.complete and result.missing == () and result.stale == ()
    assert sum(result.sub_scores.values()) == result.total and len(result.sub_scores) == 7
    assert (result.score, result.version) == ("NEWS2", "RCP 2017")


def test_the_vectors_agree_with_the_chart_tables_themselves() -> None:
    """The test vectors and Chart 1 in the same file are consistent (so both references are usable)."""
    for vector in VECTORS:
        assert news2_reference(vector["in"]) == vector["expect_total"]


@pytest.mark.parametrize(
    ("table", "score", "values", "places"),
    [
        ("respiration_rate_per_min", respiratory_rate_score, range(0, 81), 0),
        ("systolic_bp_mmHg", systolic_bp_score, range(40, 301), 0),
        ("pulse_per_min", pulse_score, range(20, 301), 0),
        ("temperature_celsius", temperature_score, [x / 10 for x in range(250, 451)], 1),
    ],
)
def test_chart_1_bands_over_the_whole_plausible_range(table: str, score: Any, values: Any, places: int) -> None:
    for v in values:
        assert score(v) == band_score(PARAMS[table], v, places), (table, v)


@pytest.mark.parametrize(
    ("table", "score", "edges", "places"),
    [
        ("respiration_rate_per_min", respiratory_rate_score, [8.4, 8.5, 11.49, 11.5, 20.5, 24.5], 0),
        ("systolic_bp_mmHg", systolic_bp_score, [90.4, 90.5, 100.5, 110.5, 219.49, 219.5], 0),
        ("pulse_per_min", pulse_score, [40.5, 50.5, 90.49, 90.5, 110.5, 130.5], 0),
        ("temperature_celsius", temperature_score, [35.04, 35.05, 36.05, 38.04, 38.05, 39.05, 36.95], 1),
    ],
)
def test_values_between_chart_rows_round_half_up_to_the_chart_precision(
    table: str, score: Any, edges: list[float], places: int
) -> None:
    """The documented rule: round half up to the chart precision (whole numbers; 0.1 degC), then band."""
    for v in edges:
        assert score(v) == band_score(PARAMS[table], v, places), (table, v)


@pytest.mark.parametrize("on_oxygen", [False, True])
def test_spo2_scale_1_ignores_oxygen_and_scale_2_upper_bands_need_it(on_oxygen: bool) -> None:
    for v in range(40, 101):
        assert spo2_score(v, 1, on_oxygen) == spo2_reference(v, 1, on_oxygen), v
        assert spo2_score(v, 2, on_oxygen) == spo2_reference(v, 2, on_oxygen), v
    for half in (91.5, 92.5, 93.5, 95.5, 83.5, 85.5, 87.5, 94.5, 96.5):
        assert spo2_score(half, 2, on_oxygen) == spo2_reference(half, 2, on_oxygen), half


def test_scale_2_at_93_or_more_on_air_scores_0_and_on_oxygen_up_to_3() -> None:
    on_air = {**NORMAL, "scale": 2, "spo2": 97, "o2": "air"}
    on_o2 = {**NORMAL, "scale": 2, "spo2": 97, "o2": "oxygen"}
    assert (
        news2(vitals_of(on_air), spo2_scale=2).sub_scores["SpO2"] == PARAMS["spo2_scale2_percent"]["on_air"][0]["score"]
    )
    r = news2(vitals_of(on_o2), spo2_scale=2)
    assert r.sub_scores["SpO2"] == spo2_reference(97, 2, True) == 3
    assert r.sub_scores["supplemental oxygen"] == PARAMS["air_or_oxygen"]["oxygen"]


def test_scale_2_with_air_or_oxygen_unknown_is_not_scored_as_normal() -> None:
    r = news2(VitalSigns(spo2=95, respiratory_rate=16), spo2_scale=2)
    assert "SpO2" not in r.sub_scores and not r.complete
    assert "supplemental oxygen" in r.missing and any("Scale 2" in n for n in r.notes)
    # below 93 % Scale 2 does not depend on oxygen: scored
    assert news2(VitalSigns(spo2=85), spo2_scale=2).sub_scores["SpO2"] == spo2_reference(85, 2, None)


def test_acvpu_new_confusion_voice_pain_unresponsive_score_3() -> None:
    for letter, points in PARAMS["consciousness_acvpu"].items():
        assert news2(vitals_of({**NORMAL, "acvpu": letter})).sub_scores["consciousness"] == points


def test_gcs_stands_in_for_acvpu_where_it_is_not_charted() -> None:
    alert = news2(VitalSigns(gcs=15)).sub_scores["consciousness"]
    confused = news2(VitalSigns(gcs=14)).sub_scores["consciousness"]
    assert (alert, confused) == (PARAMS["consciousness_acvpu"]["A"], PARAMS["consciousness_acvpu"]["C"])
    # ACVPU, when charted, wins over the proxy
    assert news2(VitalSigns(consciousness="A", gcs=9)).sub_scores["consciousness"] == 0


@pytest.mark.parametrize(
    ("total", "red"), [(t, red) for t in range(0, 21) for red in (False, True) if t >= 3 or not red]
)
def test_chart_2_bands_and_chart_3_responses(total: int, red: bool) -> None:
    """Every total 0-20, with and without a single parameter scoring 3 (which alone makes 3)."""
    row = risk_reference(total, red)
    band = clinical_risk(total, red)
    assert band == row["clinical_risk"]
    action, monitoring = response(band, total)
    assert monitoring == row["minimum_monitoring"]
    assert action.startswith(row["response"].split(" (")[0])


def test_a_single_red_parameter_is_low_medium_and_its_response() -> None:
    r = news2(vitals_of({**NORMAL, "pulse": 135}))
    row = risk_reference(r.total, True)
    assert (r.total, r.band) == (3, row["clinical_risk"]) == (3, "low-medium")
    assert r.response.startswith(row["response"].split(" (")[0]) and r.monitoring == row["minimum_monitoring"]


def test_a_missing_parameter_is_named_and_never_scored_as_normal() -> None:
    inp = {**NORMAL, "temp": 39.5, "pulse": 120}
    full = news2(vitals_of(inp))
    r = news2(replace(vitals_of(inp), respiratory_rate=None))
    assert not r.complete and r.missing == ("respiratory rate",) and r.stale == ()
    assert "respiratory rate" not in r.sub_scores
    assert r.total == full.total - full.sub_scores["respiratory rate"]
    assert "partial" in r.response and "lower bound" in r.response
    assert news2(VitalSigns()).missing == (
        "respiratory rate",
        "SpO2",
        "supplemental oxygen",
        "systolic blood pressure",
        "pulse",
        "consciousness",
        "temperature",
    )


def test_a_stale_parameter_is_named_with_the_validity_window_configurable() -> None:
    now = datetime(2024, 5, 1, 12, tzinfo=UTC)
    readings = {
        "respiratory rate": Reading(26, now - timedelta(hours=5)),
        "SpO2": Reading(97, now - timedelta(minutes=10)),
        "supplemental oxygen": Reading(False, now - timedelta(minutes=10)),
        "systolic blood pressure": Reading(125, now - timedelta(hours=3, minutes=59)),
        "pulse": Reading(72, now),
        "consciousness": Reading("A", now),
        "temperature": Reading(36.8, now - timedelta(hours=4, seconds=1)),
    }
    r = news2(as_of(readings, now))
    assert r.stale == ("respiratory rate", "temperature") and r.missing == () and not r.complete
    assert set(r.sub_scores) == {"SpO2", "supplemental oxygen", "systolic blood pressure", "pulse", "consciousness"}
    six_hours = news2(as_of(readings, now, validity=timedelta(hours=6)))
    assert six_hours.complete
    assert six_hours.sub_scores["respiratory rate"] == band_score(PARAMS["respiration_rate_per_min"], 26)
    # a reading later than the time asked about is not used
    earlier = news2(as_of(readings, now - timedelta(minutes=30)))
    assert earlier.missing == ("SpO2", "supplemental oxygen", "pulse", "consciousness")


def test_implausible_values_and_unknown_levels_are_refused_with_what_to_do() -> None:
    with pytest.raises(DataError, match="SpO2 150 is outside its plausible range 40-100"):
        VitalSigns(spo2=150)
    with pytest.raises(DataError, match="temperature 98.6 is outside"):
        VitalSigns(temperature=98.6)
    with pytest.raises(DataError, match="not an ACVPU letter"):
        VitalSigns(consciousness="drowsy")
    with pytest.raises(DataError, match="scale"):
        news2(VitalSigns(), spo2_scale=3)
    with pytest.raises(DataError, match="outside"):
        VitalSigns(pulse=float("nan"))


def test_the_result_names_its_score_version_and_producer() -> None:
    d = news2(vitals_of(NORMAL)).to_dict()
    assert d["score"] == "NEWS2" and d["version"] == "RCP 2017" and d["produced_by"].startswith("medml ")
    assert d["band"] == "low" and d["monitoring"] == risk_reference(0, False)["minimum_monitoring"]
