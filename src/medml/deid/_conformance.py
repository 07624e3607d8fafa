"""Run a case file in the format of ``anonymizer-tests/cases.json``: configuration, input, expected output or an
expected error, each case compared as FHIR JSON (same elements and values; key order and whitespace ignored)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from medml.deid._config import load_config
from medml.deid._engine import Anonymizer
from medml.deid._errors import DeidProcessingError, InvalidResourceError
from medml.errors import ConfigError, InputFileError, MedmlError


@dataclass(frozen=True)
class CaseResult:
    """One case's outcome; ``reason`` says why it failed (empty when it passed)."""

    name: str
    passed: bool
    reason: str = ""


def _read_json(path: Path) -> Any:
    raw = path.read_bytes()
    return orjson.loads(raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw)


def load_cases(path: Path) -> list[dict[str, Any]]:
    """The cases of a case file; InputFileError if it is not one."""
    try:
        data = _read_json(path)
    except FileNotFoundError:
        raise InputFileError(f"{path} does not exist", "give a case file such as anonymizer-tests/cases.json") from None
    except orjson.JSONDecodeError as e:
        raise InputFileError(f"{path} is not JSON ({e})", "give a case file of JSON") from None
    cases = data.get("cases") if isinstance(data, dict) else None
    if not isinstance(cases, list) or not all(isinstance(c, dict) and "configuration" in c for c in cases):
        raise InputFileError(
            f"{path} is not a case file", 'give {"cases": [{"name", "configuration", "input", "expected"}]}'
        )
    return cases


def run_case(case: dict[str, Any], base: Path) -> CaseResult:
    """Run one case; an expected error passes only when it is about the input or its processing, not a
    configuration the engine refused or a file that is missing."""
    name = str(case.get("name", "unnamed"))
    for field in ("configuration", "input", "expected"):
        if field in case and not (base / case[field]).is_file():
            return CaseResult(name, False, f"{field} file {case[field]} is missing")
    try:
        config = load_config(base / case["configuration"], generate_missing_keys=True)
        resource = _read_json(base / case["input"])
    except ConfigError as e:
        return CaseResult(name, False, f"configuration refused: {e}")
    except orjson.JSONDecodeError as e:
        return CaseResult(name, bool(case.get("expectError")), f"input is not JSON: {e}")
    try:
        actual = Anonymizer(config).anonymize(resource)
    except (InvalidResourceError, DeidProcessingError) as e:
        if case.get("expectError"):
            return CaseResult(name, True)
        return CaseResult(name, False, f"unexpected error: {e}")
    except MedmlError as e:
        return CaseResult(name, False, f"error of the wrong kind: {type(e).__name__}: {e}")
    if case.get("expectError"):
        return CaseResult(name, False, "an error was expected, but the resource was de-identified")
    expected = _read_json(base / case["expected"])
    if actual == expected:
        return CaseResult(name, True)
    return CaseResult(name, False, first_difference(expected, actual))


def run_cases(path: Path) -> list[CaseResult]:
    """Every case of a case file, paths taken relative to the file's folder."""
    return [run_case(case, path.parent) for case in load_cases(path)]


def first_difference(expected: Any, actual: Any, where: str = "") -> str:
    """Where two JSON values first differ, as a path and both values."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in list(expected) + [k for k in actual if k not in expected]:
            if key not in actual:
                return f"{where}.{key}: missing (expected {_short(expected[key])})"
            if key not in expected:
                return f"{where}.{key}: unexpected {_short(actual[key])}"
            if expected[key] != actual[key]:
                return first_difference(expected[key], actual[key], f"{where}.{key}")
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            if e != a:
                return first_difference(e, a, f"{where}[{i}]")
    return f"{where or '.'}: expected {_short(expected)}, got {_short(actual)}"


def _short(v: Any) -> str:
    text = orjson.dumps(v).decode()
    return text if len(text) <= 120 else text[:117] + "..."


__all__ = ["CaseResult", "first_difference", "load_cases", "run_case", "run_cases"]
