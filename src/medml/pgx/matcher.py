"""The Named Allele Matcher: a sample's genotypes at a gene's positions -> the best-scoring diplotypes.

Follows PharmCAT 3.1.1 (docs/methods/NamedAlleleMatcher-101/201): haplotypes are redefined over the positions the
sample has (score = number of defined positions left; score-0 haplotypes dropped), blank definition cells take
the reference allele, and pairs of named alleles (IUPAC wobble codes match any of their bases) are kept when,
between them, they carry the sample's two alleles at every position: the result of matching each strand
permutation of the sample's alleles (PharmCAT's method), without building the 2^(heterozygous positions)
permutations. Only the top score is kept unless asked otherwise, ties all reported. DPYD's lowest-function
calling lives in :mod:`medml.pgx.lowest_function`.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from medml.pgx.calls import Diplotype, GeneCall
from medml.pgx.definitions import TREAT_UNDOCUMENTED_AS_REFERENCE, GeneDefinition, VariantLocus, load_definitions
from medml.pgx.naming import compare_names, name_key
from medml.pgx.phenotype import slco1b1_rs4149056_diplotype
from medml.pgx.vcf import SampleGenotype, VcfSample

IUPAC = {
    "R": "AG",
    "Y": "CT",
    "S": "CG",
    "W": "AT",
    "K": "GT",
    "M": "AC",
    "B": "CGT",
    "D": "AGT",
    "H": "ACT",
    "V": "ACG",
    "N": "ACGT",
}

Sequence = tuple[str, ...]
#: genes called variant by variant, recommendations from the lowest-function variants
LOWEST_FUNCTION_GENES = frozenset({"DPYD", "RYR1"})


@dataclass
class GeneData:
    """A gene's sample data, ready to match: available positions, per-position genotypes, strand permutations."""

    gene: str
    positions: list[VariantLocus]
    genotypes: list[SampleGenotype]
    missing: list[VariantLocus]
    warnings: list[str] = field(default_factory=list)
    undocumented: bool = False
    partial: bool = False

    @property
    def haploid(self) -> bool:
        return bool(self.genotypes) and all(len(g.alleles) == 1 for g in self.genotypes)

    @property
    def phased(self) -> bool:
        return bool(self.genotypes) and all(g.phased for g in self.genotypes)

    def strand_fixed(self) -> list[bool]:
        """Per position: is the strand of each allele known (homozygous, haploid, or phased in the main set)?"""
        main_set = next((g.phase_set for g in self.genotypes if g.phased and not g.homozygous), None)
        return [
            g.alleles[0] == g.alleles[-1] or (g.phased and g.phase_set == main_set)  # haploid or homozygous
            for g in self.genotypes
        ]

    def permutations(self) -> set[Sequence]:
        """Every strand sequence the genotypes allow (PharmCAT's CombinationUtil.generatePermutations)."""
        fixed = self.strand_fixed()
        seqs: set[Sequence] = set()
        for strand in (0, 1):
            partial: list[list[str]] = [[]]
            for g, known in zip(self.genotypes, fixed, strict=True):
                if len(g.alleles) == 1:
                    if strand == 1:
                        partial = []
                        break
                    partial = [[*p, g.alleles[0]] for p in partial]
                elif known:
                    partial = [[*p, g.alleles[strand]] for p in partial]
                else:
                    partial = [[*p, a] for p in partial for a in g.alleles]
            seqs.update(tuple(p) for p in partial)
        return seqs

    def permutation_count(self) -> int:
        """How many sequences :meth:`permutations` gives, without building them (2 per free heterozygous position,
        doubled when phased heterozygous positions tell the two strands apart)."""
        fixed = self.strand_fixed()
        if self.haploid:
            return 1
        free = sum(not known for known in fixed)
        split = any(
            known and len(g.alleles) == 2 and not g.homozygous for g, known in zip(self.genotypes, fixed, strict=True)
        )
        diploid = all(len(g.alleles) == 2 for g in self.genotypes)
        return 2**free * (2 if split and diploid else 1)

    def complement(self, seq: Sequence) -> Sequence | None:
        """The other strand, given one: the other allele at each heterozygous position."""
        out = []
        for g, a in zip(self.genotypes, seq, strict=True):
            if len(g.alleles) == 1:
                return None
            out.append(g.alleles[1] if a == g.alleles[0] else g.alleles[0])
        return tuple(out)


