"""Phenotypes against PharmCAT 3.1.1's own outputs: the two documented examples, gene by gene, and its rules."""

from __future__ import annotations

import json
from typing import Any

import pytest

from medml.config import get_settings
from medml.pgx.calls import Diplotype, GeneCall
from medml.pgx.checks_interpretation import example_calls
from medml.pgx.outside import read_outside_calls
from medml.pgx.phenotype import (
    NO_RESULT,
    normalize_phenotype,
    phenotype,
    phenotype_result,
    phenotypes,
    slco1b1_rs4149056_diplotype,
)

TESTS = get_settings().data_root / "pgx" / "pharmcat-tests"
pytestmark = pytest.mark.skipif(not TESTS.is_dir(), reason="the shared PGx data is not here (set MEDML_DATA)")


def _examples() -> dict[str, Any]:
    return json.loads((TESTS / "examples" / "expected_summary.json").read_text())["examples"]


@pytest.mark.parametrize("name", ["pharmcat.example", "pharmcat.example2"])
def test_examples_gene_by_gene(name: str) -> None:
    example = _examples()[name]
    result = phenotypes(example_calls(example, TESTS))
    for g in example["gene_calls"]:
        r = result[g["Gene"]].results[0]
        functions = r.functions or ("null", "null")  # CYP4F2 has no phenotype table: PharmCAT prints null
        got = (r.phenotype or "", r.activity_score or "", functions[0], functions[-1], r.lookup_keys)
        expected_key = g["Recommendation Lookup Activity Score"] or g["Recommendation Lookup Phenotype"].strip()
        want = (g["Phenotype"].strip(), g["Activity Score"], g["Haplotype 1 Function"], g["Haplotype 2 Function"])
        assert got[:4] == want, g["Gene"]
        if expected_key:
            assert got[4] == (expected_key,), g["Gene"]


def test_hla_diplotype_gives_every_status_cpic_keys_on() -> None:
    result = phenotypes(read_outside_calls(TESTS / "examples" / "pharmcat.example.outsideCall.tsv"))
    # the example's report: lookupKey ["*15:02 positive", "*57:01 positive", "*58:01 negative"]
    assert result["HLA-B"].results[0].lookup_keys == ("*15:02 positive", "*57:01 positive", "*58:01 negative")


def test_diplotype_order_does_not_matter() -> None:
    a = phenotype(GeneCall("CYP2C9", "vcf", (Diplotype(("*3", "*1")),)))
    b = phenotype(GeneCall("CYP2C9", "vcf", (Diplotype(("*1", "*3")),)))
    assert a.results[0].phenotype == b.results[0].phenotype == "Intermediate Metabolizer"
    assert a.activity_scores == ("1.0",)


def test_activity_score_separates_two_intermediate_metabolizers() -> None:
    # README: CYP2C9 *1/*3 and *1/*2 are both IM but score 1.0 vs 1.5 (CPIC CYP2C9 table)
    dips = (("*1", "*3"), ("*1", "*2"))
    scores = [phenotype(GeneCall("CYP2C9", "vcf", (Diplotype(d),))).activity_scores for d in dips]
    assert scores == [("1.0",), ("1.5",)]


def test_unknown_allele_is_na_and_uncalled_is_no_result() -> None:
    # PipelineTest.testUndocumentedVariationsWithTreatAsReferenceAndCombo: recommended_phenotype TPMT n/a
    tpmt = phenotype(GeneCall("TPMT", "vcf", (Diplotype(("*1", "g.18143724C>T")),)))
    assert tpmt.phenotypes == ("n/a",)
    assert phenotype(GeneCall("TPMT", "vcf")).results[0].lookup_keys == (NO_RESULT,)


def test_lowest_function_gene_uses_the_lookup_diplotype() -> None:
    # DpydTest.testDpydUnphasedMultiple1: four variants, lookup on the two lowest, activity score 0.5
    variants = ("c.1024G>A", "c.1314T>G", "c.1358C>G", "c.2279C>T")
    call = GeneCall(
        "DPYD",
        "vcf",
        variants=variants,
        lookup=(Diplotype(("c.1024G>A", "c.1314T>G")),),
        diplotypes=(Diplotype(("c.1024G>A", "c.1314T>G")),),
    )
    assert phenotype(call).results[0].lookup_keys == ("0.5",)


def test_haploid_and_single_position_genes() -> None:
    assert phenotype(GeneCall("G6PD", "vcf", (Diplotype(("A- 202A_376G",)),))).phenotypes == ("Deficient",)
    assert phenotype(GeneCall("G6PD", "vcf", (Diplotype(("B (reference)",)),))).phenotypes == ("Normal",)
    mt = phenotype(GeneCall("MT-RNR1", "outside", (Diplotype(("m.1555A>G",)),)))
    assert mt.phenotypes == ("increased risk of aminoglycoside-induced hearing loss",)
    vk = phenotype(GeneCall("VKORC1", "vcf", (Diplotype(("rs9923231 variant (T)", "rs9923231 reference (C)")),)))
    assert vk.phenotypes == ("-1639 AG",)


def test_outside_call_overrides_vcf_and_outside_score_gives_phenotype() -> None:
    vcf = GeneCall("CYP2C19", "vcf", (Diplotype(("*1", "*1")),))
    outside = GeneCall("CYP2C19", "outside", (Diplotype(("*2", "*2")),))
    assert phenotypes([vcf, outside])["CYP2C19"].phenotypes == ("Poor Metabolizer",)
    # PipelineTest.testOutsideCallActivityScore prints "Normal Metabolizer (1.25)"
    d6 = phenotype_result("CYP2D6", activity_score="1.25")
    assert (d6.phenotypes, d6.results[0].lookup_keys) == (("Normal Metabolizer",), ("1.25",))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PM", "Poor Metabolizer"),
        ("em", "Normal Metabolizer"),
        ("Extensive metaboliser", "Normal Metabolizer"),
        ("likely intermediate metabolizer", "Likely Intermediate Metabolizer"),
        ("indeterminate (x)", "Indeterminate"),
        ("Normal Function", "Normal Function"),
        ("  ", None),
    ],
)
def test_phenotype_synonyms(text: str, expected: str | None) -> None:
    assert normalize_phenotype(text) == expected


def test_slco1b1_rs4149056_fallback() -> None:
    # PipelineTest.testSlco1b1UncalledOverride: rs4149056 C/T looks up as *1/*5 (Decreased Function)
    dip = slco1b1_rs4149056_diplotype("C/T")
    assert dip.haplotypes == ("*1", "*5")
    call = GeneCall("SLCO1B1", "vcf", lookup=(dip,))
    assert phenotype(call).phenotypes == ("Decreased Function",)
