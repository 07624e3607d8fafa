"""The NEWS2 patient-view card end to end: real uvicorn on loopback, an EHR's request with the vital signs prefetched.

References from outside: the RCP 2017 chart and its test vectors (../shared/data/clinical-scores, read through
rcp_tables, which shares no code with medml) for every sub-score, total and band; the CDS Hooks 2.0 JSON Schemas
(../shared/data/cds-hooks) for the discovery document and the response; and, on real PhysioNet 2012 stays, the
streaming scorer of `medml vitals watch` for the score at the newest observation.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import orjson
import pytest
from fhir_vitals import T0, full_set, observation
from rcp_tables import MISSING, NEWS2, NEWS2_FILE, band_score, news2_reference, spo2_reference

from medml.config import Settings, get_settings
from medml.service.app import create_app
from medml.service.config import ServiceConfig
from medml.vitals import EarlyWarningStream

pytestmark = pytest.mark.skipif(not NEWS2_FILE.is_file(), reason=MISSING)
CDS = get_settings().data_root / "cds-hooks"
SET_A = get_settings().data_root / "icu" / "physionet-2012-set-a"
PID = "1"
NOW = T0 + timedelta(minutes=30)
EXT = "org.medml.news2"
P = NEWS2.get("parameters", {})


def check(instance: Any, name: str) -> None:
    path = CDS / "schemas" / f"cds-hooks-2.0.{name}.schema.json"
    if path.is_file():
        jsonschema.validate(instance, json.loads(path.read_text()), format_checker=jsonschema.FormatChecker())


def searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def request(resources: list[dict[str, Any]] | None, patient: str = PID, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/example", "patientId": patient},
        **extra,
    }
    if resources is not None:
        body["prefetch"] = {"observations": searchset(resources)}
    return body


@pytest.fixture()
def config(tmp_path: Path) -> ServiceConfig:
    return ServiceConfig(home=tmp_path / "service", auth="off", news2_service=True, monitor=False, pages=False)


def client_for(tmp_path: Path, config: ServiceConfig, serve: Callable[[Any], str], now: datetime = NOW) -> httpx.Client:
    settings = Settings(home=tmp_path, data_root=get_settings().data_root)
    return httpx.Client(base_url=serve(create_app(settings, config, clock=lambda: now)), timeout=60)


@pytest.fixture()
def client(tmp_path: Path, config: ServiceConfig, serve: Callable[[Any], str]) -> Iterator[httpx.Client]:
    with client_for(tmp_path, config, serve) as c:
        yield c


def news2_card(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post("/cds-services/news2", json=body)
    assert r.status_code == 200, r.text
    check(r.json(), "service-response")
    (card,) = r.json()["cards"]
    return dict(card)


def table(detail: str) -> dict[str, list[str]]:
    """The parameter table of the card's detail: parameter -> [value, measured, sub-score]."""
    rows = [line.strip("|").split("|") for line in detail.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[1:]}


def vector_set(inp: dict[str, Any], minutes: float = 0, patient: str = f"Patient/{PID}") -> list[dict[str, Any]]:
    """A test vector's inputs as the seven Observations a monitor sends (oxygen: 2 L/min)."""
    acvpu = {"A": "Alert", "C": "New confusion", "V": "Voice", "P": "Pain", "U": "Unresponsive"}[inp["acvpu"]]
    return full_set(
        patient=patient,
        minutes=minutes,
        rr=inp["rr"],
        spo2=inp["spo2"],
        o2_flow=2 if inp["o2"] == "oxygen" else 0,
        sbp=inp["sbp"],
        pulse=inp["pulse"],
        acvpu=acvpu,
        temp=inp["temp"],
    )


def chart_sub_scores(inp: dict[str, Any]) -> dict[str, int]:
    """Each sub-score from the chart tables, SpO2 on Scale 1 (the card's scale)."""
    return {
        "respiratory rate": band_score(P["respiration_rate_per_min"], inp["rr"]),
        "SpO2": int(spo2_reference(inp["spo2"], 1, inp["o2"] == "oxygen")),  # type: ignore[arg-type]
        "supplemental oxygen": P["air_or_oxygen"][inp["o2"]],
        "systolic blood pressure": band_score(P["systolic_bp_mmHg"], inp["sbp"]),
        "pulse": band_score(P["pulse_per_min"], inp["pulse"]),
        "consciousness": P["consciousness_acvpu"][inp["acvpu"]],
        "temperature": band_score(P["temperature_celsius"], inp["temp"], places=1),
    }


def test_off_unless_service_yaml_turns_it_on(tmp_path: Path, serve: Callable[[Any], str]) -> None:
    off = ServiceConfig(home=tmp_path / "off", auth="off", monitor=False, pages=False)
    with client_for(tmp_path, off, serve) as c:
        assert c.get("/cds-services").json()["services"] == []
        assert c.post("/cds-services/news2", json=request(full_set())).status_code == 404


