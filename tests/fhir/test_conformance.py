"""The SQL-on-FHIR v2 conformance suite (HL7's own test files) runs green through run_view."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from medml.config import get_settings
from medml.errors import InputFileError
from medml.fhir.conformance import run_conformance

SUITE = get_settings().data_root / "fhir/sql-on-fhir-v2/tests"


@pytest.fixture(scope="module")
def suite() -> Path:
    if not SUITE.is_dir():
        pytest.skip(f"SQL-on-FHIR test suite not found at {SUITE}")
    return SUITE


def test_whole_suite_passes(suite: Path) -> None:
    result = run_conformance([suite])
    failures = [(r.file, r.title, r.reason) for r in result.failures]
    assert failures == []
    assert result.summary() == "106 passed, 0 failed"
    assert len({r.file for r in result.results}) == 22


def test_join_tests_pass_including_the_default_separator(suite: Path) -> None:
    result = run_conformance([suite / "fn_join.json"])
    assert [(r.title, r.passed) for r in result.results] == [
        ("join with comma", True),
        ("join with empty value", True),
        ("join with no value - default to no separator", True),
    ]


def test_a_wrong_expectation_fails_with_a_reason(tmp_path: Path) -> None:
    case = {
        "resources": [{"resourceType": "Patient", "id": "p1"}],
        "tests": [
            {
                "title": "wrong",
                "view": {"resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}]}]},
                "expect": [{"id": "p2"}],
            },
            {
                "title": "error expected",
                "expectError": True,
                "view": {"resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}]}]},
            },
        ],
    }
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(case))
    result = run_conformance([path])
    assert result.summary() == "0 passed, 2 failed"
    assert "expected" in result.results[0].reason and "p1" in result.results[0].reason
    assert result.results[1].reason == "expected the view to be rejected, it ran"


def _suite_file(tmp_path: Path, resources: list[dict[str, Any]], tests: list[dict[str, Any]]) -> Path:
    path = tmp_path / "cases.json"
    path.write_text(json.dumps({"resources": resources, "tests": tests}))
    return path


TWO_NAMES = {"resourceType": "Patient", "id": "p1", "name": [{"family": "A"}, {"family": "B"}]}
FAMILY = {"resource": "Patient", "select": [{"column": [{"name": "family", "path": "name.family"}]}]}


def test_a_run_time_error_the_spec_names_is_the_expected_error(tmp_path: Path) -> None:
    flag = {"resourceType": "Patient", "id": "p2", "extension": [{"url": "u", "valueString": "yes"}]}
    tests = [
        {"title": "several values, collection not true", "view": FAMILY, "expectError": True},
        {"title": "not expected", "view": FAMILY, "expect": [{"family": "A"}]},
        {
            "title": "where gives a string on the data",
            "view": {**FAMILY, "where": [{"path": "extension('u').value"}]},
            "expectError": True,
        },
    ]
    result = run_conformance([_suite_file(tmp_path, [TWO_NAMES, flag], tests)])
    assert [(r.title, r.passed) for r in result.results] == [
        ("several values, collection not true", True),
        ("not expected", False),
        ("where gives a string on the data", True),
    ]
    assert result.results[1].reason.startswith("view failed on the data: view on Patient: column 'family'")


def test_an_error_the_spec_does_not_name_fails_an_expect_error_test(tmp_path: Path) -> None:
    item: dict[str, Any] = {"linkId": "leaf"}
    for depth in range(40):
        item = {"linkId": str(depth), "item": [item]}
    deep = {"resourceType": "QuestionnaireResponse", "id": "q1", "item": [item]}
    view = {
        "resource": "QuestionnaireResponse",
        "select": [{"repeat": ["item"], "column": [{"name": "l", "path": "linkId"}]}],
    }
    result = run_conformance([_suite_file(tmp_path, [deep], [{"title": "deep", "view": view, "expectError": True}])])
    assert result.summary() == "0 passed, 1 failed"
    assert result.results[0].reason.startswith("expected an error the specification names, got DataError: ")


@pytest.mark.parametrize("text", ["{not json", '{"tests": []}', '{"resources": [], "tests": [{"title": "x"}]}'])
def test_a_malformed_test_file_names_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "broken.json"
    path.write_text(text)
    with pytest.raises(InputFileError, match="broken.json"):
        run_conformance([path])


def test_a_missing_path_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no SQL-on-FHIR test file"):
        run_conformance([tmp_path / "nowhere"])
