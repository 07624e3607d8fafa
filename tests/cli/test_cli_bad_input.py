"""Bad input at the command line (issue 13, item 10): one line saying what is wrong, exit code 2, no traceback,
nothing written; and no message echoes a huge input back whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from medml.config import get_settings

MEDML = [sys.executable, "-m", "medml.cli"]
DATA = get_settings().data_root
PIMA = DATA / "tabular" / "pima-diabetes" / "pima-indians-diabetes.csv"
MEDMNIST = DATA / "imaging" / "medmnist" / "pneumoniamnist.npz"
VCF = DATA / "pgx" / "pharmcat-tests" / "vcf" / "NamedAlleleMatcherSlco1b1Test" / "slco1b1s5s15.vcf"
PIMA_HEADER = "preg,glucose,bp,skin,insulin,bmi,pedigree,age,outcome"


def run(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEDML_HOME": str(home), "COLUMNS": "200"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([*MEDML, *args], capture_output=True, text=True, env=env, timeout=600)


def one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """The error line, after checking: exit 2, no traceback, one line (soft-wrapped by rich: joined back)."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and lines[0].startswith("error:"), proc.stderr[-2000:]
    assert len(lines) == 1 or lines[1].startswith("see `"), proc.stderr[-2000:]  # a usage error adds --help
    msg = lines[0]
    for f in fragments:
        assert f.lower() in msg.lower(), (f, msg)
    return msg


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    return tmp_path / "medml-home"


def pima_rows() -> list[list[str]]:
    return [line.split(",") for line in PIMA.read_text().splitlines() if line.strip()]


def write_pima(path: Path, change: Callable[[list[list[str]]], None] = lambda rows: None) -> Path:
    rows = pima_rows()
    change(rows)
    path.write_text(PIMA_HEADER + "\n" + "\n".join(",".join(r) for r in rows) + "\n")
    return path


def files_under(home: Path) -> list[Path]:
    return sorted(p for p in home.rglob("*") if p.is_file()) if home.exists() else []


# ---- numeric options out of range: one line naming the option, before any work ------------------------------

OPTIONS = {
    "--max-trials 0": (["train", "pima", "--max-trials", "0"], "--max-trials"),
    "--max-trials -3": (["train", "pima", "--max-trials", "-3"], "--max-trials"),
    "--n-boot 0": (["train", "pima", "--n-boot", "0"], "--n-boot"),
    "--n-boot -5": (["train", "pima", "--n-boot", "-5"], "--n-boot"),
    "--budget-seconds -1": (["train", "pima", "--budget-seconds", "-1"], "--budget-seconds"),
    "--budget-seconds nan": (["train", "pima", "--budget-seconds", "nan"], "--budget-seconds"),
    "--seed -1": (["train", "pima", "--seed", "-1"], "--seed"),
    "evaluate --n-boot 0": (["evaluate", "pima-logistic", "--n-boot", "0"], "--n-boot"),
    "predict --top -1": (["predict", "pima-logistic", str(PIMA), "--top", "-1"], "--top"),
    "image --n-boot -1": (["image", "train", str(MEDMNIST), "--n-boot", "-1"], "--n-boot"),
    "image --budget-minutes 0": (["image", "train", str(MEDMNIST), "--budget-minutes", "0"], "--budget-minutes"),
    "image --label-smoothing 1": (["image", "train", str(MEDMNIST), "--label-smoothing", "1"], "--label-smoothing"),
    "image --window 40,inf": (["image", "train", str(MEDMNIST), "--window", "40,inf"], "--window"),
}


@pytest.mark.parametrize("case", list(OPTIONS))
def test_an_option_out_of_range_is_one_line_naming_it(case: str, home: Path) -> None:
    args, option = OPTIONS[case]
    one_line_error(run(args, home), option)
    assert files_under(home) == []


# ---- infinite values in a user's table --------------------------------------------------------------------


def test_infinite_values_in_a_feature_are_refused_naming_the_columns(home: Path, tmp_path: Path) -> None:
    def infinities(rows: list[list[str]]) -> None:
        rows[4][1], rows[8][5], rows[9][5] = "inf", "-Infinity", "-inf"

    table = write_pima(tmp_path / "inf.csv", infinities)
    msg = one_line_error(run(["train", str(table), "--target", "outcome", "--model", "logistic"], home))
    assert "glucose" in msg and "bmi" in msg and "row 5" in msg and "row 9" in msg, msg
    assert files_under(home / "models") == []


def test_an_infinite_age_is_refused_not_banded_80_plus(home: Path, tmp_path: Path) -> None:
    def infinite_age(rows: list[list[str]]) -> None:
        rows[6][7] = "inf"

    table = write_pima(tmp_path / "age.csv", infinite_age)
    proc = run(["train", str(table), "--target", "outcome", "--model", "logistic", "--sensitive", "age"], home)
    one_line_error(proc, "'age'", "infinite age", "data row 7", "line 8")


# ---- huge input is quoted short -----------------------------------------------------------------------------


def test_a_20_mb_cell_is_not_echoed_whole(home: Path, tmp_path: Path) -> None:
    def huge(rows: list[list[str]]) -> None:
        rows[2][1] = "x" * 20_000_000

    table = write_pima(tmp_path / "huge.csv", huge)
    proc = run(["train", str(table), "--target", "outcome"], home)
    msg = one_line_error(proc, "glucose", "20,000,000 characters", "data row 3")
    assert len(proc.stderr) < 1_000, len(proc.stderr)
    assert "x" * 80 in msg and "x" * 81 not in msg


def test_a_huge_column_name_is_not_echoed_whole(home: Path, tmp_path: Path) -> None:
    table = tmp_path / "names.csv"
    table.write_text("a" * 5_000_000 + ",y\n1,0\n2,1\n")
    proc = run(["train", str(table), "--target", "died"], home)
    one_line_error(proc, "'died'", "5,000,000 characters")
    assert len(proc.stderr) < 1_000, len(proc.stderr)