def test_discovery_names_the_service_and_prefetches_every_vital_sign_code(client: httpx.Client) -> None:
    doc = client.get("/cds-services").json()
    check(doc, "discovery-response")
    (svc,) = doc["services"]
    assert svc["id"] == "news2" and svc["hook"] == "patient-view" and "NEWS2" in svc["title"]
    query = svc["prefetch"]["observations"]
    assert query.startswith("Observation?patient={{context.patientId}}&code=")
    for code in ("9279-1", "59408-5", "8480-6", "8867-4", "8310-5", "67775-7", "3151-8", "3150-0", "9269-2"):
        assert f"http://loinc.org|{code}" in query


@pytest.mark.parametrize("vector", NEWS2.get("test_vectors", []), ids=lambda v: json.dumps(v["in"], sort_keys=True))
def test_each_sub_score_total_and_band_are_the_rcp_charts(client: httpx.Client, vector: dict[str, Any]) -> None:
    inp = vector["in"]
    card = news2_card(client, request(vector_set(inp)))
    expected = chart_sub_scores(inp)
    result = card["extension"][EXT]["news2"]
    assert result["sub_scores"] == expected and result["complete"] and result["spo2_scale"] == 1
    assert {k: v[2] for k, v in table(card["detail"]).items()} == {k: f"**{v}**" for k, v in expected.items()}
    total = sum(expected.values())
    if inp["scale"] == 1:  # the vector's own total and band (its Scale 2 vectors need a prescribed target)
        assert total == vector["expect_total"] == news2_reference(inp)
    assert result["total"] == total and card["summary"].startswith(f"NEWS2 {total}: {result['band']} clinical risk")
    assert result["band"] == ("high" if total >= 7 else "medium" if total >= 5 else result["band"])
    if inp["scale"] == 1:
        assert result["band"] == vector["expect_risk"]
    assert card["indicator"] == {"low": "info", "high": "critical"}.get(result["band"], "warning")
    detail = card["detail"]
    for needed in ("NEWS2 (RCP 2017)", "not a diagnosis", "SpO2 Scale 1", "Unauthenticated demo", "Response"):
        assert needed in detail, needed
    assert card["source"]["label"] == "medml · NEWS2 (RCP 2017)"


def test_missing_and_stale_parameters_are_named_and_never_scored_as_normal(client: httpx.Client) -> None:
    sets = full_set(minutes=0, rr=26)
    fresh = [o for o in sets if o["code"]["coding"][0]["code"] not in ("8310-5", "8867-4")]  # no temperature, pulse
    old_pulse = observation("8867-4", 72, minutes=-5 * 60, patient=f"Patient/{PID}")  # 5 h 30 min before NOW
    card = news2_card(client, request([*fresh, old_pulse]))
    result = card["extension"][EXT]["news2"]
    assert result["missing"] == ["temperature"] and result["stale"] == ["pulse"] and not result["complete"]
    assert "temperature" not in result["sub_scores"] and "pulse" not in result["sub_scores"]
    rows = table(card["detail"])
    assert rows["temperature"] == ["—", "—", "missing: not scored"]
    assert rows["pulse"][0] == "72 /min" and rows["pulse"][2] == "stale: not scored"
    assert "**Not scored:** temperature (missing), pulse (stale: older than 4 h)" in card["detail"]
    assert card["summary"].startswith("NEWS2 at least 3 (2 of 7 not scored): low-medium clinical risk")


def test_the_trend_is_the_score_at_each_observation_time_of_the_last_24_hours(
    tmp_path: Path, config: ServiceConfig, serve: Callable[[Any], str]
) -> None:
    vectors = [v["in"] for v in NEWS2["test_vectors"] if v["in"]["scale"] == 1]
    calm, worse, worst = vectors[0], vectors[1], vectors[2]  # totals 0, 6 and 20 by the chart
    resources = [
        *vector_set(worst, minutes=-30 * 60),  # 30 h before: outside the window
        *vector_set(calm, minutes=0),
        *vector_set(worse, minutes=4 * 60),
        *vector_set(worst, minutes=8 * 60),
    ]
    with client_for(tmp_path, config, serve, now=T0 + timedelta(hours=9)) as c:
        card = news2_card(c, request(resources))
    trend = card["extension"][EXT]["trend"]
    expected = [news2_reference(v) for v in (calm, worse, worst)]
    assert [p["total"] for p in trend["points"]] == expected
    assert [p["time"] for p in trend["points"]] == [
        "2024-05-01T08:00:00Z",
        "2024-05-01T12:00:00Z",
        "2024-05-01T16:00:00Z",
    ]
    assert (trend["min"], trend["max"], trend["last"], trend["direction"]) == (
        min(expected),
        max(expected),
        expected[-1],
        "up",
    )
    assert f"{' → '.join(map(str, expected))}" in card["detail"] and "↑ rising" in card["detail"]
    assert card["summary"] == f"NEWS2 {expected[-1]}: high clinical risk, rising"


