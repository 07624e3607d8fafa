"""Outside-call files: PharmCAT's format, its normalisation, and errors that name file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from medml.config import get_settings
from medml.errors import InputFileError
from medml.pgx.calls import Diplotype
from medml.pgx.outside import parse_outside_calls, read_outside_calls

TESTS = get_settings().data_root / "pgx" / "pharmcat-tests"
pytestmark = pytest.mark.skipif(not TESTS.is_dir(), reason="the shared PGx data is not here (set MEDML_DATA)")


def test_example_file_gives_one_call_per_gene() -> None:
    calls = {c.gene: c for c in read_outside_calls(TESTS / "examples" / "pharmcat.example.outsideCall.tsv")}
    assert set(calls) == {"CYP2D6", "HLA-B", "MT-RNR1"}
    assert calls["CYP2D6"].diplotypes == (Diplotype(("*1", "*3")),)
    assert calls["HLA-B"].diplotypes == (Diplotype(("*15:02", "*57:01")),)
    assert all(c.source == "outside" for c in calls.values())


def test_comment_lines_and_extra_columns_are_ignored() -> None:
    (call,) = read_outside_calls(TESTS / "outside_calls" / "Cyp2d6Test" / "testAmitriptylineCallWoCyp2c19.0.tsv")
    assert call.diplotypes == (Diplotype(("*1", "*4")),) and call.activity_score is None


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("CYP2D6\t*1/*1x7", ("*1", "*1x≥3")),  # Cyp2d6CopyNumberCallerTest.testInferred
        ("CYP2D6\t*1/*1x≥3", ("*1", "*1x≥3")),
        ("CYP2D6\t*1/*42x7", ("*1", "*42x7")),  # no *42x≥3 allele: left as is (testNoInfer1)
        ("CYP2D6\t*1x2/*4", ("*1x2", "*4")),  # natural order: *1x2 < *4 (Cyp2d6Test.testCyp2d6CpicVsDpwg: *1x2/*9)
        ("CYP2D6\t*36+*10/*1", ("*1", "*36+*10")),
        ("CYP2D6\tCYP2D6*2.001/CYP2D6*1", ("*1", "*2")),
        ("CYP2C19\t*2/*1", ("*1", "*2")),  # PipelineTest.testOutsideCallDiplotypeNormalization
        ("HLA-B\tB*57:01:01/*15:02", ("*15:02", "*57:01")),
    ],
)
def test_diplotypes_are_normalised_as_pharmcat_does(line: str, expected: tuple[str, ...]) -> None:
    (call,) = parse_outside_calls(line)
    assert call.lookup_diplotypes[0].haplotypes == expected


def test_inferred_copy_number_is_looked_up_but_kept_as_reported() -> None:
    (call,) = parse_outside_calls("CYP2D6\t*1x7/*1")
    assert call.diplotypes == (Diplotype(("*1", "*1x7")),)
    assert call.lookup == (Diplotype(("*1", "*1x≥3")),)
    (plain,) = parse_outside_calls("CYP2D6\t*4/*1x2")
    assert plain.lookup is None


def test_phenotype_synonyms_scores_and_hla_status() -> None:
    calls = {c.gene: c for c in parse_outside_calls("CYP2C19\t\tPM\nCYP2D6\t\t\t1.25\nHLA-B\t\t*57:01 positive\n")}
    assert calls["CYP2C19"].phenotype == "Poor Metabolizer"
    assert calls["CYP2D6"].activity_score == "1.25"
    assert calls["HLA-B"].allele_status == ("*57:01 positive",)


def test_no_call_and_two_files_for_one_gene() -> None:
    calls = {c.gene: c for c in parse_outside_calls("HLA-B\t.\nNAT2\t./.\n")}
    assert not calls["HLA-B"].called and not calls["NAT2"].called
    base = TESTS / "outside_calls" / "PipelineTest"
    (cyp4f2,) = read_outside_calls([base / f"outsideCallCollision2Files.{i}.tsv" for i in (0, 1)])
    assert [d.label for d in cyp4f2.diplotypes] == ["*1/*3", "*4/*9"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("CYP2D6", "line 1: expected at least 2"),
        ("# header\n\tx", "line 2: no gene"),
        ("CYP2D6\t\t\t", "give a diplotype"),
        ("CYP2D6\t*1/*2/*3", "too many alleles"),
        ("CYP2D6\t\t\tlots", "not a number"),
        ("HLA-B\tC*01:02", "not an HLA-B allele"),
        ("CYP2C19\t\tPM\nCYP2C19\t\tUM", "two different outside results"),
    ],
)
def test_malformed_lines_name_file_and_line(text: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "calls.tsv"
    path.write_text(text)
    with pytest.raises(InputFileError, match=message) as err:
        read_outside_calls(path)
    assert str(path) in str(err.value)


def test_unreadable_file() -> None:
    with pytest.raises(InputFileError, match="cannot read"):
        read_outside_calls("/nonexistent/calls.tsv")