@dataclass(frozen=True)
class Haplotype:
    """A named allele redefined over the available positions: one acceptable-allele set (or None) per position."""

    name: str
    pattern: tuple[frozenset[str] | None, ...]
    score: int
    reference: bool = False
    #: positions defined by an IUPAC wobble code: they score only where the sample carries a non-reference base
    wobbles: tuple[int, ...] = ()
    #: bit i set where position i accepts its reference base (None: work it out from the loci when matching)
    ref_mask: int | None = field(default=None, compare=False)

    def matches(self, seq: Sequence) -> bool:
        return all(p is None or a in p for p, a in zip(self.pattern, seq, strict=True))

    def score_for(self, seq: Sequence, refs: Sequence) -> int:
        """The score on one strand (PharmCAT's scoreForSample): a wobble carrying the reference base scores 0."""
        return self.score - sum(seq[i] == refs[i] for i in self.wobbles)


def _accepts(cell: str) -> frozenset[str]:
    return frozenset(IUPAC[cell]) if len(cell) == 1 and cell in IUPAC else frozenset((cell,))


def prepare(
    definition: GeneDefinition,
    sample: VcfSample,
    *,
    skip_positions: Iterable[int] = (),
    keep_undocumented: bool = False,
) -> GeneData:
    """Collect the sample's genotypes at the gene's positions; undocumented alleles become reference for the
    toxicity genes (PharmCAT's TREAT_UNDOCUMENTED_VARIATIONS_AS_REFERENCE) and block the call otherwise.
    ``keep_undocumented`` (research mode, combinations) keeps them as they are, to be named as partials."""
    skip = set(skip_positions)
    data = GeneData(gene=definition.gene, positions=[], genotypes=[], missing=[])
    for locus, key, known in _matched_loci(definition):
        if skip and locus.position in skip:
            continue
        gt = sample.genotypes.get(key)
        if gt is None:
            data.missing.append(locus)
            continue
        if gt.partial:
            data.partial = True
        if not known.issuperset(gt.alleles):
            if definition.gene in TREAT_UNDOCUMENTED_AS_REFERENCE and not keep_undocumented:
                data.warnings.append(
                    f"undocumented allele at {locus.chromosome}:{locus.position} "
                    f"({'/'.join(gt.alleles)}) treated as reference"
                )
                gt = replace(gt, alleles=tuple(a if a in known else locus.ref for a in gt.alleles))
            else:
                data.undocumented = True
                data.warnings.append(
                    f"undocumented allele at {locus.chromosome}:{locus.position} "
                    f"({'/'.join(gt.alleles)}): {definition.gene} not called"
                )
        data.positions.append(locus)
        data.genotypes.append(gt)
    return data


#: per-definition memo, keyed by identity: definitions are immutable, and hashing one by value is slow (RYR1's
#: table has ~100,000 cells). The definition is kept in the entry, so its id cannot be reused while cached.
_DEFINITION_MEMO: dict[int, tuple[GeneDefinition, dict[Hashable, Any]]] = {}
_MEMO_LIMIT = 256


def definition_memo(definition: GeneDefinition) -> dict[Hashable, Any]:
    """A dict for work that depends only on ``definition`` (and the key), shared by every sample."""
    entry = _DEFINITION_MEMO.get(id(definition))
    if entry is None or entry[0] is not definition:
        if len(_DEFINITION_MEMO) >= _MEMO_LIMIT:
            _DEFINITION_MEMO.clear()
        entry = (definition, {})
        _DEFINITION_MEMO[id(definition)] = entry
    return entry[1]


