"""docs/cds-hooks-requirements.csv, the map from each CDS Hooks 2.0 SHALL (and SHALL NOT) for a CDS service to the
tests that cover it, kept true: every such statement of the requirement list (../shared/data/cds-hooks/requirements)
is in it once, every test it names exists, and a row no test covers says why.

Tests are found by reading the test files with ``ast``, not by collecting them, so this runs in a moment.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from cds_requests import CDS

from requirement_maps import node_problem

ROOT = Path(__file__).resolve().parents[2]
MAP = ROOT / "docs" / "cds-hooks-requirements.csv"
REQUIREMENTS = CDS / "requirements" / "cds-hooks_2.0_requirements.csv"
COLUMNS = ["id", "conformance", "actors", "requirement", "status", "tests", "reason"]
STATUSES = ("covered", "not-applicable", "not-covered")


def service_shalls(path: Path) -> dict[str, dict[str, str]]:
    """The SHALL and SHALL NOT statements whose actors include the CDS Service, by id."""
    with path.open(newline="", encoding="utf-8") as f:
        return {
            r["id"]: r
            for r in csv.DictReader(f)
            if r["conformance"] in ("SHALL", "SHALL NOT") and "Service" in (a.strip() for a in r["actors"].split(","))
        }


def read_map(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS, reader.fieldnames
        return list(reader)


def problems(rows: Sequence[Mapping[str, str]], shalls: Mapping[str, Mapping[str, str]], root: Path) -> list[str]:
    """What is wrong with the map: missing, extra or repeated rows, unknown tests, uncovered rows without a reason."""
    found: list[str] = []
    counts = Counter(r["id"] for r in rows)
    found += [f"row {i} is in the map {n} times" for i, n in counts.items() if n > 1]
    found += [f"SHALL {i} for a service is not in the map" for i in shalls if i not in counts]
    found += [f"row {i} is not a SHALL for a service" for i in counts if i not in shalls]
    for row in rows:
        rid, status = row["id"], row["status"]
        source = shalls.get(rid)
        if source is not None and (row["conformance"], row["actors"]) != (source["conformance"], source["actors"]):
            found.append(f"row {rid}: conformance and actors are not the requirement list's")
        if not row["requirement"].strip():
            found.append(f"row {rid} does not say what it requires")
        if status not in STATUSES:
            found.append(f"row {rid}: status {status!r} is not one of {STATUSES}")
        tests = [t.strip() for t in row["tests"].split(";") if t.strip()]
        if status == "covered" and not tests:
            found.append(f"row {rid} is covered by no test")
        if status in ("not-applicable", "not-covered") and len(row["reason"].strip()) < 20:
            found.append(f"row {rid} is {status} without a reason")
        found += [f"row {rid}: {p}" for p in (node_problem(t, root) for t in tests) if p]
    return found


@pytest.fixture(scope="module")
def shalls() -> dict[str, dict[str, str]]:
    if not REQUIREMENTS.is_file():
        pytest.skip(f"no CDS Hooks requirement list at {REQUIREMENTS}")
    return service_shalls(REQUIREMENTS)


def test_the_map_has_every_service_shall_once_each_with_real_tests_or_a_reason(
    shalls: dict[str, dict[str, str]],
) -> None:
    rows = read_map(MAP)
    assert len(shalls) == 73  # the list's SHALL and SHALL NOT statements for a service
    assert problems(rows, shalls, ROOT) == []
    assert [r["id"] for r in rows] == sorted((r["id"] for r in rows), key=int)


def test_the_checks_find_each_kind_of_rot(shalls: dict[str, dict[str, str]]) -> None:
    rows = read_map(MAP)
    by_id = {r["id"]: r for r in rows}
    conformance = "tests/service/test_cds_conformance.py"
    changed = ("2", "4", "5", "9", "10", "13", "16", "201")
    broken = [
        *[r for r in rows if r["id"] not in changed],  # 4 dropped, the others changed below
        {**by_id["5"], "tests": f"{conformance}::test_that_was_renamed"},
        {**by_id["6"], "id": "15"},  # a Client's SHALL
        {**by_id["7"]},  # a second 7
        {**by_id["2"], "status": "not-covered", "reason": ""},
        {**by_id["9"], "status": "partly"},
        {**by_id["10"], "tests": ""},
        {**by_id["13"], "tests": "tests/service/test_gone.py::test_x"},
        {**by_id["201"], "tests": by_id["201"]["tests"].replace("[alg none]", "[alg nothing]")},
        {**by_id["16"], "conformance": "SHOULD"},
    ]
    found = problems(broken, shalls, ROOT)
    expected = [
        "row 7 is in the map 2 times",
        "SHALL 4 for a service is not in the map",
        "row 15 is not a SHALL for a service",
        f"row 5: {conformance} defines no test_that_was_renamed",
        "row 2 is not-covered without a reason",
        "row 9: status 'partly' is not one of ('covered', 'not-applicable', 'not-covered')",
        "row 10 is covered by no test",
        "row 13: tests/service/test_gone.py does not exist",
        "row 201: tests/service/test_auth.py: no parameter id 'alg nothing' for "
        "test_bad_tokens_are_refused_with_a_reason_that_hides_the_token",
        "row 16: conformance and actors are not the requirement list's",
    ]
    for message in expected:
        assert message in found, (message, found)
    assert len(found) == len(expected), found
