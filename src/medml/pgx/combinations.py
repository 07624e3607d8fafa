"""Combination and partial-allele calling, PharmCAT's research mode (``-research combinations``).

Tried only when the normal matcher finds no diplotype. Definitions are not filled with the reference here (a blank
cell matches anything). Each strand permutation, phased or not, is explained as PharmCAT's CombinationMatcher does:

- the named alleles (not the reference) whose defined cells the strand carries are found, less UGT1A1's prebuilt
  ``*80+*28`` and ``*80+*37`` (:func:`prebuilt_combinations`);
- none or one: that allele (the reference when none), with every variant it leaves unexplained added as a partial,
  written as the position's ``g.`` HGVS (``[*17 + g.94781859G>A]``; a strand with no named allele but variants is
  an off-reference partial named by its ``g.`` variants alone);
- several: they are grouped greedily, the alleles with the most defined positions first (then by name), each joining
  every group it shares no position with (a variant is never counted in two alleles on one copy); an allele that
  overlaps an allele of a different size in some group starts no group of its own. Each group, plus its partials,
  is one explanation (``[*6 + *14]``).

Strands are paired as in the normal matcher. Every pair is returned (PharmCAT ignores ``topCandidateOnly`` here),
ordered as PharmCAT's DiplotypeMatch: by score (the positions each strand's components define, the reference's all
of them, partials nothing), then by name. A partial genotype (``1/.``) is matched here with its uncalled allele as
``.``, named ``g.<pos>?``.
"""

from __future__ import annotations

from dataclasses import dataclass

from medml.pgx.definitions import GeneDefinition, VariantLocus
from medml.pgx.matcher import GeneData, Haplotype, Sequence, build_haplotypes
from medml.pgx.naming import name_key
from medml.pgx.vcf import MISSING


@dataclass(frozen=True)
class StrandMatch:
    """Named alleles (one, or several combined) plus partials explaining one strand sequence."""

    components: tuple[Haplotype, ...]
    seq: Sequence
    partials: tuple[str, ...] = ()
    off_reference: bool = False

    @property
    def score(self) -> int:
        """PharmCAT's CombinationMatch score: the positions its components define between them (the reference's
        every position for an off-reference partial); partials add nothing."""
        return sum(any(c.pattern[i] is not None for c in self.components) for i in range(len(self.seq)))

    @property
    def name(self) -> str:
        parts = [*self.partials] if self.off_reference else [c.name for c in self.components] + list(self.partials)
        return parts[0] if len(parts) == 1 else "[" + " + ".join(parts) + "]"


def hgvs_for(locus: VariantLocus, allele: str) -> str:
    """The partial's name for one VCF allele, as PharmCAT's VariantLocus.getHgvsForVcfAllele: a missing allele
    (``.``, from ``1/.``) is ``g.40991369?``, the reference ``g.40991369=``, the i-th ALT the i-th name of the
    position's ``chromosomeHgvsName`` (``;``-separated), and an undocumented allele ``g.<pos><ref>><allele>``."""
    if allele == MISSING:
        return f"g.{locus.position}?"
    if allele == locus.ref:
        return f"g.{locus.position}="
    names = [n.strip() for n in locus.hgvs.split(";")]
    if allele in locus.alts and locus.alts.index(allele) < len(names):
        return names[locus.alts.index(allele)]
    return f"g.{locus.position}{locus.ref}>{allele}"


def _overlaps(a: Haplotype, b: Haplotype) -> bool:
    return any(x is not None and y is not None for x, y in zip(a.pattern, b.pattern, strict=True))


def _partials(data: GeneData, components: tuple[Haplotype, ...], seq: Sequence) -> tuple[str, ...]:
    """The strand's variants at positions none of ``components`` defines, as ``g.`` HGVS names."""
    return tuple(
        hgvs_for(locus, a)
        for i, (locus, a) in enumerate(zip(data.positions, seq, strict=True))
        if a != locus.ref and all(c.pattern[i] is None for c in components)
    )


