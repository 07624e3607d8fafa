"""The functional test cases of Microsoft's FHIR Tools for Anonymization (cases.json, transcribed from its C#
tests): each configuration on each input must give the tool's own output, or fail where the tool fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import CASES, MISSING, deid, read
from medml.deid import run_cases
from medml.deid._conformance import run_case

pytestmark = pytest.mark.skipif(not CASES.is_file(), reason=MISSING)
CASE_LIST = read(CASES)["cases"] if CASES.is_file() else []


@pytest.mark.parametrize("case", CASE_LIST, ids=[c["name"] for c in CASE_LIST])
def test_case_gives_the_anonymizers_output(case: dict[str, object]) -> None:
    result = run_case(case, CASES.parent)
    assert result.passed, result.reason


def test_all_29_cases_pass() -> None:
    results = run_cases(CASES)
    assert len(results) == 29
    assert [r.name for r in results if not r.passed] == []


def test_an_expected_error_counts_only_when_it_is_about_the_input(tmp_path: Path) -> None:
    """A case expecting an error must not pass because a file is missing or the configuration is refused."""
    base = CASES.parent
    missing = {
        "name": "missing input",
        "configuration": "configurations/common-config.json",
        "input": "resources/no-such-file.json",
        "expectError": True,
    }
    assert not run_case(missing, base).passed
    bad = tmp_path / "bad-config.json"
    bad.write_text('{"fhirPathRules": [{"path": "Patient.name", "method": "scramble"}]}')
    refused = {
        "name": "refused",
        "configuration": str(bad),
        "input": "resources/patient-basic.json",
        "expectError": True,
    }
    result = run_case(refused, base)
    assert not result.passed and "configuration refused" in result.reason


def test_the_command_prints_the_count(tmp_path: Path) -> None:
    proc = deid(["conformance", str(CASES)], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "29 passed, 0 failed"


def test_the_command_names_each_failure_and_exits_1(tmp_path: Path) -> None:
    """A case file whose expected output is another case's: the failure is reported with where it differs."""
    cases = {
        "cases": [
            {
                "name": "wrong target",
                "configuration": str(CASES.parent / "configurations/common-config.json"),
                "input": str(CASES.parent / "resources/patient-basic.json"),
                "expected": str(CASES.parent / "resources/patient-redact-all-target.json"),
            },
            {
                "name": "right target",
                "configuration": str(CASES.parent / "configurations/redact-all-config.json"),
                "input": str(CASES.parent / "resources/patient-basic.json"),
                "expected": str(CASES.parent / "resources/patient-redact-all-target.json"),
            },
        ]
    }
    path = tmp_path / "cases.json"
    path.write_text(__import__("json").dumps(cases))
    proc = deid(["conformance", str(path)], tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILED wrong target:" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "1 passed, 1 failed"
