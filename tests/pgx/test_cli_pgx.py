"""`medml pgx` as a user meets it: each output format, a drug check, and bad input as one clear line, exit code 2,
no traceback and no output file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medml.config import get_settings

EXAMPLES = get_settings().data_root / "pgx" / "pharmcat-tests" / "examples"
VCF = EXAMPLES / "pharmcat.example2.vcf"
pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="the shared PGx data is not here (set MEDML_DATA)")


def run(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEDML_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "medml.cli", "pgx", *args], capture_output=True, text=True, env=env, timeout=300
    )


def assert_clear_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    msg = " ".join(proc.stderr.split())
    assert msg.startswith("error:") and proc.stderr.count("error:") == 1, msg
    for f in fragments:
        assert f.lower() in msg.lower(), (f, msg)


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.mark.parametrize("fmt", ["json", "html", "fhir"])
def test_call_writes_each_format(fmt: str, home: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / f"result.{fmt}"
    start = time.perf_counter()
    proc = run(["call", str(VCF), "--format", fmt, "--out", str(out)], home)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {fmt} to" in proc.stdout and "Poor Metabolizer" in proc.stdout and "clopidogrel" in proc.stdout
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary file left behind
    text = out.read_text(encoding="utf-8")
    if fmt == "json":
        assert json.loads(text)["sample"] == "Sample_2"
    elif fmt == "fhir":
        assert json.loads(text)["resourceType"] == "Bundle"
    else:
        assert text.startswith("<!DOCTYPE html>")
    assert seconds < 30


def test_call_to_stdout_and_drug_check(home: Path, tmp_path: Path) -> None:
    proc = run(
        [
            "call",
            str(EXAMPLES / "pharmcat.example.vcf"),
            "--outside-calls",
            str(EXAMPLES / "pharmcat.example.outsideCall.tsv"),
        ],
        home,
    )
    assert proc.returncode == 0, proc.stderr
    results = tmp_path / "r.json"
    results.write_text(proc.stdout)
    assert json.loads(proc.stdout)["schema"] == "medml.pgx.result/1"
    codeine = run(["drug", "RxNorm:2670", "--results", str(results)], home)
    # CYP2D6 IM: CPIC says label dosing (other guidance, no change): shown, but not as an alert
    assert codeine.returncode == 0 and "does not change the prescription" in codeine.stdout
    assert "guidance, Moderate" in codeine.stdout and "non-tramadol opioid" in codeine.stdout
    abacavir = run(["drug", "abacavir", "--results", str(results)], home)
    assert "Abacavir is not recommended" in abacavir.stdout
    clopidogrel = run(["drug", "Clopidogrel", "--results", str(results)], home)
    assert "does not change the prescription" in clopidogrel.stdout
    warfarin = run(["drug", "warfarin", "--results", str(results)], home)
    assert "CYP2C9 *1/*1" in warfarin.stdout and "age, height, weight" in " ".join(warfarin.stdout.split())


def _vcf(tmp_path: Path, edit) -> Path:
    lines = VCF.read_text().splitlines(keepends=True)
    path = tmp_path / "bad.vcf"
    path.write_text("".join(edit(lines)))
    return path


def _first_record(lines: list[str]) -> int:
    return next(i for i, ln in enumerate(lines) if not ln.startswith("#"))


def _truncate(lines: list[str]) -> list[str]:
    i = _first_record(lines) + 5
    return [*lines[:i], lines[i][:25]]


def _no_gt(lines: list[str]) -> list[str]:
    i = _first_record(lines)
    fields = lines[i].rstrip("\n").split("\t")
    fields[8], fields[9] = "DP", "12"
    return [*lines[:i], "\t".join(fields) + "\n", *lines[i + 1 :]]


def _grch37(lines: list[str]) -> list[str]:
    return [lines[0], "##reference=GRCh37\n", *lines[1:]]


BAD_VCF = {
    "truncated line": (_truncate, ["line", "truncated or malformed"]),
    "missing GT": (_no_gt, ["no GT", "line"]),
    "GRCh37": (_grch37, ["GRCh37", "GRCh38"]),
}


@pytest.mark.parametrize("case", list(BAD_VCF))
def test_bad_vcf_is_one_clear_line_and_no_file(case: str, home: Path, tmp_path: Path) -> None:
    edit, fragments = BAD_VCF[case]
    vcf = _vcf(tmp_path, edit)
    out = tmp_path / "out" / "result.json"
    proc = run(["call", str(vcf), "--out", str(out)], home)
    assert_clear_error(proc, *fragments)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_truncated_line_names_its_number(home: Path, tmp_path: Path) -> None:
    lines = VCF.read_text().splitlines(keepends=True)
    vcf = _vcf(tmp_path, _truncate)
    assert_clear_error(run(["call", str(vcf)], home), f"line {_first_record(lines) + 6}")


def test_malformed_outside_call_file(home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "outside.tsv"
    bad.write_text("CYP2D6\t*1/*4\nCYP2D6 *1/*2 no tabs here\n")
    out = tmp_path / "out.json"
    proc = run(["call", str(VCF), "--outside-calls", str(bad), "--out", str(out)], home)
    assert_clear_error(proc, "outside-call file", "line 2")
    assert not out.exists()


def test_multi_sample_needs_sample(home: Path) -> None:
    assert_clear_error(run(["call", str(EXAMPLES / "multisample.vcf")], home), "Sample_1, Sample_2", "--sample")


def test_unknown_drug_and_bad_results(home: Path, tmp_path: Path) -> None:
    results = tmp_path / "r.json"
    results.write_text(json.dumps({"schema": "something else", "genes": []}))
    assert_clear_error(
        run(["drug", "flucloxacillin", "--results", str(results)], home), "flucloxacillin", "no CPIC guideline"
    )
    assert_clear_error(run(["drug", "clopidogrel", "--results", str(results)], home), "not a medml PGx result")
    assert_clear_error(run(["drug", "clopidogrel", "--results", str(tmp_path / "none.json")], home), "not found")


def test_conformance_counts_and_exit_code(home: Path, tmp_path: Path) -> None:
    suite = json.loads((EXAMPLES.parent / "expected.json").read_text())
    case = next(
        c
        for c in suite["cases"]
        if any(e["type"] == "matcher_diplotypes" for e in c["expect"]) and not c.get("outside_calls")
    )
    small = tmp_path / "expected.json"
    for name in ("vcf",):
        case[name] = str((EXAMPLES.parent / case[name]).resolve())
    if case.get("options", {}).get("definitionFile"):
        case["options"]["definitionFile"] = str((EXAMPLES.parent / case["options"]["definitionFile"]).resolve())
    good = {"cases": [case]}
    small.write_text(json.dumps(good))
    proc = run(["conformance", str(small)], home)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " 0 failed" in proc.stdout and "matcher_diplotypes" in proc.stdout
    wrong = json.loads(json.dumps(case))
    for e in wrong["expect"]:
        if e["type"] == "matcher_diplotypes":
            e["value"] = ["*99/*99"]
    small.write_text(json.dumps({"cases": [wrong]}))
    failed = run(["conformance", str(small)], home)
    assert failed.returncode == 1 and "FAIL" in failed.stdout and "*99/*99" in failed.stdout
    assert_clear_error(run(["conformance", str(tmp_path / "missing.json")], home), "not found")


def test_a_folder_given_as_the_vcf_is_named_as_a_folder(home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "vcfs"
    folder.mkdir()
    assert_clear_error(run(["call", str(folder)], home), "is a folder, not a VCF file")
