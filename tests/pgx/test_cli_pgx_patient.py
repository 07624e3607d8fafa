"""`medml pgx call --patient ID`: the JSON results saved into the CDS service's PGx store, atomically; an unsafe id
or a format other than JSON is one clear line, exit code 2, and nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medml.config import get_settings

EXAMPLES = get_settings().data_root / "pgx" / "pharmcat-tests" / "examples"
VCF = EXAMPLES / "pharmcat.example.vcf"
pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="the shared PGx data is not here (set MEDML_DATA)")


def run(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEDML_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "medml.cli", "pgx", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_patient_saves_the_json_results_into_the_service_store(tmp_path: Path) -> None:
    home, out = tmp_path / "home", tmp_path / "r.json"
    proc = run(
        [
            "call",
            str(VCF),
            "--outside-calls",
            str(EXAMPLES / "pharmcat.example.outsideCall.tsv"),
            "--format",
            "json",
            "--out",
            str(out),
            "--patient",
            "pt-1.a_B",
        ],
        home,
    )
    assert proc.returncode == 0, proc.stderr
    store = home / "service" / "pgx"
    assert [p.name for p in store.iterdir()] == ["pt-1.a_B.json"]  # no temporary file left behind
    assert json.loads((store / "pt-1.a_B.json").read_text()) == json.loads(out.read_text())
    assert "saved the results of patient pt-1.a_B" in " ".join(proc.stdout.split())
    to_stdout = run(["call", str(VCF), "--patient", "pt-2"], home)  # JSON on stdout, the note on stderr
    assert to_stdout.returncode == 0 and json.loads(to_stdout.stdout)["schema"] == "medml.pgx.result/1"
    assert (store / "pt-2.json").is_file()


@pytest.mark.parametrize("patient", ["../escape", "a/b", ".hidden", "", "x" * 65, "pt 1"])
def test_an_unsafe_patient_id_is_refused_and_nothing_is_written(patient: str, tmp_path: Path) -> None:
    home, out = tmp_path / "home", tmp_path / "out" / "r.json"
    proc = run(["call", str(VCF), "--out", str(out), "--patient", patient], home)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "not a safe id" in proc.stderr
    assert not out.parent.exists() and not (home / "service").exists()
    assert not (tmp_path / "escape.json").exists()


def test_patient_needs_the_json_format(tmp_path: Path) -> None:
    home, out = tmp_path / "home", tmp_path / "out" / "r.html"
    proc = run(["call", str(VCF), "--format", "html", "--out", str(out), "--patient", "pt-1"], home)
    assert proc.returncode == 2 and "--format json" in proc.stderr
    assert not out.parent.exists() and not (home / "service").exists()
