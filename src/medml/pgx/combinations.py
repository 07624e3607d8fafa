"""Combination and partial-allele calling, PharmCAT's research mode (``-research combinations``).

Tried only when the normal matcher finds no diplotype. Definitions are not filled with the reference here (a blank
cell matches anything). Each strand permutation is matched by every named allele whose defined cells it carries;
named alleles on the same strand that define no position in common combine (``[*6 + *14]``; a variant is never
counted in two alleles on one copy); a variant left unexplained on a strand is added as a partial, written as the
position's ``g.`` HGVS (``[*17 + g.94781859G>A]``); a strand nothing matches, when the data are (effectively)
phased, is an off-reference partial named by its ``g.`` variants alone. Strands are paired as in the normal matcher.
Scores prefer fewer combinations and fewer partials (PharmCAT's DiplotypeMatcher with combinations): a haplotype
scores its defined positions, less twice its partials, plus (most components of any combination - its own).
"""

from __future__ import annotations

from dataclasses import dataclass

from medml.pgx.definitions import GeneDefinition, VariantLocus
from medml.pgx.matcher import GeneData, Haplotype, Sequence, build_haplotypes
from medml.pgx.naming import name_key


@dataclass(frozen=True)
class StrandMatch:
    """Named alleles (one, or several combined) plus partials explaining one strand sequence."""

    components: tuple[Haplotype, ...]
    seq: Sequence
    partials: tuple[str, ...] = ()
    #: True for the combination built by merging named alleles (PharmCAT's CombinationMatch)
    combination: bool = False
    off_reference: bool = False

    @property
    def name(self) -> str:
        parts = [*self.partials] if self.off_reference else [c.name for c in self.components] + list(self.partials)
        return parts[0] if len(parts) == 1 else "[" + " + ".join(parts) + "]"

    @property
    def num_combinations(self) -> int:
        return len(self.components) if self.combination or self.off_reference else 0

    def defined(self) -> int:
        return sum(any(c.pattern[i] is not None for c in self.components) for i in range(len(self.seq)))

    def score(self, max_combinations: int) -> int:
        base = 0 if self.off_reference else self.defined() - len(self.partials)
        return base - len(self.partials) + max_combinations - self.num_combinations


def hgvs_for(locus: VariantLocus, allele: str) -> str:
    """The position's chromosomal HGVS for one VCF allele (``g.94781859G>A``), built for an undocumented SNV."""
    names = [n.strip() for n in locus.hgvs.split(";") if n.strip()]
    for n in names:
        if n.endswith(f">{allele}"):
            return n
    if len(names) == 1 and allele in locus.alts and not (len(allele) == 1 and len(locus.ref) == 1):
        return names[0]
    return f"g.{locus.position}{locus.ref}>{allele}"


def _overlaps(a: Haplotype, b: Haplotype) -> bool:
    return any(x is not None and y is not None for x, y in zip(a.pattern, b.pattern, strict=True))


def _finalize(data: GeneData, components: tuple[Haplotype, ...], seq: Sequence, combination: bool) -> StrandMatch:
    partials = tuple(hgvs_for(locus, a) for i, (locus, a) in enumerate(zip(data.positions, seq, strict=True))
                     if a != locus.ref and all(c.pattern[i] is None for c in components))
    ordered = tuple(sorted(components, key=lambda h: (not h.reference, name_key(h.name))))
    return StrandMatch(ordered, seq, partials, combination)


def _combine(data: GeneData, matches: list[tuple[Haplotype, Sequence]], start: int,
             current: tuple[Haplotype, ...], seq: Sequence) -> list[StrandMatch]:
    out = []
    for j in range(start, len(matches)):
        hap, other_seq = matches[j]
        if other_seq != seq or any(_overlaps(hap, c) for c in current):
            continue
        merged = (*current, hap)
        out.append(_finalize(data, merged, seq, True))
        out += _combine(data, matches, j + 1, merged, seq)
    return out


def strand_matches(definition: GeneDefinition, data: GeneData) -> list[StrandMatch]:
    """Every single, combined, partial and off-reference explanation of each strand permutation."""
    haplotypes = build_haplotypes(definition, data, assume_reference=False)
    perms = sorted(data.permutations())
    singles = [(h, s) for h in haplotypes for s in perms if h.matches(s)]
    out: list[StrandMatch] = []
    for i, (hap, seq) in enumerate(singles):
        out.append(_finalize(data, (hap,), seq, False))
        out += _combine(data, singles, i + 1, (hap,), seq)
    if len(perms) <= 2:
        reference = next((h for h in haplotypes if h.reference), None)
        covered = {m.seq for m in out}
        for seq in perms:
            if reference is not None and seq not in covered:
                partials = tuple(hgvs_for(locus, a) for locus, a in zip(data.positions, seq, strict=True)
                                 if a != locus.ref)
                out.append(StrandMatch((reference,), seq, partials, off_reference=True))
    return out


@dataclass(frozen=True)
class CombinationPair:
    names: tuple[str, ...]
    score: int


def combination_diplotypes(definition: GeneDefinition, data: GeneData, *,
                           top_candidate_only: bool) -> list[CombinationPair]:
    """Diplotypes from combination/partial strand matches, best score first, ties by name, each label once."""
    matches = strand_matches(definition, data)
    if not matches:
        return []
    max_comb = max((m.num_combinations for m in matches), default=0)
    by_name: dict[str, list[StrandMatch]] = {}
    for m in matches:
        by_name.setdefault(m.name, []).append(m)
    names = sorted(by_name, key=name_key)
    pairs: dict[tuple[str, ...], int] = {}
    if data.haploid:
        for n in names:
            pairs[(n,)] = max(m.score(max_comb) for m in by_name[n])
    elif data.permutation_count() == 1:
        for i, n1 in enumerate(names):
            for n2 in names[i:] if len(names) > 1 else names:
                pairs[(n1, n2)] = by_name[n1][0].score(max_comb) + by_name[n2][0].score(max_comb)
    else:
        for i, n1 in enumerate(names):
            for n2 in names[i:]:
                group1, group2 = by_name[n1], by_name[n2]
                if n1 == n2:
                    if len(group1) == 1:
                        continue
                    if len(group1) == 2:
                        group1, group2 = group1[1:], group1[:1]
                for m1 in group1:
                    for m2 in group2:
                        if data.complement(m1.seq) == m2.seq:
                            score = m1.score(max_comb) + m2.score(max_comb)
                            pairs[(n1, n2)] = max(score, pairs.get((n1, n2), score))
    ordered = sorted(pairs.items(), key=lambda kv: (-kv[1], *(name_key(n) for n in kv[0])))
    if top_candidate_only and ordered:
        ordered = [kv for kv in ordered if kv[1] == ordered[0][1]]
    return [CombinationPair(names_, score) for names_, score in ordered]
