"""The matcher without strand permutations gives what enumerating every permutation (PharmCAT's method) gives.

The reference below is the enumeration the matcher used before: every strand sequence the genotypes allow is
matched against every named allele, and matched haplotypes are paired through complementary sequences. It costs
2^(heterozygous positions - 1) and is kept here only to check the fast path on random genotypes.
"""

from __future__ import annotations

import random
import time

import pytest

from medml.config import get_settings
from medml.pgx.definitions import GeneDefinition, load_definitions
from medml.pgx.matcher import IUPAC, GeneData, Haplotype, build_haplotypes, call_gene, match_diplotypes, prepare
from medml.pgx.naming import compare_names, name_key
from medml.pgx.vcf import SampleGenotype, VcfSample

DEFINITIONS = get_settings().data_root / "pgx" / "pharmcat-3.1.1" / "definition" / "alleles"
pytestmark = pytest.mark.skipif(not DEFINITIONS.exists(), reason="PharmCAT definitions not staged")

GENES = ("CYP2C19", "CYP2C9", "NAT2", "UGT1A1")
#: the enumeration doubles with each heterozygous position; beyond this the reference is too slow to run
MAX_REFERENCE_HETS = 9


def _reference_match(data: GeneData, haplotypes: tuple[Haplotype, ...]) -> list[tuple[tuple[str, ...], int]]:
    """Every diplotype (names in display order) and its score, by enumerating strand permutations."""
    perms = data.permutations()
    refs = tuple(p.ref for p in data.positions)
    matched: dict[str, tuple[Haplotype, set[tuple[str, ...]]]] = {}
    for hap in haplotypes:
        seqs = {s for s in perms if hap.matches(s)}
        if seqs:
            matched[hap.name] = (hap, seqs)

    def ordered(a: str, b: str) -> tuple[str, str]:
        return (a, b) if compare_names(a, b) <= 0 else (b, a)

    pairs: list[tuple[tuple[str, ...], int]] = []
    if data.haploid:
        pairs = [((h.name,), max(h.score_for(q, refs) for q in seqs)) for h, seqs in matched.values()]
    elif len(perms) == 1:
        seq = next(iter(perms))
        haps = sorted((h for h, _ in matched.values()), key=lambda h: name_key(h.name))
        pairs = [
            (ordered(a.name, b.name), a.score_for(seq, refs) + b.score_for(seq, refs))
            for i, a in enumerate(haps)
            for b in haps[i:]
        ]
    else:
        names = sorted(matched, key=name_key)
        for i, n1 in enumerate(names):
            h1, s1 = matched[n1]
            for n2 in names[i:]:
                h2, s2 = matched[n2]
                scores = [
                    h1.score_for(q, refs) + h2.score_for(c, refs)
                    for q in s1
                    if (c := data.complement(q)) is not None and c in s2
                ]
                if scores:
                    pairs.append((ordered(n1, n2), max(scores)))
    return sorted(pairs, key=lambda p: (-p[1], *(name_key(n) for n in p[0])))


def _allele_at(definition: GeneDefinition, cell: str | None, col: int, rng: random.Random) -> str:
    locus = definition.positions[col]
    if cell is None:
        return locus.ref
    if cell in IUPAC:
        return rng.choice([b for b in IUPAC[cell] if b in locus.vcf_alleles] or [locus.ref])
    return cell


def _random_sample(definition: GeneDefinition, rng: random.Random, *, phased_share: float) -> VcfSample:
    """Two random named alleles written out as unphased genotypes, a few positions changed at random and a few
    dropped; some heterozygous positions phased in one set when ``phased_share`` > 0."""
    a, b = rng.choice(definition.alleles), rng.choice(definition.alleles)
    genotypes: dict[tuple[str, int], SampleGenotype] = {}
    noisy = set(rng.sample(range(len(definition.positions)), k=rng.randint(0, 3)))
    dropped = set(rng.sample(range(len(definition.positions)), k=rng.choice((0, 0, 1, 2))))
    for col, locus in enumerate(definition.positions):
        if col in dropped:
            continue
        pair = [_allele_at(definition, a.alleles[col], col, rng), _allele_at(definition, b.alleles[col], col, rng)]
        if col in noisy:
            pair[rng.randrange(2)] = rng.choice(sorted(locus.vcf_alleles))
        phased = pair[0] != pair[1] and rng.random() < phased_share
        genotypes[(locus.chromosome, locus.position)] = SampleGenotype(tuple(pair), phased, "1" if phased else None)
    return VcfSample("random", "test", genotypes)


