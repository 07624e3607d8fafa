"""The named allele matcher on small, hand-checked cases."""

from __future__ import annotations

import pytest

from medml.config import get_settings
from medml.pgx.calls import GeneCall
from medml.pgx.definitions import load_definitions
from medml.pgx.lowest_function import HAPB3, MSG_EXONIC_ONLY
from medml.pgx.matcher import call_genes
from medml.pgx.vcf import read_vcf_sample

TESTS = get_settings().data_root / "pgx" / "pharmcat-tests"
pytestmark = pytest.mark.skipif(not TESTS.exists(), reason="PharmCAT test data not staged")


def _calls(vcf: str, gene: str, *, find_combinations: bool = False) -> GeneCall:
    sample = read_vcf_sample(TESTS / vcf)
    return call_genes(sample, genes=[gene], find_combinations=find_combinations)[gene]


def test_all_reference_cyp2c19_is_38_38() -> None:
    call = call_genes(read_vcf_sample(TESTS / "examples/pharmcat.example.vcf"), genes=["CYP2C19"])["CYP2C19"]
    assert [d.label for d in call.diplotypes] == ["*38/*38"]
    assert call.diplotypes[0].score == 70  # 35 positions on each strand, as PharmCAT's matcher JSON reports


def test_cyp2c19_star2_homozygous() -> None:
    call = _calls("vcf/NamedAlleleMatcherCyp2c19Test/s2s2.vcf", "CYP2C19")
    assert [d.label for d in call.diplotypes] == ["*2/*2"]


def test_missing_position_gives_tied_diplotypes() -> None:
    # rs3758581 missing: *1 and *38 differ only there, so both readings tie
    call = _calls("vcf/NamedAlleleMatcherCyp2c19Test/s1s1rs12248560missing.vcf", "CYP2C19")
    assert len(call.missing_positions) == 1
    assert call.called


def test_nat2_required_position_missing_is_not_called() -> None:
    call = _calls("vcf/NamedAlleleMatcherNat2Test/requiredPosition.vcf", "NAT2")
    assert not call.called and call.warnings


def test_dpyd_unphased_lists_variants_and_lowest_two() -> None:
    call = _calls("vcf/DpydTest/testDpydUnphasedMultiple1.vcf", "DPYD")
    assert call.variants == ("c.1024G>A", "c.1314T>G", "c.1358C>G", "c.2279C>T")
    assert [d.haplotypes for d in call.lookup_diplotypes] == [("c.1024G>A", "c.1314T>G")]


def test_dpyd_phased_strands() -> None:
    call = _calls("vcf/DpydTest/testDpydPhasedMultiTrans.vcf", "DPYD")
    assert [d.label for d in call.diplotypes] == ["[c.498G>A + c.2582A>G]/[c.2846A>T + c.2933A>G]"]
    assert call.phased


def test_dpyd_hapb3_exonic_only_message() -> None:
    cases = [p for p in (TESTS / "vcf/DpydTest").glob("hapB3__row_*.vcf")]
    from medml.pgx.vcf import read_vcf_sample as read

    flagged = [p for p in cases if MSG_EXONIC_ONLY in call_genes(read(p), genes=["DPYD"])["DPYD"].messages]
    assert flagged, "some HapB3 sheet rows lack the intronic position and must raise the exonic-only message"
    assert HAPB3.endswith("(HapB3)")


def test_dpyd_intronic_only_hapb3_strand() -> None:
    # rs75017182 heterozygous, rs56038477 reference: the strand is the intronic-only allele, not HapB3
    call = _calls("vcf/DpydTest/hapB3__row_007_-_unphased.vcf", "DPYD")
    assert [d.label for d in call.diplotypes] == ["Reference/c.1129-5923C>G"]


def test_dpyd_phase_sets_give_one_diplotype_per_join() -> None:
    call = _calls("vcf/DpydTest/psTest3Sets.vcf", "DPYD")
    assert len(call.diplotypes) == 4
    assert call.diplotypes[0].label == "Reference/[c.85T>C (*9A) + c.632A>G + c.1679T>G (*13) + c.2846A>T]"


def test_combination_call_in_research_mode() -> None:
    plain = _calls("vcf/PipelineTest/phaseSetCyp2C9__3.vcf", "CYP2C9")
    assert not plain.called
    combo = _calls("vcf/PipelineTest/phaseSetCyp2C9__3.vcf", "CYP2C9", find_combinations=True)
    assert [d.label for d in combo.diplotypes] == ["*1/[*2 + *3]"]


def test_undocumented_allele_becomes_a_partial_in_research_mode() -> None:
    call = _calls(
        "vcf/PipelineTest/testUndocumentedVariationsWithTreatAsReferenceAndCombo.vcf", "TPMT", find_combinations=True
    )
    assert [d.label for d in call.diplotypes] == ["*1/g.18143724C>T"]


def test_definitions_cached() -> None:
    assert load_definitions(("CYP2C19",))["CYP2C19"] is load_definitions(("CYP2C19",))["CYP2C19"]
    assert load_definitions(("CYP2C19",))["CYP2C19"].reference.name == "*38"