def _matched_loci(definition: GeneDefinition) -> tuple[tuple[VariantLocus, tuple[str, int], frozenset[str]], ...]:
    """The positions matched (all but :func:`_unused_positions`): locus, VCF key and the VCF alleles it knows."""
    memo = definition_memo(definition)
    if "matched_loci" not in memo:
        unused = _unused_positions(definition)
        memo["matched_loci"] = tuple(
            (locus, (locus.chromosome, locus.position), locus.vcf_alleles)
            for locus in definition.positions
            if locus.position not in unused
        )
    result: tuple[tuple[VariantLocus, tuple[str, int], frozenset[str]], ...] = memo["matched_loci"]
    return result


def _unused_positions(definition: GeneDefinition) -> frozenset[int]:
    """Positions defined only by ignored alleles (G6PD's Mediterranean Haplotype): dropped from matching."""
    ignored = definition.exemption.ignored_alleles
    if not ignored:
        return frozenset()
    used_by_ignored: set[int] = set()
    used_by_others: set[int] = set()
    for na in definition.alleles[1:]:
        target = used_by_ignored if na.name.lower() in ignored else used_by_others
        target.update(p.position for p, a in zip(definition.positions, na.alleles, strict=True) if a is not None)
    return frozenset(used_by_ignored - used_by_others)


def build_haplotypes(
    definition: GeneDefinition, data: GeneData, *, assume_reference: bool = True, exclude: Iterable[str] = ()
) -> tuple[Haplotype, ...]:
    """Named alleles over the available positions; blank cells take the reference allele when ``assume_reference``.

    Built once per definition and set of available positions (most samples have the same positions)."""
    skip = frozenset(n.lower() for n in exclude)
    key = ("haplotypes", tuple(p.position for p in data.positions), assume_reference, skip)
    memo = definition_memo(definition)
    found: tuple[Haplotype, ...] | None = memo.get(key)
    if found is None:
        if len(memo) >= _MEMO_LIMIT:
            memo.clear()
        found = memo[key] = _build_haplotypes(definition, data.positions, assume_reference, skip)
    return found


def _build_haplotypes(
    definition: GeneDefinition, positions: list[VariantLocus], assume_reference: bool, exclude: frozenset[str]
) -> tuple[Haplotype, ...]:
    index = {p.position: i for i, p in enumerate(definition.positions)}
    cols = [index[p.position] for p in positions]
    ref = definition.reference
    skip = exclude | set(definition.exemption.ignored_alleles)
    out = []
    for na in definition.alleles:
        if na.name.lower() in skip:
            continue
        cells = [na.alleles[c] for c in cols]
        score = sum(c is not None for c in cells)
        if score == 0:
            continue
        pattern: list[frozenset[str] | None] = []
        wobbles = tuple(i for i, c in enumerate(cells) if c is not None and len(c) == 1 and c in IUPAC)
        for c, locus, col in zip(cells, positions, cols, strict=True):
            if c is None and assume_reference and not na.reference:
                r = ref.alleles[col]
                c = locus.ref if r is None or r in IUPAC else r
            pattern.append(None if c is None else _accepts(c))
        out.append(
            Haplotype(
                na.name,
                tuple(pattern),
                score,
                na.reference,
                wobbles,
                _ref_mask(tuple(pattern), [p.ref for p in positions]),
            )
        )
    return tuple(out)


def _ref_mask(pattern: tuple[frozenset[str] | None, ...], refs: Iterable[str]) -> int:
    return sum(1 << i for i, (p, r) in enumerate(zip(pattern, refs, strict=True)) if p is None or r in p)


@dataclass
class _Pair:
    h1: Haplotype
    h2: Haplotype | None
    score: int

    @property
    def names(self) -> tuple[str, ...]:
        return (self.h1.name,) if self.h2 is None else (self.h1.name, self.h2.name)

    @property
    def label(self) -> str:
        return "/".join(self.names)


def _ordered(a: Haplotype, b: Haplotype) -> tuple[Haplotype, Haplotype]:
    return (a, b) if compare_names(a.name, b.name) <= 0 else (b, a)