def _hets(data: GeneData) -> int:
    return sum(len(set(g.alleles)) == 2 for g in data.genotypes)


@pytest.mark.parametrize("gene", GENES)
@pytest.mark.parametrize("phased_share", [0.0, 0.3])
def test_fast_path_equals_permutation_enumeration(gene: str, phased_share: float) -> None:
    definition = load_definitions((gene,))[gene]
    rng = random.Random(f"{gene}-{phased_share}-20240611")
    checked = multi_het = 0
    while checked < 60:
        data = prepare(definition, _random_sample(definition, rng, phased_share=phased_share))
        if data.undocumented or _hets(data) > MAX_REFERENCE_HETS:
            continue
        haplotypes = build_haplotypes(definition, data)
        fast = [(p.names, p.score) for p in match_diplotypes(data, haplotypes, top_candidate_only=False)]
        assert fast == _reference_match(data, haplotypes), (gene, data.genotypes)
        assert data.permutation_count() == len(data.permutations())
        checked += 1
        multi_het += _hets(data) >= 2
    assert multi_het >= 20  # unphased with 2+ heterozygous positions: 4+ permutations, the costly shape


def test_haploid_and_mixed_ploidy_equal_enumeration() -> None:
    definition = load_definitions(("CYP2C19",))["CYP2C19"]
    rng = random.Random(7)
    for _ in range(40):
        sample = _random_sample(definition, rng, phased_share=0.0)
        keys = list(sample.genotypes)
        haploid_keys = set(keys) if rng.random() < 0.5 else set(rng.sample(keys, k=len(keys) // 2))
        genotypes = {k: SampleGenotype(g.alleles[:1]) if k in haploid_keys else g for k, g in sample.genotypes.items()}
        data = prepare(definition, VcfSample("s", "test", genotypes))
        if data.undocumented or _hets(data) > MAX_REFERENCE_HETS:
            continue
        haplotypes = build_haplotypes(definition, data)
        fast = [(p.names, p.score) for p in match_diplotypes(data, haplotypes, top_candidate_only=False)]
        assert fast == _reference_match(data, haplotypes)
        assert data.permutation_count() == len(data.permutations())


@pytest.mark.parametrize("gene", ["NAT2", "CYP2C9"])
def test_every_position_heterozygous_is_answered_quickly(gene: str) -> None:
    # 2^positions strand sequences (2^47 for NAT2): enumeration would never finish. No pair of named
    # alleles carries the variant allele at every position, so there is no call.
    definition = load_definitions((gene,))[gene]
    genotypes = {(p.chromosome, p.position): SampleGenotype((p.ref, p.alts[0])) for p in definition.positions}
    sample = VcfSample("all-het", "test", genotypes)
    start = time.perf_counter()
    call = call_gene(definition, sample)
    assert time.perf_counter() - start < 2.0
    assert call.diplotypes == () and not call.effectively_phased
    data = prepare(definition, sample)
    assert data.permutation_count() == 2 ** len(data.positions)


@pytest.mark.parametrize(
    ("gene", "first", "second"), [("CYP2B6", "*17", "*35"), ("NAT2", "*68", "*75"), ("SLCO1B1", "*54", "*55")]
)
def test_most_heterozygous_pair_of_named_alleles(gene: str, first: str, second: str) -> None:
    # the two named alleles of the gene that differ at the most positions (10, 5 and 6), written unphased
    definition = load_definitions((gene,))[gene]
    a, b = (next(na for na in definition.alleles if na.name == n) for n in (first, second))
    rng = random.Random(0)
    genotypes = {
        (p.chromosome, p.position): SampleGenotype(
            (_allele_at(definition, a.alleles[col], col, rng), _allele_at(definition, b.alleles[col], col, rng))
        )
        for col, p in enumerate(definition.positions)
    }
    data = prepare(definition, VcfSample("pair", "test", genotypes))
    haplotypes = build_haplotypes(definition, data)
    fast = [(p.names, p.score) for p in match_diplotypes(data, haplotypes, top_candidate_only=False)]
    assert fast == _reference_match(data, haplotypes)
    assert ((first, second), a.score + b.score) in fast
