"""Shared paths and helpers for the de-identification tests: the anonymizer's own test suite and Synthea."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from medml.config import get_settings

DATA = get_settings().data_root / "fhir"
ANONYMIZER = DATA / "anonymizer-tests"
SYNTHEA = DATA / "synthea-r4"
CASES = ANONYMIZER / "cases.json"
MISSING = "the shared FHIR data (anonymizer-tests, synthea-r4) is not here (set MEDML_DATA)"
KEYS = {"MEDML_DEID_CRYPTO_HASH_KEY": "a-test-key-of-no-value", "MEDML_DEID_DATE_SHIFT_KEY": "another-test-key"}


def read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8-sig"))


def deid(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`medml deid ...` as a user runs it, in ``cwd``."""
    environment = {**os.environ, "MEDML_HOME": str(cwd / "home"), "COLUMNS": "200", **(env or {})}
    for name in KEYS:
        if env is None or name not in env:
            environment.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "medml.cli", "deid", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=cwd,
        timeout=600,
    )


def assert_clear_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit code 2, one `error:` line that names what was wrong, and no traceback."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.count("error:") == 1, proc.stderr
    message = " ".join(proc.stderr.split())
    for fragment in fragments:
        assert fragment.lower() in message.lower(), (fragment, message)


@pytest.fixture()
def anonymizer_tests() -> Path:
    if not CASES.is_file():
        pytest.skip(MISSING)
    return ANONYMIZER


@pytest.fixture()
def synthea() -> Path:
    if not SYNTHEA.is_dir():
        pytest.skip(MISSING)
    return SYNTHEA