# ---- a damaged .npz ---------------------------------------------------------------------------------------


def _written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _flipped(path: Path) -> Path:
    data = bytearray(MEDMNIST.read_bytes())
    for i in range(2_000, len(data), 50_000):
        data[i] ^= 0xFF
    return _written(path, bytes(data))


def _objects(path: Path) -> Path:
    np.savez(path, train_images=np.array([{"a": 1}], dtype=object))
    return path


NPZ: dict[str, tuple[Callable[[Path], Path], list[str]]] = {
    "empty": (lambda d: _written(d / "empty.npz", b""), ["empty (0 bytes)"]),
    "truncated": (
        lambda d: _written(d / "cut.npz", MEDMNIST.read_bytes()[:300_000]),
        ["not a complete .npz", "cut short"],
    ),
    "bit-flipped": (lambda d: _flipped(d / "flipped.npz"), ["damaged"]),
    "objects": (lambda d: _objects(d / "objects.npz"), ["python objects"]),
}


@pytest.mark.parametrize("case", list(NPZ))
def test_a_damaged_npz_is_one_line(case: str, home: Path, tmp_path: Path) -> None:
    make, fragments = NPZ[case]
    path = make(tmp_path)
    one_line_error(run(["image", "train", str(path), "--epochs", "1"], home), str(path), *fragments)
    assert files_under(home / "models") == []


# ---- pgx ------------------------------------------------------------------------------------------------------


def test_pgx_call_refuses_a_folder_as_out_before_any_work(home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "results"
    folder.mkdir()
    one_line_error(run(["pgx", "call", str(VCF), "--out", str(folder)], home), "--out", "is a folder")
    assert list(folder.iterdir()) == [] and list(tmp_path.glob(".results*")) == []
    inside_a_file = tmp_path / "a-file"
    inside_a_file.write_text("")
    one_line_error(run(["pgx", "call", str(VCF), "--out", str(inside_a_file / "r.json")], home), "is a file")


@pytest.fixture(scope="module")
def pgx_result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("pgx") / "result.json"
    proc = run(["pgx", "call", str(VCF), "--format", "json", "--out", str(out)], out.parent / "home")
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(out.read_text())
    return result


def _gene(**changes: object) -> dict[str, object]:
    return {"gene": "CYP2C19", "source": "vcf", "called": True, "results": [], **changes}


PGX = {
    "genes is text": ({"genes": "x"}, ["'genes' is text 'x', not a list"]),
    "a gene entry is a list": ({"genes": [[[1]]]}, ["gene entry 1 is a list"]),
    "results is text": ({"genes": [_gene(results="abc")]}, ["'results' as text 'abc'"]),
    "gene is a list": ({"genes": [_gene(gene=["CYP2C19"])]}, ["'gene' as a list"]),
    "haplotypes is text": (
        {"genes": [_gene(results=[{"haplotypes": "*1/*2"}])]},
        ["result 1 of gene entry 1 ('CYP2C19')", "'haplotypes' as text"],
    ),
    "phenotype is a list": ({"genes": [_gene(results=[{"phenotype": ["a"]}])]}, ["'phenotype' as a list"]),
    "called is text": ({"genes": [_gene(called="yes")]}, ["'called' as text 'yes', not true or false"]),
    "unknown source": ({"genes": [_gene(source="lab")]}, ["source 'lab'"]),
    "warfarin is text": ({"warfarin": "x"}, ["warfarin section", "malformed"]),
}


@pytest.mark.parametrize("case", list(PGX))
def test_pgx_drug_with_a_malformed_result_is_one_clear_line(
    case: str, pgx_result: dict[str, object], home: Path, tmp_path: Path
) -> None:
    changes, fragments = PGX[case]
    path = tmp_path / "result.json"
    path.write_text(json.dumps({**pgx_result, **changes}))
    proc = run(["pgx", "drug", "clopidogrel", "--results", str(path)], home)
    msg = one_line_error(proc, *fragments)
    assert "schema" not in msg or "expected" not in msg  # not "schema X, expected X": it was the right schema
    assert proc.stdout == ""  # nothing printed before the refusal


def test_pgx_drug_with_deeply_nested_json_is_one_clear_line(
    pgx_result: dict[str, object], home: Path, tmp_path: Path
) -> None:
    path = tmp_path / "deep.json"
    path.write_text(json.dumps({**pgx_result, "genes": []})[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    one_line_error(run(["pgx", "drug", "clopidogrel", "--results", str(path)], home), "nested too deeply")


def test_predict_refuses_a_folder_as_out_before_any_work(home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "scores"
    folder.mkdir()
    proc = run(["predict", "any-model", str(PIMA), "--out", str(folder)], home)
    one_line_error(proc, "--out", "is a folder", "scores.csv")
    assert list(tmp_path.glob(".scores*")) == []  # no temporary file left beside it


def test_image_predict_refuses_a_folder_as_fhir_before_any_work(home: Path, tmp_path: Path) -> None:
    pytest.importorskip("monai")
    one_line_error(run(["image", "predict", "any-model", str(MEDMNIST), "--fhir", str(tmp_path)], home), "--fhir")


@pytest.mark.parametrize("args", [[], ["fhir"], ["monitor"]])
def test_a_command_without_its_subcommand_shows_the_help_and_no_empty_error(args: list[str], home: Path) -> None:
    proc = run(args, home)
    assert proc.returncode == 2
    assert "Usage: medml" in proc.stdout
    assert "error:" not in proc.stderr + proc.stdout, proc.stderr
    assert "Traceback" not in proc.stderr
