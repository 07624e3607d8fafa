"""The FHIR part of `medml demo`: the Synthea bundles through the store and every built-in view."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from medml.cli.demo import run_fhir_demo
from medml.config import get_settings


def test_fhir_demo_counts_match_the_raw_bundles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDML_HOME", str(tmp_path))
    out, err = Console(file=io.StringIO(), width=160), Console(file=io.StringIO())
    rows = run_fhir_demo(out, err)
    unique: dict[str, dict[str, dict]] = {}
    for f in (get_settings().data_root / "fhir" / "synthea-r4").glob("*.json.gz"):
        with gzip.open(f) as fh:
            for e in json.load(fh)["entry"]:
                unique.setdefault(e["resource"]["resourceType"], {})[e["resource"]["id"]] = e["resource"]
    obs = unique["Observation"].values()
    assert rows == {
        "conditions": len(unique["Condition"]),
        "encounters": len(unique["Encounter"]),
        "medications": len(unique["MedicationRequest"]),
        "patient_demographics": len(unique["Patient"]),
        "observations": len(obs) + sum(len(o.get("component", [])) for o in obs),
    }
    assert isinstance(out.file, io.StringIO)
    assert "106 passed, 0 failed" in out.file.getvalue()
    assert (tmp_path / "fhir.duckdb").is_file()