@dataclass(frozen=True)
class _Strands:
    """A sample's genotypes as bitmasks over the positions (bit i = position i), for matching without permuting.

    ``first``/``second`` are each position's two alleles as written (the same allele twice when homozygous or
    haploid). A pair of haplotypes explains the genotypes when, at every position, one carries ``first`` and the
    other ``second``; at the ``fixed`` heterozygous positions (phased in the main phase set) one haplotype carries
    every ``first`` allele, or every ``second``."""

    first: Sequence
    second: Sequence
    refs: Sequence
    first_is_ref: int
    second_is_ref: int
    fixed: int  # heterozygous, strand known
    free: int  # heterozygous, strand unknown
    all_positions: int

    @classmethod
    def of(cls, data: GeneData) -> _Strands:
        first = tuple(g.alleles[0] for g in data.genotypes)
        second = tuple(g.alleles[-1] for g in data.genotypes)
        refs = tuple(p.ref for p in data.positions)
        fixed = free = first_is_ref = second_is_ref = 0
        for i, (a, b, r, known) in enumerate(zip(first, second, refs, data.strand_fixed(), strict=True)):
            bit = 1 << i
            if a == r:
                first_is_ref |= bit
            if b == r:
                second_is_ref |= bit
            if a != b:
                if known:
                    fixed |= bit
                else:
                    free |= bit
        return cls(first, second, refs, first_is_ref, second_is_ref, fixed, free, (1 << len(first)) - 1)

    def accepted(self, hap: Haplotype, alleles: Sequence, is_ref: int) -> int:
        """Positions where ``hap`` accepts ``alleles`` (one per position): the reference ones from its mask,
        the others looked up."""
        pattern = hap.pattern
        mask = hap.ref_mask if hap.ref_mask is not None else _ref_mask(pattern, self.refs)
        out = mask & is_ref
        rest = self.all_positions & ~is_ref
        while rest:
            low = rest & -rest
            i = low.bit_length() - 1
            p = pattern[i]
            if p is None or alleles[i] in p:
                out |= low
            rest ^= low
        return out

    def penalty(self, h1: Haplotype, h2: Haplotype, straight: int, crossed: int) -> int:
        """The least wobble penalty (a wobble carrying the reference base scores 0) over the strand assignments
        allowed: ``straight``/``crossed`` are the positions where h1 may take ``first``/``second``."""
        if not h1.wobbles and not h2.wobbles:
            return 0
        w1, w2 = set(h1.wobbles), set(h2.wobbles)

        def cost(i: int, flip: bool) -> int:
            a, b = (self.second[i], self.first[i]) if flip else (self.first[i], self.second[i])
            return (i in w1 and a == self.refs[i]) + (i in w2 and b == self.refs[i])

        best: int | None = None
        for flip_fixed in (False, True):
            if (self.fixed & ~(crossed if flip_fixed else straight)) != 0:
                continue
            total = 0
            for i in w1 | w2:
                if self.fixed >> i & 1:
                    total += cost(i, flip_fixed)
                else:
                    total += min(cost(i, flip) for flip, ok in ((False, straight), (True, crossed)) if ok >> i & 1)
            best = total if best is None else min(best, total)
        assert best is not None  # callers pass a pair that explains the genotypes
        return best


