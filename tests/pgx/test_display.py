"""How a gene call is printed in the report (PharmCAT's print calls), and whether it is reportable."""

from __future__ import annotations

import pytest

from medml.config import get_settings
from medml.pgx.calls import Diplotype, GeneCall
from medml.pgx.display import NOT_CALLED, UNKNOWN, diplotype_labels, print_calls, reportable
from medml.pgx.outside import parse_outside_calls

DATA = get_settings().data_root / "pgx" / "pharmcat-3.1.1"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="the shared PGx data is not here (set MEDML_DATA)")


@pytest.mark.parametrize(
    ("line", "printed"),
    [
        ("CYP2D6\t*4/*1", ["*1/*4"]),  # Cyp2d6Test: *1/*4
        ("CYP2D6\t*1/*1x7", ["*1/*1x7"]),  # as reported; looked up as *1x≥3
        ("CYP2D6\t*4x2/*1", ["*1/*4x2"]),
        ("CYP2D6\t\t\t1.25", ["Normal Metabolizer (1.25)"]),  # PipelineTest.testOutsideCallActivityScore
        ("CYP2D6\t*2/*10\tIntermediate Metabolizer\t1.25", ["*2/*10"]),  # a diplotype is printed when given
        ("CYP2C19\t\tPM", ["Poor Metabolizer"]),
        ("HLA-B\t\t*57:01 positive", ["*57:01 positive"]),
        ("HLA-B\t*15:02", ["*15:02"]),
        ("MT-RNR1\tm.1555A>G", ["m.1555A>G"]),
        (
            "CFTR\tivacaftor non-responsive CFTR sequence/ivacaftor non-responsive CFTR sequence",
            ["Reference/Reference"],
        ),  # CftrTest.outsideReferenceCall
        ("CFTR\tivacaftor non-responsive CFTR sequence/F508del", ["F508del (heterozygous)"]),
        (
            "IFNL3\trs12979860 reference (C)/rs12979860 reference (C)",
            ["rs12979860 reference (C)/rs12979860 reference (C)"],
        ),
        ("CYP4F2\t*1/*3\nCYP4F2\t*9/*4", ["*1/*3", "*4/*9"]),  # PipelineTest.outsideCallCollision2Files
        ("CYP4F2\t*9/*4 or *3/*1", ["*1/*3", "*4/*9"]),
    ],
)
def test_outside_calls_print_as_pharmcat_does(line: str, printed: list[str]) -> None:
    (call,) = parse_outside_calls(line)
    assert print_calls(call) == printed
    assert reportable(call)


def test_vcf_calls_and_no_calls() -> None:
    het = GeneCall("RYR1", "vcf", (Diplotype(("Reference", "c.7522C>T")),))
    assert print_calls(het) == ["c.7522C>T (heterozygous)"]
    unphased = GeneCall("RYR1", "vcf", variants=("c.418G>A", "c.97A>G", "c.97A>G"))
    assert diplotype_labels(unphased) == ["c.97A>G (homozygous)", "c.418G>A"]
    none = GeneCall("CYP2C19", "vcf")
    assert (print_calls(none), diplotype_labels(none), reportable(none)) == ([NOT_CALLED], [UNKNOWN], False)
    assert print_calls(None) == [NOT_CALLED] and not reportable(None)


def test_slco1b1_fallback_prints_the_genotype_and_is_reportable() -> None:
    call = GeneCall("SLCO1B1", "vcf", lookup=(Diplotype(("*1", "*5")),))
    assert print_calls(call) == ["rs4149056 C/rs4149056 T"]
    assert diplotype_labels(call) == [UNKNOWN]
    assert reportable(call)
