"""The named allele matcher on small, hand-checked cases."""

from __future__ import annotations

import pytest

from medml.config import get_settings
from medml.pgx.definitions import load_definitions
from medml.pgx.lowest_function import HAPB3, MSG_EXONIC_ONLY
from medml.pgx.matcher import call_genes
from medml.pgx.vcf import read_vcf_sample

TESTS = get_settings().data_root / "pgx" / "pharmcat-tests"
pytestmark = pytest.mark.skipif(not TESTS.exists(), reason="PharmCAT test data not staged")


def _calls(vcf: str, gene: str, **options: bool):  # type: ignore[no-untyped-def]
    sample = read_vcf_sample(TESTS / vcf)
    return call_genes(sample, genes=[gene], **options)[gene]


def test_all_reference_cyp2c19_is_38_38() -> None:
    call = call_genes(read_vcf_sample(TESTS / "examples/pharmcat.example.vcf"), genes=["CYP2C19"])["CYP2C19"]
    assert call.called


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


def test_find_combinations_is_refused_until_implemented() -> None:
    from medml.errors import ConfigError

    with pytest.raises(ConfigError):
        _calls("vcf/NamedAlleleMatcherCyp2c19Test/s2s2.vcf", "CYP2C19", find_combinations=True)


def test_definitions_cached() -> None:
    assert load_definitions(("CYP2C19",))["CYP2C19"] is load_definitions(("CYP2C19",))["CYP2C19"]
    assert load_definitions(("CYP2C19",))["CYP2C19"].reference.name == "*38"
