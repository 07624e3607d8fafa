"""PharmCAT's naming, partial-call, no-function and RYR1 lookup rules, each on a VCF or outside call built here.

Every expected value is one PharmCAT states: an assertion of its own JUnit tests (named beside each case) or, where
a case is ours, the value its rule (class and method in benchmarks/pharmcat-rules.md) gives by hand. The VCFs are
written by ``pgx_vcf_builder`` the way PharmCAT's TestVcfBuilder writes them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pgx_vcf_builder import VcfBuilder

from medml.config import get_settings
from medml.pgx.calls import GeneCall
from medml.pgx.combinations import hgvs_for
from medml.pgx.cpic import recommendations_for
from medml.pgx.definitions import GeneDefinition, load_definition_file, load_definitions
from medml.pgx.display import diplotype_labels, print_calls
from medml.pgx.matcher import call_genes
from medml.pgx.naming import compare_names, name_key
from medml.pgx.outside import parse_outside_calls
from medml.pgx.phenotype import INDETERMINATE, NA, NO_RESULT, phenotype, phenotype_result, phenotypes
from medml.pgx.vcf import read_vcf_sample

DATA = get_settings().data_root / "pgx"
TESTS = DATA / "pharmcat-tests"
pytestmark = pytest.mark.skipif(not TESTS.is_dir(), reason="the shared PGx data is not here (set MEDML_DATA)")


def _call(
    tmp_path: Path,
    builder: VcfBuilder,
    gene: str,
    *,
    research: bool = False,
    definitions: dict[str, GeneDefinition] | None = None,
) -> GeneCall:
    vcf = builder.write(tmp_path / "sample.vcf")
    defs = definitions or load_definitions((gene,))
    return call_genes(read_vcf_sample(vcf), genes=[gene], definitions=defs, find_combinations=research)[gene]


def _labels(call: GeneCall) -> list[str]:
    return [d.label for d in call.diplotypes]


# --- area 1: the order of names (pgkb-common 0.7.3 HaplotypeNameComparator + PharmCAT's util comparator) ---------


@pytest.mark.parametrize(
    ("names", "ordered"),
    [
        (["*3", "*2"], ["*2", "*3"]),  # HaplotypeNameComparatorTest.testBasic
        (["*10", "*2", "*9"], ["*2", "*9", "*10"]),  # digit runs compare as numbers
        (["*9", "*1x2", "*10", "*17"], ["*1x2", "*9", "*10", "*17"]),  # Cyp2d6Test.testCyp2d6CpicVsDpwg
        (["c.1627A>G (*5)", "c.1371C>T"], ["c.1371C>T", "c.1627A>G (*5)"]),  # testHgvsNames
        (["c.1627A>G (*5)", "c.85T>C (*9 A)"], ["c.85T>C (*9 A)", "c.1627A>G (*5)"]),  # testHgvsNames
        (["Unknown", "*1", "Reference", "Other"], ["Reference", "*1", "Other", "Unknown"]),  # top and bottom terms
        (["G", "12G"], ["12G", "G"]),  # a text run sorts after a number at the same place (XXXa > XXX1)
        (["[*1 + *2]", "*2"], ["*2", "[*1 + *2]"]),  # testComboComesLast
        (["[*3 + *4]", "[*2 + *3]"], ["[*2 + *3]", "[*3 + *4]"]),  # testComboSortName
        (["[*2 + *4]", "[*2 + *3]"], ["[*2 + *3]", "[*2 + *4]"]),  # every part compared, not just the first
        (["[*2 + *3 + *4]", "[*2 + *3]"], ["[*2 + *3]", "[*2 + *3 + *4]"]),  # testComboSortNumPartials
        (
            ["[c.85T>C (*9 A) + c.1218G>A + c.1627A>G (*5)]", "[c.1218G>A + c.1627A>G (*5)]"],
            ["[c.1218G>A + c.1627A>G (*5)]", "[c.85T>C (*9 A) + c.1218G>A + c.1627A>G (*5)]"],
        ),
        (
            ["[c.1218G>A + c.1627A>G (*5)]", "[*17 + c.1627A>G (*5)]"],
            ["[*17 + c.1627A>G (*5)]", "[c.1218G>A + c.1627A>G (*5)]"],
        ),
        (["[g.94781859G>A + *4]", "[*17 + *4]"], ["[*17 + *4]", "[g.94781859G>A + *4]"]),  # partial parts last
    ],
)
def test_names_sort_as_pharmcat_sorts_them(names: list[str], ordered: list[str]) -> None:
    assert sorted(names, key=name_key) == ordered
    assert compare_names(ordered[0], ordered[-1]) == -1 and compare_names(ordered[-1], ordered[0]) == 1


def test_outside_diplotypes_print_in_name_order_and_report_order() -> None:
    # Cyp2d6Test.testCyp2d6CpicVsDpwg: each label sorts its two alleles (*1x3/*1 -> *1/*1x3); the diplotypes keep
    # the reporter's order, by the alleles as written (so *1x3/*1 comes after *1x2/*17)
    lines = ["*1x2/*9", "*1x2/*10", "*1x2/*17", "*1x3/*1", "*1/*1", "*4/*10", "*4/*4"]
    (call,) = parse_outside_calls("".join(f"CYP2D6\t{d}\n" for d in lines))
    expected = ["*1/*1", "*1x2/*9", "*1x2/*10", "*1x2/*17", "*1/*1x3", "*4/*4", "*4/*10"]
    assert print_calls(call) == expected and diplotype_labels(call) == expected


def test_combination_calls_come_in_name_order_with_phase_sets(tmp_path: Path) -> None:
    # NamedAlleleMatcherTest.testCombo3WithPhaseSet
    builder = (
        VcfBuilder()
        .phased()
        .variation("CYP2B6", "rs34883432", "A", "T", phase_set=40991346)
        .variation("CYP2B6", "rs8192709", "C", "T", phase_set=40991346)
        .variation("CYP2B6", "rs35773040", "A", "G", phase_set=41004360)
        .variation("CYP2B6", "rs3745274", "G", "T", phase_set=41006915)
    )
    call = _call(tmp_path, builder, "CYP2B6", research=True)
    assert _labels(call) == ["*1/[*9 + *10 + *14]", "*9/[*10 + *14]", "*10/[*9 + *14]", "*14/[*9 + *10]"]


def test_ugt1a1_prebuilt_combinations_are_left_to_the_combination_matcher(tmp_path: Path) -> None:
    # MatchData.isIgnorableCombination: in combination mode UGT1A1's *80+*28 is not a candidate, so a strand with *80
    # and *28 (and here a missing allele, which sends the gene to combination matching) is named [*28 + *80 + ...]
    builder = (
        VcfBuilder()
        .phased()
        .variation("UGT1A1", "rs887829", "T", "C")  # *80 on strand 1
        .variation("UGT1A1", "rs3064744", "TA(8)", "TA(7)")  # *28 on strand 1
        .variation("UGT1A1", "rs4148323", ".", "A")  # *6 on strand 2, no allele on strand 1
    )
    assert _labels(_call(tmp_path, builder, "UGT1A1", research=True)) == ["*6/[*28 + *80 + g.233760498?]"]


# --- area 2: partial calls and missing alleles in research mode -----------------------------------------------------


@pytest.mark.parametrize(
    ("phased", "alleles"),
    [
        (False, ("T", ".")),  # NamedAlleleMatcherTest.testPartialMissingAllele_combination1
        (True, (".", "T")),  # testPartialMissingAllele_combination_phased
    ],
)
def test_partial_genotype_is_a_combination_call_in_research_mode(
    tmp_path: Path, phased: bool, alleles: tuple[str, str]
) -> None:
    builder = VcfBuilder().variation("CYP2B6", "rs8192709", *alleles)
    if phased:
        builder.phased()
    # *2 is defined by rs8192709 alone; the strand with no allele there is the partial g.40991369?
    assert _labels(_call(tmp_path, builder, "CYP2B6", research=True)) == ["*2/g.40991369?"]
    # outside research mode a partial genotype still blocks the call (NamedAlleleMatcher.callAssumingReference)
    blocked = _call(tmp_path, builder, "CYP2B6")
    assert not blocked.called and any("partial genotype" in w for w in blocked.warnings)


def test_partials_are_named_as_pharmcat_names_them(tmp_path: Path) -> None:
    # NamedAlleleMatcherTest.testPartialUnphasedWithSingleHapMatch: a documented ALT takes the position's HGVS
    # name (g.40991381A>T), an undocumented one g.<pos><ref>><alt> (g.41009350C>T)
    builder = (
        VcfBuilder()
        .variation("CYP2B6", "rs33973337", "A", "T")
        .variation_as_is("CYP2B6", "rs45482602", "0/2", "C", "A", "T")
    )
    call = _call(tmp_path, builder, "CYP2B6", research=True)
    assert _labels(call) == ["*1/[g.40991381A>T + g.41009350C>T]", "g.40991381A>T/g.41009350C>T"]
    # VariantLocus.getHgvsForVcfAllele's two other cases: no allele, and the reference allele
    locus = next(p for p in load_definitions(("CYP2B6",))["CYP2B6"].positions if p.rsid == "rs8192709")
    assert (hgvs_for(locus, "."), hgvs_for(locus, locus.ref)) == ("g.40991369?", "g.40991369=")


def test_combination_calls_are_ordered_by_score_before_name(tmp_path: Path) -> None:
    # NamedAlleleMatcherTest.testPartialWithCombination, on PharmCAT's own test definition: the off-reference
    # partial g.233760973C>T scores every position (its reference component), so its diplotype comes before *6's
    definition = load_definition_file(
        TESTS / "resources/org/pharmgkb/pharmcat/haplotype/NamedAlleleMatcher-combination.json", with_exemptions=False
    )
    builder = (
        VcfBuilder()
        .reference("UGT1A1", definition)
        .variation_as_is("UGT1A1", "rs3064744", "0/2", "CAT", "C", "CATAT", "CATATAT")
        .variation_as_is("UGT1A1", "rs4148323", "0/1", "G", "A")
        .variation_as_is("UGT1A1", "rs35350960", "0/1", "C", "T")
    )
    call = _call(tmp_path, builder, "UGT1A1", research=True, definitions={"UGT1A1": definition})
    assert _labels(call) == [
        "*1/[*6 + *28 + g.233760973C>T]",
        "g.233760973C>T/[*6 + *28]",
        "*6/[*28 + g.233760973C>T]",
        "*28/[*6 + g.233760973C>T]",
    ]
    assert [d.score for d in call.diplotypes] == [6, 6, 2, 2]  # 4 + 2, 4 + 2, 1 + 1, 1 + 1


# --- area 3: an allele with no function in an outside call ----------------------------------------------------------


def test_outside_allele_with_no_function_is_indeterminate_for_an_activity_gene() -> None:
    # Cyp2d6Test.testCyp2d6AlleleWithNoFunction / GeneReportTest.testNoFunctionCyp2D6
    (call,) = parse_outside_calls("CYP2D6\t*1/*XXX\n")
    assert print_calls(call) == ["*1/*XXX"]
    (result,) = phenotype(call).results
    assert (result.phenotype, result.activity_score, result.lookup_keys) == (INDETERMINATE, NA, (NA,))
    assert result.functions == ("Normal function", "Unassigned function")
    # "this nonsense allele will still match to Indeterminate phenotypes in guidelines for CYP2D6"
    assert len(recommendations_for("atomoxetine", {"CYP2D6": phenotype(call)})) == 2


@pytest.mark.parametrize(
    ("gene", "expected"),
    [("CYP2C9", INDETERMINATE), ("DPYD", INDETERMINATE), ("TPMT", NA), ("CYP2C19", NA)],
)
def test_no_table_row_is_indeterminate_only_for_activity_score_genes(gene: str, expected: str) -> None:
    # Diplotype.lookupPhenotypesByDiplotype: no row -> Indeterminate if an activity-score gene, else n/a
    (result,) = phenotype_result(gene, diplotype="*1/*XXX").results
    assert result.phenotype == expected and result.lookup_keys == (NA,)


# --- area 4: RYR1's lookup (CACNA1S absent) -------------------------------------------------------------------------

# c.7522C>T (rs118192178) is "Malignant Hyperthermia associated" in the RYR1 table; c.97A>G (rs193922746) and
# c.152C>A (rs193922749) are not in it (Unassigned function), and sort before it by name
_MALIGNANT, _OTHERS = ("rs118192178", "C", "T"), [("rs193922746", "A", "G"), ("rs193922749", "C", "A")]


def test_ryr1_unphased_lookup_takes_malignant_variants_first(tmp_path: Path) -> None:
    builder = VcfBuilder().reference("RYR1").variation("RYR1", *_MALIGNANT)
    for variant in _OTHERS:
        builder.variation("RYR1", *variant)
    vcf = builder.write(tmp_path / "ryr1.vcf")
    calls = call_genes(read_vcf_sample(vcf), genes=["RYR1", "CACNA1S"])
    ryr1 = calls["RYR1"]
    assert diplotype_labels(ryr1) == ["c.97A>G", "c.152C>A", "c.7522C>T"]
    # Ryr1ActivityComparator: malignant first, then by name -> c.7522C>T, then c.97A>G (not c.97A>G + c.152C>A)
    assert [d.haplotypes for d in ryr1.lookup_diplotypes] == [("c.97A>G", "c.7522C>T")]
    found = phenotypes(calls.values())
    assert not calls["CACNA1S"].called and found["CACNA1S"].phenotypes == (NO_RESULT,)


def test_ryr1_phased_strand_lookup_takes_its_malignant_variant(tmp_path: Path) -> None:
    builder = (
        VcfBuilder()
        .phased()
        .reference("RYR1")
        .variation("RYR1", "rs118192178", "T", "C")  # c.7522C>T on strand 1
        .variation("RYR1", "rs193922746", "G", "A")  # c.97A>G on strand 1
        .variation("RYR1", "rs193922749", "C", "A")  # c.152C>A on strand 2
    )
    call = _call(tmp_path, builder, "RYR1")
    assert diplotype_labels(call) == ["c.152C>A/[c.97A>G + c.7522C>T]"]
    # strand 1's lowest function is its malignant variant, not c.97A>G, which sorts first by name
    assert [d.haplotypes for d in call.lookup_diplotypes] == [("c.152C>A", "c.7522C>T")]


def test_ryr1_phase_sets_keep_one_lookup_diplotype(tmp_path: Path) -> None:
    # two phase sets -> two ways to join them, each with one malignant allele; inferFromDiplotypes keeps the first by
    # Ryr1DiplotypeMalignancyComparator: a tie on malignancy, so by the first allele's name (c.97A>G < c.152C>A)
    builder = (
        VcfBuilder()
        .phased()
        .reference("RYR1")
        .variation("RYR1", "rs118192178", "C", "T", phase_set=1)
        .variation("RYR1", "rs193922746", "A", "G", phase_set=2)
        .variation("RYR1", "rs193922749", "A", "C", phase_set=2)
    )
    call = _call(tmp_path, builder, "RYR1")
    assert diplotype_labels(call) == ["c.97A>G/[c.152C>A + c.7522C>T]", "c.152C>A/[c.97A>G + c.7522C>T]"]
    assert [d.haplotypes for d in call.lookup_diplotypes] == [("c.97A>G", "c.7522C>T")]
