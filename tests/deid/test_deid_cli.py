"""`medml deid run` as a user meets it: every input format in and the same format out, equal to the anonymizer's
own outputs; NDJSON streamed; and bad input (configuration, keys, FHIR version, JSON) as one clear line, exit
code 2, and no output file, partial or not, left behind."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import ANONYMIZER, KEYS, MISSING, assert_clear_error, deid, read

pytestmark = pytest.mark.skipif(not ANONYMIZER.is_dir(), reason=MISSING)
COMMON = ANONYMIZER / "configurations" / "common-config.json"
RES = ANONYMIZER / "resources"
# inputs and the anonymizer's outputs for them under common-config.json (cases.json)
PAIRS = [
    ("patient-basic.json", "patient-basic-target.json"),
    ("patient-special-content.json", "patient-special-content-target.json"),
    ("contained-basic.json", "contained-basic-target.json"),
    ("bundle-basic.json", "bundle-basic-target.json"),
]


def ndjson(path: Path, resources: list[Any]) -> Path:
    text = "".join(json.dumps(r) + "\n" for r in resources)
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def lines(path: Path) -> list[Any]:
    raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


def leftovers(folder: Path, *allowed: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in (*allowed, "home"))


def test_a_resource_file_gives_the_anonymizers_output(tmp_path: Path) -> None:
    proc = deid(["run", str(COMMON), str(RES / "patient-basic.json"), "out.json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert read(tmp_path / "out.json") == read(RES / "patient-basic-target.json")


def test_a_gzipped_bundle_gives_a_gzipped_bundle(tmp_path: Path) -> None:
    (tmp_path / "in.json.gz").write_bytes(gzip.compress((RES / "bundle-basic.json").read_bytes()))
    proc = deid(["run", str(COMMON), "in.json.gz", "out.json.gz"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(gzip.decompress((tmp_path / "out.json.gz").read_bytes())) == read(
        RES / "bundle-basic-target.json"
    )


@pytest.mark.parametrize("name", ["in.ndjson", "in.ndjson.gz"])
def test_ndjson_gives_ndjson_line_for_line(tmp_path: Path, name: str) -> None:
    ndjson(tmp_path / name, [read(RES / i) for i, _ in PAIRS])
    out = name.replace("in", "out")
    proc = deid(["run", str(COMMON), name, out], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert lines(tmp_path / out) == [read(RES / t) for _, t in PAIRS]
    assert "de-identified 6 resources" in proc.stdout  # three, and a Bundle of three


def test_a_bulk_data_folder_gives_a_folder_of_the_same_files(tmp_path: Path) -> None:
    bulk = tmp_path / "export"
    bulk.mkdir()
    ndjson(bulk / "Patient.ndjson", [read(RES / "patient-basic.json"), read(RES / "patient-special-content.json")])
    ndjson(bulk / "Condition.ndjson.gz", [read(RES / "contained-basic.json")])
    (bulk / "notes.txt").write_text("not FHIR: left out")
    proc = deid(["run", str(COMMON), "export", "clean"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "clean").iterdir()) == ["Condition.ndjson.gz", "Patient.ndjson"]
    assert lines(tmp_path / "clean" / "Patient.ndjson") == [read(RES / t) for _, t in PAIRS[:2]]
    assert lines(tmp_path / "clean" / "Condition.ndjson.gz") == [read(RES / "contained-basic-target.json")]
    assert leftovers(tmp_path, "export", "clean") == []


def test_an_existing_output_is_replaced_only_when_asked(tmp_path: Path) -> None:
    (tmp_path / "out.json").write_text("{}")
    proc = deid(["run", str(COMMON), str(RES / "patient-basic.json"), "out.json"], tmp_path)
    assert_clear_error(proc, "already exists", "--overwrite")
    assert (tmp_path / "out.json").read_text() == "{}"
    proc = deid(["run", str(COMMON), str(RES / "patient-basic.json"), "out.json", "--overwrite"], tmp_path)
    assert proc.returncode == 0 and read(tmp_path / "out.json") == read(RES / "patient-basic-target.json")


def _peak_rss_kb(args: list[str], cwd: Path) -> int:
    """The peak resident memory of `medml deid` run in a fresh process (kB)."""
    code = (
        "import resource, sys; from medml.cli import main; sys.argv = ['medml', 'deid', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.strip().splitlines()[-1])


def test_ndjson_is_streamed_not_read_whole(tmp_path: Path) -> None:
    """Sixteen times the lines (3.5 MB -> 56 MB) cost next to no more memory: lines are read and written one by
    one (reading the file whole would hold hundreds of MB of parsed JSON)."""
    line = json.dumps(read(RES / "patient-basic.json")) + "\n"
    (tmp_path / "small.ndjson").write_text(line * 1000)
    (tmp_path / "big.ndjson").write_text(line * 16000)
    small = _peak_rss_kb(["run", str(COMMON), "small.ndjson", "small-out.ndjson"], tmp_path)
    big = _peak_rss_kb(["run", str(COMMON), "big.ndjson", "big-out.ndjson"], tmp_path)
    assert len(lines(tmp_path / "big-out.ndjson")) == 16000
    assert big - small < 20_000, (small, big)


# ------------------------------------------------------------------------------------------------- bad input


def config(tmp_path: Path, rules: list[dict[str, Any]], **parameters: Any) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"fhirPathRules": rules, "parameters": parameters}))
    return path.name


def test_an_unknown_method_is_refused(tmp_path: Path) -> None:
    name = config(tmp_path, [{"path": "Patient.name", "method": "scramble"}])
    proc = deid(["run", name, str(RES / "patient-basic.json"), "out.json"], tmp_path)
    assert_clear_error(proc, "unknown method 'scramble'", "rule 1", "use one of redact")
    assert leftovers(tmp_path, "config.json") == []


def test_an_invalid_fhirpath_is_refused(tmp_path: Path) -> None:
    name = config(tmp_path, [{"path": "Patient.name.where(use = ", "method": "redact"}])
    proc = deid(["run", name, str(RES / "patient-basic.json"), "out.json"], tmp_path)
    assert_clear_error(proc, "is not valid FHIRPath", "rule 1")
    assert leftovers(tmp_path, "config.json") == []


@pytest.mark.parametrize(("method", "key"), [("cryptoHash", "cryptoHashKey"), ("encrypt", "encryptKey")])
def test_a_missing_key_is_refused(tmp_path: Path, method: str, key: str) -> None:
    name = config(tmp_path, [{"path": "Patient.id", "method": method}])
    proc = deid(["run", name, str(RES / "patient-basic.json"), "out.json"], tmp_path)
    assert_clear_error(proc, f"uses {method} but gives no {key}", "environment variable")
    assert leftovers(tmp_path, "config.json") == []


def test_a_key_from_the_environment_is_used(tmp_path: Path) -> None:
    name = config(tmp_path, [{"path": "Patient.id", "method": "cryptoHash"}])
    proc = deid(["run", name, str(RES / "patient-basic.json"), "out.json"], tmp_path, env=KEYS)
    assert proc.returncode == 0, proc.stderr


def test_an_encrypt_key_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    name = config(tmp_path, [{"path": "Patient.id", "method": "encrypt"}], encryptKey="short")
    proc = deid(["run", name, str(RES / "patient-basic.json"), "out.json"], tmp_path)
    assert_clear_error(proc, "encryptKey is 40 bits", "128, 192 or 256 bits")


def test_processing_errors_keep_is_not_the_anonymizers(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"processingErrors": "keep", "fhirPathRules": []}))
    proc = deid(["run", "config.json", str(RES / "patient-basic.json"), "out.json"], tmp_path)
    assert_clear_error(proc, "processingErrors 'keep'", "raise", "skip")


@pytest.mark.parametrize(
    ("name", "what"),
    [
        ("Stu3OnlyResource/DeviceComponent.json", "not a FHIR R4 resource type"),
        ("Stu3OnlyResource/Account-Stu3.json", "not valid FHIR R4"),
    ],
)
def test_a_resource_that_is_not_r4_is_refused(tmp_path: Path, name: str, what: str) -> None:
    proc = deid(["run", str(COMMON), str(RES / name), "out.json"], tmp_path)
    assert_clear_error(proc, what, "give FHIR R4")
    assert leftovers(tmp_path) == []


def test_a_bundle_that_is_not_json_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bundle.json").write_text('{"resourceType": "Bundle", "entry": [')
    proc = deid(["run", str(COMMON), "bundle.json", "out.json"], tmp_path)
    assert_clear_error(proc, "bundle.json is not JSON")
    assert leftovers(tmp_path, "bundle.json") == []


def test_a_bad_line_midway_leaves_no_partial_output(tmp_path: Path) -> None:
    good = json.dumps(read(RES / "patient-basic.json"))
    (tmp_path / "in.ndjson").write_text(f"{good}\n{good}\n{{not json\n{good}\n")
    proc = deid(["run", str(COMMON), "in.ndjson", "out.ndjson"], tmp_path)
    assert_clear_error(proc, "in.ndjson line 3 is not JSON")
    assert leftovers(tmp_path, "in.ndjson") == []


def test_a_bad_file_in_a_folder_leaves_no_output_folder(tmp_path: Path) -> None:
    bulk = tmp_path / "export"
    bulk.mkdir()
    ndjson(bulk / "A.ndjson", [read(RES / "patient-basic.json")])
    ndjson(bulk / "B.ndjson", [{"resourceType": "ProcessRequest", "id": "1"}])
    proc = deid(["run", str(COMMON), "export", "clean"], tmp_path)
    assert_clear_error(proc, "B.ndjson line 1", "ProcessRequest")
    assert leftovers(tmp_path, "export") == []


def test_a_missing_input_or_config_is_named(tmp_path: Path) -> None:
    assert_clear_error(deid(["run", str(COMMON), "nowhere.json", "out.json"], tmp_path), "nowhere.json does not exist")
    assert_clear_error(
        deid(["run", "nope.json", str(RES / "patient-basic.json"), "out.json"], tmp_path), "nope.json is not a file"
    )