def match_diplotypes(data: GeneData, haplotypes: Iterable[Haplotype], *, top_candidate_only: bool) -> list[_Pair]:
    """Pair matched haplotypes into diplotypes consistent with the genotypes; best score first, ties by name.

    Same result as matching every strand permutation (PharmCAT's way), without building them: one pass over the
    sample's non-reference alleles per haplotype, then a few integer operations per pair of matched haplotypes."""
    strands = _Strands.of(data)
    diploid = all(len(g.alleles) == 2 for g in data.genotypes)
    # one strand sequence: haploid, all homozygous, or (mixed ploidy) no free heterozygous position; mixed
    # ploidy otherwise has no second strand to pair with, so no diplotype (as with permutations)
    single = data.haploid or (not strands.free and (not diploid or not strands.fixed))
    matched: dict[str, tuple[Haplotype, int, int]] = {}
    for hap in haplotypes:
        acc1 = strands.accepted(hap, strands.first, strands.first_is_ref)
        if single:
            if acc1 == strands.all_positions:
                matched[hap.name] = (hap, acc1, acc1)
            continue
        acc2 = strands.accepted(hap, strands.second, strands.second_is_ref) if diploid else acc1
        either = acc1 | acc2
        if either == strands.all_positions and (
            not strands.fixed or (strands.fixed & ~acc1) == 0 or (strands.fixed & ~acc2) == 0
        ):
            matched[hap.name] = (hap, acc1, acc2)
    pairs: list[_Pair] = []
    if single:
        seq = strands.first
        if data.haploid:
            pairs = [_Pair(h, None, h.score_for(seq, strands.refs)) for h, _, _ in matched.values()]
        else:
            haps = sorted((h for h, _, _ in matched.values()), key=lambda h: name_key(h.name))
            pairs = [
                _Pair(*_ordered(a, b), a.score_for(seq, strands.refs) + b.score_for(seq, strands.refs))
                for i, a in enumerate(haps)
                for b in haps[i:]
            ]
    elif diploid:
        names = sorted(matched, key=name_key)
        unfixed = strands.all_positions & ~strands.fixed
        for i, n1 in enumerate(names):
            h1, a1, b1 = matched[n1]
            for n2 in names[i:]:
                h2, a2, b2 = matched[n2]
                straight, crossed = a1 & b2, b1 & a2
                if (unfixed & ~(straight | crossed)) != 0:
                    continue
                if strands.fixed and (strands.fixed & ~straight) != 0 and (strands.fixed & ~crossed) != 0:
                    continue
                score = h1.score + h2.score - strands.penalty(h1, h2, straight, crossed)
                pairs.append(_Pair(*_ordered(h1, h2), score))
    pairs.sort(key=lambda p: (-p.score, *(name_key(n) for n in p.names)))
    if top_candidate_only and pairs:
        pairs = [p for p in pairs if p.score == pairs[0].score]
    return pairs


def call_gene(
    definition: GeneDefinition, sample: VcfSample, *, top_candidate_only: bool = True, find_combinations: bool = False
) -> GeneCall:
    """Call one gene of one sample (DPYD goes through the lowest-function caller)."""
    if definition.gene in LOWEST_FUNCTION_GENES:
        from medml.pgx.lowest_function import call_lowest_function

        # the combinations flag does not apply to lowest-function genes; research mode keeps 1|. strands
        return call_lowest_function(definition, sample, keep_partial_strands=find_combinations)
    data = prepare(definition, sample, keep_undocumented=find_combinations)
    missing = tuple(p.position for p in data.missing)
    base = GeneCall(gene=definition.gene, source="vcf", missing_positions=missing)
    if not data.positions:
        return _with(base, warnings=(f"no {definition.gene} positions in the VCF",))
    required_missing = definition.exemption.required_positions & set(missing)
    if required_missing:
        return _with(base, warnings=(f"required position(s) {sorted(required_missing)} missing: not called",))
    if data.partial and not find_combinations:
        return _with(base, warnings=(*data.warnings, "a partial genotype (e.g. 1/.) blocks the call"))
    if data.partial:
        # PharmCAT's callAssumingReference: in research mode a partial genotype goes straight to combination
        # matching, its uncalled allele kept as "." (named as the partial g.<pos>?)
        data.genotypes = [g.with_missing_allele() for g in data.genotypes]
        return _combination_call(definition, data, base)
    if data.undocumented and not find_combinations:
        return _with(base, warnings=tuple(data.warnings))
    all_hits = definition.exemption.all_hits
    top = top_candidate_only if all_hits is None else not all_hits
    effectively_phased = all(data.strand_fixed()) or data.permutation_count() <= 2
    # PharmCAT's unphased-priority mode: every candidate is kept, for the priorities to choose among
    priority_mode = not effectively_phased and definition.exemption.keep_all_unphased
    haplotypes = build_haplotypes(definition, data)
    pairs = match_diplotypes(data, haplotypes, top_candidate_only=top and not priority_mode)
    if not pairs and find_combinations:
        return _combination_call(definition, data, base)
    warnings = tuple(data.warnings)
    if not effectively_phased and len(pairs) > 1:
        picked = pick_by_priority(pairs, definition.exemption.unphased_priorities)
        if picked is not None:
            pairs = [picked]
            warnings += (
                f"unphased {definition.gene} variants gave several calls; picked {picked.label} "
                "from frequency data (PharmCAT's unphased priorities)",
            )
    return _with(
        base,
        diplotypes=tuple(Diplotype(p.names, p.score) for p in pairs),
        phased=data.phased,
        effectively_phased=effectively_phased,
        warnings=warnings,
    )


