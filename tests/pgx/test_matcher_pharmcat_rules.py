"""PharmCAT's tie-breaking and research-mode rules, each against the value PharmCAT's own tests assert.

NAT2's unphased priorities (exemptions.json), DPYD HapB3 with a phased partial genotype (``1|.``), and the greedy
combination matcher. The VCFs are those of PharmCAT 3.1.1's tests (``pharmcat-tests``); a few are edited here to
cover the half of a Java test the extracted suite leaves out.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from medml.config import get_settings
from medml.errors import DataError
from medml.pgx.calls import GeneCall
from medml.pgx.combinations import greedy_groups
from medml.pgx.definitions import GeneDefinition, load_definition_file, load_definitions, parse_exemption
from medml.pgx.lowest_function import HAPB3, HAPB3_INTRONIC, MISSING, MSG_EXONIC_ONLY, call_hapb3
from medml.pgx.matcher import Haplotype, _Pair, call_genes, pick_by_priority
from medml.pgx.vcf import read_vcf_sample

TESTS = get_settings().data_root / "pgx" / "pharmcat-tests"
pytestmark = pytest.mark.skipif(not TESTS.exists(), reason="PharmCAT test data not staged")


def _call(vcf: Path, gene: str, *, definition: GeneDefinition | None = None, research: bool = False) -> GeneCall:
    definitions = {gene: definition} if definition is not None else None
    return call_genes(read_vcf_sample(vcf), genes=[gene], definitions=definitions, find_combinations=research)[gene]


def _labels(call: GeneCall) -> list[str]:
    return [d.label for d in call.diplotypes]


def _nat2_without_exemptions() -> GeneDefinition:
    nat2 = load_definitions(("NAT2",))["NAT2"]
    return replace(nat2, exemption=nat2.exemption.without_rules())


# --- NAT2: unphased diplotype priorities ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vcf", "picked", "all_candidates"),
    [
        # NamedAlleleMatcherTest.unphasedPrioritySameScore / DifferentScore: without, then with the exemptions file
        ("unphasedPrioritySameScore", "*7/*34", ["*6/*40", "*7/*34"]),
        ("unphasedPriorityDifferentScore", "*1/*6", ["*1/*6", "*4/*34"]),
    ],
)
def test_nat2_priority_picks_one_of_the_unphased_candidates(vcf: str, picked: str, all_candidates: list[str]) -> None:
    path = TESTS / "vcf" / "NamedAlleleMatcherTest" / f"{vcf}.vcf"
    with_priorities = _call(path, "NAT2")
    assert _labels(with_priorities) == [picked]
    assert any("unphased priorities" in w for w in with_priorities.warnings)
    # no exemptions: PharmCAT still keeps every candidate (its priority mode comes from the default exemptions),
    # lower scores included (*4/*34 scores 2 against *1/*6's 49)
    assert _labels(_call(path, "NAT2", definition=_nat2_without_exemptions())) == all_candidates


def test_nat2_priority_can_beat_a_higher_score() -> None:
    # NAT2 sheet row 10: candidates *1/*15 (score 50), *6/*46 and *14/*34 (3 each); PharmCAT picks *6/*46
    path = TESTS / "vcf" / "NamedAlleleMatcherNat2Test" / "nat2Sheet__row_010.vcf"
    assert _labels(_call(path, "NAT2")) == ["*6/*46"]
    assert set(_labels(_call(path, "NAT2", definition=_nat2_without_exemptions()))) == {"*1/*15", "*6/*46", "*14/*34"}


def test_nat2_required_position_applies_only_with_exemptions() -> None:
    # NamedAlleleMatcherTest.requiredPosition: rs1801279 missing; *1/*1 without exemptions, no call with them
    path = TESTS / "vcf" / "NamedAlleleMatcherTest" / "requiredPosition.vcf"
    assert _labels(_call(path, "NAT2", definition=_nat2_without_exemptions())) == ["*1/*1"]
    assert _labels(_call(path, "NAT2")) == []


def _pair(label: str, score: int = 0) -> _Pair:
    first, second = label.split("/")
    return _Pair(Haplotype(first, (), 0), Haplotype(second, (), 0), score)


def test_priority_needs_every_listed_diplotype_and_takes_the_first_that_applies() -> None:
    priorities = (
        (frozenset({"*1/*6", "*4/*34"}), "*1/*6"),
        (frozenset({"*1/*36", "*6/*44"}), "*1/*36"),
    )
    # NAT2 sheet row 72: *1/*36 is a candidate but *6/*44 is not, so only the first priority applies
    picked = pick_by_priority([_pair("*1/*6"), _pair("*1/*36"), _pair("*4/*34")], priorities)
    assert picked is not None and picked.label == "*1/*6"
    assert pick_by_priority([_pair("*1/*36"), _pair("*4/*34")], priorities) is None


def test_priorities_load_in_pharmcats_order_and_must_pick_from_their_list() -> None:
    raw = {
        "gene": "NAT2",
        "unphasedDiplotypePriorities": [
            {"list": ["*1/*16", "*4/*5"], "pick": "*4/*5"},
            {"list": ["*1/*6", "*4/*34"], "pick": "*1/*6"},
        ],
    }
    exemption = parse_exemption(raw)
    assert [pick for _, pick in exemption.unphased_priorities] == ["*1/*6", "*4/*5"]  # by the pick's names
    assert exemption.keep_all_unphased
    assert not parse_exemption({"gene": "CYP2C19"}).keep_all_unphased
    with pytest.raises(DataError, match="not in its list"):
        parse_exemption({"gene": "NAT2", "unphasedDiplotypePriorities": [{"list": ["*1/*6"], "pick": "*4/*34"}]})


# --- DPYD: HapB3 with a phased partial genotype (research mode) ------------------------------------------------


@pytest.mark.parametrize(
    ("intron", "exon", "strands", "message"),
    [
        ((MISSING, "C"), (MISSING, "T"), (None, HAPB3), None),  # DpydTest.hapB3AndIntronicC_missingFirstAllele
        (("C", MISSING), ("T", MISSING), (HAPB3, None), None),  # ..._missingSecondAllele
        ((MISSING, "C"), ("T", MISSING), (HAPB3, HAPB3_INTRONIC), MSG_EXONIC_ONLY),  # ..._missingAlternateStrands1
        (("C", MISSING), (MISSING, "T"), (HAPB3_INTRONIC, HAPB3), MSG_EXONIC_ONLY),  # ..._missingAlternateStrands2
    ],
)
def test_hapb3_strand_without_intronic_allele_is_called_from_the_exonic_one(
    intron: tuple[str, str], exon: tuple[str, str], strands: tuple[str | None, ...], message: str | None
) -> None:
    call = call_hapb3(intron, exon, phased=True)
    assert call.per_strand == strands
    assert call.message == message


def test_hapb3_partial_genotype_end_to_end(tmp_path: Path) -> None:
    # DpydTest.hapB3AndIntronicC_missingSecondAllele (not among the staged cases): T|. and C|. -> Reference/HapB3,
    # built from the staged missingFirstAllele VCF by swapping the strands of its two partial genotypes
    source = TESTS / "vcf" / "DpydTest" / "hapB3AndIntronicC_missingFirstAllele.vcf"
    edited = tmp_path / "missingSecondAllele.vcf"
    edited.write_text(source.read_text(encoding="utf-8").replace("\t.|1\n", "\t1|.\n"), encoding="utf-8")
    for vcf in (source, edited):
        research = _call(vcf, "DPYD", research=True)
        assert _labels(research) == [f"Reference/{HAPB3}"]
        assert research.messages == ()
    alternate = _call(
        TESTS / "vcf" / "DpydTest" / "hapB3AndIntronicC_missingAlternateStrands1.vcf", "DPYD", research=True
    )
    assert _labels(alternate) == [f"{HAPB3_INTRONIC}/{HAPB3}"]
    assert alternate.messages == (MSG_EXONIC_ONLY,)


# --- Combinations and partials (research mode) -----------------------------------------------------------------


def _hap(name: str, defined: tuple[int, ...], width: int = 4) -> Haplotype:
    pattern = tuple(frozenset("A") if i in defined else None for i in range(width))
    return Haplotype(name, pattern, len(defined))


def test_greedy_groups_follow_pharmcats_combination_matcher() -> None:
    big, small, other = _hap("*6", (0, 1)), _hap("*4", (1,)), _hap("*14", (2,))
    # *4 overlaps the larger *6 in the only group it could join, so it starts no group of its own
    assert greedy_groups([small, other, big]) == [(big, other)]
    # alleles of the same size that overlap (a position missing) each start a group
    twin = _hap("*13", (0, 1))
    assert greedy_groups([big, twin, other]) == [(twin, other), (big, other)]


def test_unphased_off_reference_partial_is_kept_beside_the_combination() -> None:
    # NamedAlleleMatcherTest.testPartialReferenceUnphased: CYP2B6 *9 and an undocumented-by-any-allele variant,
    # unphased; PharmCAT returns both ways of splitting them over the two strands
    resources = TESTS / "resources" / "org" / "pharmgkb" / "pharmcat" / "haplotype"
    definition = load_definition_file(resources / "NamedAlleleMatcher-cyp2b6.json", False)
    call = _call(
        resources / "NamedAlleleMatcher-partialReferenceUnphased.vcf", "CYP2B6", definition=definition, research=True
    )
    assert _labels(call) == ["*1/[*9 + g.41012316T>G]", "*9/g.41012316T>G"]
