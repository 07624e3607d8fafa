"""A patient whose FHIR Consent refuses research use is left out of the training cohort built from a store, and the
cohort's population (what the report and model card show) says how many were left out.

Which Consents count is checked shape by shape against the FHIR R4 Consent resource's definitions (status, scope
``research``, root provision ``deny``, its period); the cohort against the tabular adapter's rows for the same stays,
an independent reader of the record files."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest

from medml.config import get_settings
from medml.deid.consent import CONSENT_SCOPE, decisions, left_out_note, research_refusals
from medml.fhir.convert import physionet2012 as convert
from medml.fhir.ingest import ingest
from medml.fhir.store import FhirStore
from medml.fhir.tasks import physionet_in_hospital_death
from medml.pipelines.catalogue import load_dataset
from medml.pipelines.tabular import intended_use

PHYSIONET = get_settings().data_root / "icu" / "physionet-2012-set-a"
N_STAYS = 40
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def consent(who: str, *, cid: str = "c", **changes: Any) -> dict[str, Any]:
    """An R4 Consent refusing research use (the shape of the spec's example consent-example-notThem, scope research)."""
    c: dict[str, Any] = {
        "resourceType": "Consent",
        "id": cid,
        "status": "active",
        "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "research"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{who}"},
        "dateTime": "2025-01-01",
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
        "provision": {"type": "deny"},
    }
    for key, value in changes.items():
        if value is None:
            c.pop(key, None)
        else:
            c[key] = value
    return c


def refused(*consents: dict[str, Any]) -> set[str]:
    return {p for p, d in decisions(copy.deepcopy(list(consents)), NOW).items() if d.refused}


def test_an_active_research_deny_refuses() -> None:
    assert refused(consent("a")) == {"a"}
    assert refused(consent("a", patient={"reference": "https://ehr.example/fhir/Patient/a/_history/3"})) == {"a"}
    assert refused(consent("a", patient={"reference": "urn:uuid:0e3c4f1e-8d5a-4f43-9a40-2c3e9c7f1a11"})) == {
        "0e3c4f1e-8d5a-4f43-9a40-2c3e9c7f1a11"
    }


@pytest.mark.parametrize(
    "changes",
    [
        {"status": "inactive"},
        {"status": "proposed"},
        {"status": "entered-in-error"},
        {"scope": {"coding": [{"system": CONSENT_SCOPE, "code": "patient-privacy"}]}},
        {"scope": {"coding": [{"system": "urn:other", "code": "research"}]}},
        {"provision": {"type": "permit"}},
        {"provision": {"type": "permit", "provision": [{"type": "deny", "purpose": [{"code": "HRESCH"}]}]}},
        {"provision": {"type": "deny", "period": {"end": "2026-01-01"}}},  # a refusal that has ended
        {"provision": {"type": "deny", "period": {"start": "2027-01-01"}}},  # one not yet begun
        {"patient": {"reference": "Group/g1"}},
        {"patient": None},
    ],
    ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items())[:60],
)
def test_other_shapes_refuse_nothing(changes: dict[str, Any]) -> None:
    assert refused(consent("a", **changes)) == set()


def test_the_latest_decision_counts() -> None:
    later_yes = consent("a", cid="2", dateTime="2025-06-01", provision={"type": "permit"})
    assert refused(consent("a", cid="1"), later_yes) == set()
    later_no = consent("a", cid="2", dateTime="2025-06-01")
    assert refused(consent("a", cid="1", provision={"type": "permit"}), later_no) == {"a"}
    same_day = consent("a", cid="2", provision={"type": "permit"})
    assert refused(consent("a", cid="1"), same_day) == {"a"}  # a tie: the refusal
    assert refused(consent("a", cid="1", provision={"type": "deny", "period": {"end": "2027-01-01"}})) == {"a"}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> FhirStore:
    if not PHYSIONET.is_dir():
        pytest.skip("the shared PhysioNet 2012 data is not here (MEDML_DATA)")
    out = tmp_path_factory.mktemp("pn-consent")
    convert.write_ndjson(PHYSIONET, out, limit=N_STAYS)
    st = FhirStore(out / "store.duckdb")
    ingest(st, [out])
    return st


def test_the_cohort_leaves_out_the_refusing_patients_and_says_how_many(store: FhirStore) -> None:
    before = physionet_in_hospital_death(store)
    assert len(before) == N_STAYS and "no patient left out" in before.population
    patients = list(before.groups)
    refusing = patients[3:7]
    shapes = [consent(p, cid=f"no-{i}") for i, p in enumerate(refusing)]
    shapes += [
        consent(patients[10], cid="inactive", status="inactive"),
        consent(patients[11], cid="treatment", scope={"coding": [{"system": CONSENT_SCOPE, "code": "treatment"}]}),
        consent(patients[12], cid="agreed", provision={"type": "permit"}),
    ]
    store.add(shapes)
    try:
        assert research_refusals(store) == frozenset(refusing)
        after = physionet_in_hospital_death(store)
    finally:
        store.con.execute("DELETE FROM resources WHERE resource_type = 'Consent'")
    assert len(after) == N_STAYS - len(refusing)
    assert set(after.groups) == set(patients) - set(refusing)
    assert "4 patients left out: their FHIR Consent refuses research use" in after.population
    assert "4 patients left out" in intended_use(after)  # what the model card and report carry
    # the rows kept are the tabular adapter's rows for those stays, value for value
    tab = load_dataset("physionet-2012")
    expected = tab.X.set_index(pd.Index(tab.ids)).loc[list(after.ids)]
    numeric = [c for c in expected.columns if c != "Gender"]
    got = after.X.set_index(pd.Index(after.ids))[numeric].to_numpy(float)
    np.testing.assert_allclose(got, expected[numeric].to_numpy(float), rtol=1e-12)
    assert np.array_equal(after.y.values, pd.Series(tab.y.values, index=tab.ids).loc[list(after.ids)].to_numpy())


def test_the_note_counts() -> None:
    assert left_out_note(1) == "1 patient left out: their FHIR Consent refuses research use"
    assert left_out_note(1234).startswith("1,234 patients")