def _combination_call(definition: GeneDefinition, data: GeneData, base: GeneCall) -> GeneCall:
    """Research mode's combination and partial calls: every pair, whatever topCandidateOnly (PharmCAT's
    callCombination), best score first."""
    from medml.pgx.combinations import combination_diplotypes

    combos = combination_diplotypes(definition, data)
    return _with(
        base,
        diplotypes=tuple(Diplotype(c.names, c.score) for c in combos),
        phased=data.phased,
        effectively_phased=data.permutation_count() <= 2,
        warnings=tuple(data.warnings),
    )


def pick_by_priority(pairs: list[_Pair], priorities: Iterable[tuple[frozenset[str], str]]) -> _Pair | None:
    """The first priority whose every listed diplotype is among the candidates names the one to keep (PharmCAT's
    ResultBuilder); ``None`` when no priority applies. Lower-scoring candidates count: PharmCAT keeps them all in
    unphased-priority mode, so the most frequent diplotype can win over a higher score."""
    by_label = {p.label: p for p in pairs}
    for options, pick in priorities:
        if options <= by_label.keys():
            return by_label[pick]  # the pick is one of the options (checked on loading)
    return None


def _with(call: GeneCall, **changes: object) -> GeneCall:
    from dataclasses import replace

    return replace(call, **changes)  # type: ignore[arg-type]


def call_genes(
    sample: VcfSample,
    *,
    genes: Iterable[str] | None = None,
    find_combinations: bool = False,
    top_candidate_only: bool = True,
    definitions: Mapping[str, GeneDefinition] | None = None,
) -> dict[str, GeneCall]:
    """Call every gene (default: PharmCAT's default set, CYP2D6 excluded) of one VCF sample."""
    defs = definitions if definitions is not None else load_definitions(tuple(genes) if genes else None)
    wanted = list(genes) if genes else list(defs)
    calls = {
        g: call_gene(defs[g], sample, top_candidate_only=top_candidate_only, find_combinations=find_combinations)
        for g in wanted
    }
    if "SLCO1B1" in calls and not calls["SLCO1B1"].called:
        calls["SLCO1B1"] = slco1b1_fallback(calls["SLCO1B1"], sample)
    return calls


#: SLCO1B1 c.521T>C (rs4149056), GRCh38: the variant that carries most of the statin myopathy risk
RS4149056 = ("chr12", 21178615)


def slco1b1_fallback(call: GeneCall, sample: VcfSample) -> GeneCall:
    """PharmCAT's Slco1b1CustomCaller: with no star call, rs4149056 alone decides the lookup (C read as ``*5``).

    The gene stays "not called" (no diplotype); the warning says which variant the recommendation rests on.
    """
    gt = sample.genotypes.get(RS4149056)
    if gt is None or gt.partial or len(gt.alleles) != 2 or not set(gt.alleles) <= {"T", "C"}:
        return call
    lookup = slco1b1_rs4149056_diplotype("/".join(gt.alleles))
    shown = "/".join(f"rs4149056 {a}" for a in sorted(gt.alleles))
    return replace(
        call,
        lookup=(lookup,),
        warnings=(*call.warnings, f"no star-allele call; recommendations from rs4149056 alone ({shown})"),
    )