def _explain(data: GeneData, components: tuple[Haplotype, ...], seq: Sequence) -> StrandMatch:
    ordered = tuple(sorted(components, key=lambda h: (not h.reference, name_key(h.name))))
    return StrandMatch(ordered, seq, _partials(data, components, seq))


def greedy_groups(covered: list[Haplotype]) -> list[tuple[Haplotype, ...]]:
    """PharmCAT's viable combinations of the named alleles a strand carries (see the module docstring).

    Two alleles of the same size that overlap (typically because a position is missing) do not block a new group."""
    groups: list[list[Haplotype]] = []
    for hap in sorted(covered, key=lambda h: (-h.score, h.name)):
        added = False
        blocked = 0
        for group in groups:
            overlapping = [g for g in group if _overlaps(g, hap)]
            if not overlapping:
                group.append(hap)
                added = True
            elif any(g.score != hap.score for g in overlapping):
                blocked += 1
        if not added and not blocked:
            groups.append([hap])
    return [tuple(g) for g in groups]


def prebuilt_combinations(definition: GeneDefinition) -> tuple[str, ...]:
    """Alleles the combination matcher leaves out because it builds them itself: UGT1A1's ``*80+*28`` and
    ``*80+*37`` (PharmCAT's MatchData.isIgnorableCombination, applied by marshallHaplotypes in combination mode), so a
    strand carrying *80 and *28 is the combination ``[*28 + *80]``."""
    if definition.gene != "UGT1A1":
        return ()
    return tuple(a.name for a in definition.alleles if "+" in a.name)


def strand_matches(definition: GeneDefinition, data: GeneData) -> list[StrandMatch]:
    """Every explanation of each strand permutation: a named allele, a combination, partials or an off-reference
    partial, as PharmCAT's CombinationMatcher."""
    haplotypes = build_haplotypes(definition, data, assume_reference=False, exclude=prebuilt_combinations(definition))
    reference = next((h for h in haplotypes if h.reference), None)
    out: list[StrandMatch] = []
    for seq in sorted(data.permutations()):
        covered = [h for h in haplotypes if not h.reference and h.matches(seq)]
        if len(covered) > 1:
            out += [_explain(data, group, seq) for group in greedy_groups(covered)]
        elif covered:
            out.append(_explain(data, (covered[0],), seq))
        elif reference is not None:
            partials = _partials(data, (), seq)
            out.append(StrandMatch((reference,), seq, partials, off_reference=bool(partials)))
    return out


@dataclass(frozen=True)
class CombinationPair:
    names: tuple[str, ...]
    #: the sum of the two strands' scores: not filtered on (every pair is returned), but ordered by
    score: int = 0


def combination_diplotypes(definition: GeneDefinition, data: GeneData) -> list[CombinationPair]:
    """Every diplotype the combination/partial strand explanations make, each label once, in PharmCAT's
    DiplotypeMatch order: best score first, then by the first haplotype's name, then the second's."""
    matches = strand_matches(definition, data)
    by_name: dict[str, list[StrandMatch]] = {}
    for m in matches:
        by_name.setdefault(m.name, []).append(m)
    names = sorted(by_name, key=name_key)
    scores = {n: by_name[n][0].score for n in names}
    pairs: set[tuple[str, ...]] = set()
    if data.haploid:
        pairs = {(n,) for n in names}
    elif data.permutation_count() == 1:
        pairs = {(n1, n2) for i, n1 in enumerate(names) for n2 in (names[i:] if len(names) > 1 else names)}
    else:
        for i, n1 in enumerate(names):
            for n2 in names[i:]:
                group1, group2 = by_name[n1], by_name[n2]
                if n1 == n2:
                    if len(group1) == 1:
                        continue
                    if len(group1) == 2:
                        group1, group2 = group1[1:], group1[:1]
                if any(data.complement(m1.seq) == m2.seq for m1 in group1 for m2 in group2):
                    pairs.add((n1, n2))
    scored = [CombinationPair(p, sum(scores[n] for n in p)) for p in pairs]
    return sorted(scored, key=lambda c: (-c.score, *(name_key(n) for n in c.names)))