def test_observations_it_cannot_use_are_counted_and_requests_it_cannot_answer_say_why(
    client: httpx.Client, config: ServiceConfig
) -> None:
    other = observation("8867-4", 140, patient="Patient/2")
    kelvin = observation("8310-5", 310.15, unit="K", patient=f"Patient/{PID}")
    card = news2_card(client, request([*full_set(patient=f"Patient/{PID}"), other, kelvin]))
    assert card["extension"][EXT]["not_used"] == {"another patient's": 1, "unit refused": 1}
    assert "Observations not used: 2 (another patient's 1, unit refused 1)" in card["detail"]
    assert card["extension"][EXT]["news2"]["sub_scores"]["pulse"] == 0  # Patient/2's pulse 140 is not this one's
    nothing = news2_card(client, request([]))
    assert nothing["summary"].startswith("NEWS2 not scored: no vital signs recorded")
    no_prefetch = client.post("/cds-services/news2", json=request(None))
    assert no_prefetch.status_code == 412 and "fhirServer" in no_prefetch.json()["error"]
    not_bundle = client.post("/cds-services/news2", json={**request(None), "prefetch": {"observations": full_set()[0]}})
    assert not_bundle.status_code == 400 and "must be a FHIR Bundle" in not_bundle.json()["error"]
    records = [orjson.loads(x) for x in config.audit_path.read_bytes().splitlines()]
    assert [r["status"] for r in records] == [200, 200, 412, 400]
    assert records[0]["patient"] == PID and records[0]["model"] == "NEWS2 (RCP 2017)"
    assert records[0]["cards"][0]["summary"] == card["summary"]


@pytest.fixture(scope="module")
def stays() -> dict[str, list[dict[str, Any]]]:
    from medml.fhir.convert.physionet2012 import iter_stays

    if not (SET_A / "set-a.tar.gz").is_file():
        pytest.skip(f"no PhysioNet 2012 set A at {SET_A}")
    return {s[0]["id"]: s for s in iter_stays(SET_A, record_ids=(132539, 132548, 132551, 132973, 135757))}


def test_on_real_stays_the_card_scores_as_the_stream_does_at_the_newest_observation(
    tmp_path: Path, config: ServiceConfig, serve: Callable[[Any], str], stays: dict[str, list[dict[str, Any]]]
) -> None:
    for pid, resources in stays.items():
        observations = [r for r in resources if r["resourceType"] == "Observation"]
        stream = EarlyWarningStream()
        for r in observations:
            stream.add(r)
        reference = stream.current(f"Patient/{pid}")
        with client_for(tmp_path / pid, config, serve, now=reference.time) as c:
            result = news2_card(c, request(observations, patient=pid))["extension"][EXT]["news2"]
        assert result["sub_scores"] == dict(reference.news2.sub_scores), pid
        assert (result["total"], result["band"]) == (reference.news2.total, reference.news2.band), pid
        assert (result["missing"], result["stale"]) == (list(reference.news2.missing), list(reference.news2.stale))
    assert reference.time.tzinfo is not None and reference.time < datetime.now(UTC)


@pytest.mark.parametrize(("later", "score"), [("GCS", 3), ("ACVPU", 0)])
def test_consciousness_is_the_later_of_acvpu_and_gcs_as_in_the_stream(
    client: httpx.Client, later: str, score: int
) -> None:
    base = [o for o in full_set(patient=f"Patient/{PID}") if o["code"]["coding"][0]["code"] != "67775-7"]
    acvpu = observation("67775-7", "Alert", patient=f"Patient/{PID}", minutes=10 if later == "ACVPU" else 0)
    gcs = observation("9269-2", 13, patient=f"Patient/{PID}", minutes=10 if later == "GCS" else 0)
    card = news2_card(client, request([*base, acvpu, gcs]))
    stream = EarlyWarningStream()
    for r in [*base, acvpu, gcs]:
        stream.add(r)
    expected = P["consciousness_acvpu"]["A" if later == "ACVPU" else "C"]  # GCS < 15: not alert
    assert card["extension"][EXT]["news2"]["sub_scores"]["consciousness"] == expected == score
    assert stream.current(f"Patient/{PID}").news2.sub_scores["consciousness"] == expected
    shown = table(card["detail"])["consciousness"][0]
    assert shown == ("GCS 13" if later == "GCS" else "A (ACVPU)")
