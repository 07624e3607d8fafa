"""qSOFA against Sepsis-3 (Seymour 2016): every test vector, each criterion at its threshold as the table states it,
ACVPU where no GCS is charted, and missing or stale criteria that are named, never taken as normal."""

from __future__ import annotations

import operator
import re
from typing import Any

import pytest
from rcp_tables import MISSING, QSOFA, QSOFA_FILE

from medml.vitals import VitalSigns, qsofa

pytestmark = pytest.mark.skipif(not QSOFA_FILE.is_file(), reason=MISSING)
VECTORS = QSOFA.get("test_vectors", [])
_OPS = {">=": operator.ge, "<=": operator.le, "<": operator.lt, ">": operator.gt}
NAMES = {
    "respiratory_rate": "respiratory rate",
    "altered_mentation": "altered mentation",
    "systolic_bp": "systolic blood pressure",
}
_FIELD = {"RR": "respiratory_rate", "GCS": "gcs", "SBP": "systolic_bp"}


def criterion(rule: str) -> tuple[str, Any, float]:
    """'RR >= 22 /min' -> ('respiratory_rate', >=, 22)."""
    m = re.match(r"(RR|GCS|SBP) (>=|<=|<|>) (\d+)", rule)
    assert m, rule
    return _FIELD[m.group(1)], _OPS[m.group(2)], float(m.group(3))


@pytest.mark.parametrize("vector", VECTORS, ids=[f"vector{i}" for i in range(len(VECTORS))])
def test_every_sepsis3_test_vector(vector: dict[str, Any]) -> None:
    inp = vector["in"]
    r = qsofa(VitalSigns(respiratory_rate=inp["rr"], gcs=inp["gcs"], systolic_bp=inp["sbp"]))
    assert r.total == vector["expect"] and r.complete
    assert r.positive is (vector["expect"] >= 2)
    assert (r.score, r.version.split(" ")[0]) == ("qSOFA", "Sepsis-3")


@pytest.mark.parametrize("index", range(3))
def test_each_criterion_at_and_around_its_threshold(index: int) -> None:
    spec = QSOFA["criteria"][index]
    field, op, threshold = criterion(spec["rule"])
    others: dict[str, Any] = {"respiratory_rate": 16, "gcs": 15, "systolic_bp": 120}
    lo, hi = {"gcs": (3, 15), "respiratory_rate": (0, 80), "systolic_bp": (40, 300)}[field]
    for v in range(int(max(lo, threshold - 3)), int(min(hi, threshold + 3)) + 1):
        r = qsofa(VitalSigns(**{**others, field: v}))
        expected = spec["points"] if op(v, threshold) else 0
        assert r.total == expected, (spec["rule"], v)
        assert r.criteria[NAMES[spec["name"]]] == expected


def test_acvpu_stands_for_mentation_where_no_gcs_is_charted() -> None:
    assert qsofa(VitalSigns(respiratory_rate=16, consciousness="V", systolic_bp=120)).criteria["altered mentation"]
    assert not qsofa(VitalSigns(respiratory_rate=16, consciousness="A", systolic_bp=120)).total


def test_missing_criteria_are_named_and_decide_only_when_they_could_not_change_it() -> None:
    undecided = qsofa(VitalSigns(respiratory_rate=30))
    assert undecided.positive is None and not undecided.complete
    assert undecided.missing == ("altered mentation", "systolic blood pressure")
    assert "undetermined" in undecided.response
    already = qsofa(VitalSigns(respiratory_rate=30, systolic_bp=90))
    assert already.positive is True and already.missing == ("altered mentation",)
    cannot = qsofa(VitalSigns(respiratory_rate=16, gcs=15))
    assert cannot.positive is False and cannot.missing == ("systolic blood pressure",)
    stale = qsofa(VitalSigns(respiratory_rate=30, systolic_bp=120, stale=("GCS",)))
    assert stale.stale == ("altered mentation",) and stale.missing == () and stale.positive is None


def test_positive_says_it_is_not_a_diagnosis() -> None:
    r = qsofa(VitalSigns(respiratory_rate=30, gcs=10, systolic_bp=85))
    assert r.positive and "not a diagnostic criterion" in r.response
    assert r.to_dict()["produced_by"].startswith("medml ")
