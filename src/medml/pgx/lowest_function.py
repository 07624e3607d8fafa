"""DPYD's and RYR1's lowest-function calling (PharmCAT's NamedAlleleMatcher.callDpyd and DpydHapB3Matcher).

These genes are called variant by variant. Phased or effectively phased data gives a diplotype whose strands
list the variants on them (``[c.498G>A + c.2582A>G]/c.2846A>T``, ``Reference`` when none); data phased in several
phase sets gives one diplotype per way of joining the sets. Unphased data gives the list of variants found, twice
when homozygous. Recommendations use the lowest-function variant of each strand (phased) or the two lowest overall
(unphased): for DPYD the lowest activity value, for RYR1 a malignant-hyperthermia function first (PharmCAT's
Ryr1ActivityComparator), ties broken by name; of several phased diplotypes, one is kept for the lookup
(:func:`_diplotype_rank`).

HapB3 is decided by the intronic rs75017182. A strand with the intronic variant but not the exonic rs56038477 is
the intronic-only allele ``c.1129-5923C>G``; both make HapB3. When the intronic position is missing the exonic one
is used, with ``pcat-dpyd-hapB3-exonic-only``; an exonic variant the intronic call does not support raises
``pcat-dpyd-hapB3-intronic-mismatch-exonic``. In research mode a phased partial genotype (``1|.``) keeps its
strands: a strand with no intronic allele is then called from its exonic one, as when the position is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from itertools import product
from typing import Any

from medml.pgx.calls import Diplotype, GeneCall
from medml.pgx.definitions import GeneDefinition, load_activity_values
from medml.pgx.matcher import GeneData, definition_memo, prepare
from medml.pgx.naming import name_key
from medml.pgx.phenotype import load_phenotype_table
from medml.pgx.vcf import MISSING, SampleGenotype, VcfSample

HAPB3 = "c.1129-5923C>G, c.1236G>A (HapB3)"
HAPB3_INTRONIC = "c.1129-5923C>G"
HAPB3_EXONIC_RSID = "rs56038477"
HAPB3_INTRONIC_RSID = "rs75017182"
MSG_EXONIC_ONLY = "pcat-dpyd-hapB3-exonic-only"
MSG_MISMATCH = "pcat-dpyd-hapB3-intronic-mismatch-exonic"
REFERENCE = "Reference"

Strands = tuple[tuple[str, ...], ...]  # the allele on each strand, per position


@dataclass(frozen=True)
class HapB3Call:
    """HapB3 for one sample: per strand when (effectively) phased, else the alleles found; and a message."""

    #: phased: the HapB3 allele on each strand (None when neither); None when unphased or both positions missing
    per_strand: tuple[str | None, ...] | None = None
    #: unphased: HapB3 alleles found (full HapB3 first, then the intronic-only allele)
    found: tuple[str, ...] = ()
    message: str | None = None

    @property
    def count(self) -> int:
        return sum(n is not None for n in self.per_strand) if self.per_strand is not None else len(self.found)


def _flags(allele: str, alleles: tuple[str, ...]) -> list[bool]:
    return [a == allele for a in alleles]


def call_hapb3(
    intron: tuple[str, ...] | None,
    exon: tuple[str, ...] | None,
    *,
    phased: bool,
    intron_allele: str = "C",
    exon_allele: str = "T",
) -> HapB3Call:
    """HapB3 from the sample's alleles at rs75017182 (``intron``) and rs56038477 (``exon``), None when missing.

    ``phased``: the alleles are in strand order (phased, or effectively phased), so the call is made per strand."""
    if intron is None and exon is None:
        return HapB3Call()
    if intron is None:
        assert exon is not None
        calls = _flags(exon_allele, exon)
        message = MSG_EXONIC_ONLY if len(calls) == 2 else None
        return _as_call([HAPB3 if c else None for c in calls], phased, message)
    introns = _flags(intron_allele, intron)
    if exon is None:
        return _as_call([HAPB3_INTRONIC if c else None for c in introns], phased, None)
    exons = _flags(exon_allele, exon)
    if len(introns) != 2 or len(exons) != 2:
        return HapB3Call(per_strand=(None,) * len(introns) if phased else None)
    if phased:
        strands: list[str | None] = []
        message = None
        for i, e, i_allele in zip(introns, exons, intron, strict=True):
            if i_allele == MISSING:  # no intronic allele on this strand: the exonic one stands in
                strands.append(HAPB3 if e else None)
                message = MSG_EXONIC_ONLY if e else message
            elif not i:
                strands.append(None)
                message = MSG_MISMATCH if e else message
            else:
                strands.append(HAPB3 if e else HAPB3_INTRONIC)
        return HapB3Call(per_strand=tuple(strands), message=message)
    n_intron, n_exon = sum(introns), sum(exons)
    if n_intron == n_exon:
        return HapB3Call(found=(HAPB3,) * n_intron)
    if n_intron > n_exon:  # the intronic call wins; strands with it but no exonic variant are intronic-only
        return HapB3Call(found=(HAPB3,) * n_exon + (HAPB3_INTRONIC,) * (n_intron - n_exon))
    return HapB3Call(found=(HAPB3,) * n_intron, message=MSG_MISMATCH)


def _as_call(strands: list[str | None], phased: bool, message: str | None) -> HapB3Call:
    if phased:
        return HapB3Call(per_strand=tuple(strands), message=message)
    return HapB3Call(found=tuple(sorted((s for s in strands if s), key=name_key)), message=message)


def _allele_names(definition: GeneDefinition) -> dict[tuple[int, str], tuple[str, ...]]:
    """(position, VCF allele) -> the single-position named alleles it makes (HapB3 alleles excluded)."""
    memo = definition_memo(definition)  # by identity: hashing RYR1's definition costs more than the lookup
    if "allele_names" not in memo:
        memo["allele_names"] = _find_allele_names(definition)
    result: dict[tuple[int, str], tuple[str, ...]] = memo["allele_names"]
    return result


def _find_allele_names(definition: GeneDefinition) -> dict[tuple[int, str], tuple[str, ...]]:
    out: dict[tuple[int, str], list[str]] = {}
    for na in definition.alleles[1:]:
        if na.name in (HAPB3, HAPB3_INTRONIC):
            continue
        for locus, cell in zip(definition.positions, na.alleles, strict=True):
            if cell is not None:
                out.setdefault((locus.position, cell), []).append(na.name)
    return {k: tuple(v) for k, v in out.items()}


def _strand_variants(definition: GeneDefinition, data: GeneData, strands: Strands, strand: int) -> list[str]:
    """Named single-position alleles carried on one strand, at the non-HapB3 positions of ``data``."""
    names_at = _allele_names(definition)
    names: list[str] = []
    for locus, alleles in zip(data.positions, strands, strict=True):
        allele = alleles[min(strand, len(alleles) - 1)]
        if allele != locus.ref:
            names += names_at.get((locus.position, allele), ())
    return names


def _strand_name(names: list[str]) -> str:
    if not names:
        return REFERENCE
    if len(names) == 1:
        return names[0]
    return "[" + " + ".join(sorted(names, key=name_key)) + "]"


@cache
def _malignant(gene: str) -> frozenset[str]:
    """Alleles whose function in the gene's phenotype table names malignant hyperthermia (RYR1)."""
    table = load_phenotype_table(gene)
    return frozenset(n for n, f in (table.functions if table else {}).items() if "Malignant" in f)


def _haplotype_rank(gene: str) -> Callable[[str], tuple[Any, ...]]:
    """The order in which a lowest-function gene's haplotypes are used for the lookup, lowest function first:
    RYR1 as PharmCAT's LowestFunctionGeneCaller.Ryr1ActivityComparator (a function containing "Malignant" first,
    then by name); DPYD by activity value (an allele without one counts as 1.0), then by name."""
    if gene == "RYR1":
        malignant = _malignant(gene)
        return lambda n: (n not in malignant, name_key(n))
    activity = load_activity_values(gene)
    return lambda n: (activity.get(n, 1.0), name_key(n))


def _diplotype_rank(gene: str) -> Callable[[tuple[str, ...]], tuple[Any, ...]]:
    """Which of several phased lookup diplotypes (one per way of joining phase sets) PharmCAT keeps
    (LowestFunctionGeneCaller.inferFromDiplotypes keeps the first): RYR1 by Ryr1DiplotypeMalignancyComparator (more
    malignant alleles first), DPYD by DiplotypeCpicActivityScoreComparator (lowest summed CPIC activity first, an
    allele without one counting 2.0); ties by the first allele's name, then the second's."""
    if gene == "RYR1":
        malignant = _malignant(gene)
        return lambda d: (-sum(h in malignant for h in d), *(name_key(h) for h in d))
    activity = load_activity_values(gene)
    return lambda d: (sum(activity.get(h, 2.0) for h in d), *(name_key(h) for h in d))


def _lowest(gene: str, names: list[str]) -> str:
    return min(names, key=_haplotype_rank(gene)) if names else REFERENCE


def _orientations(data: GeneData) -> list[Strands] | None:
    """Strand-ordered alleles for each way of joining the phase sets; None when the data are not phased enough.

    All heterozygous positions phased: one orientation per relative flip of the phase sets (the first set fixed).
    Otherwise, at most one heterozygous position: the alleles as given. Otherwise None (unphased)."""
    hets = [g for g in data.genotypes if len(g.alleles) == 2 and not g.homozygous]
    as_given: Strands = tuple(g.alleles for g in data.genotypes)
    if len(hets) <= 1:
        return [as_given]
    if not all(g.phased for g in hets):
        return None
    sets = list(dict.fromkeys(g.phase_set for g in hets))
    out = []
    for flips in product((False, True), repeat=len(sets) - 1):
        flipped = {s for s, f in zip(sets[1:], flips, strict=True) if f}
        out.append(tuple(_flip(g) if g.phased and g.phase_set in flipped else g.alleles for g in data.genotypes))
    return out


def _with_strands(g: SampleGenotype) -> SampleGenotype:
    """``1|.`` as a phased genotype whose second strand has no allele (:data:`MISSING`); others as they are."""
    if g.missing_strand is None or len(g.alleles) != 1:
        return g
    alleles = (MISSING, g.alleles[0]) if g.missing_strand == 0 else (g.alleles[0], MISSING)
    return replace(g, alleles=alleles, phased=True)


def _flip(g: SampleGenotype) -> tuple[str, ...]:
    return tuple(reversed(g.alleles))


def _hapb3_alleles(
    definition: GeneDefinition,
    data: GeneData,
    strands: Strands | None,
) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None, str, str]:
    """The sample's alleles at the intronic and exonic HapB3 positions (strand-ordered when given), and HapB3's."""
    hap = next(a for a in definition.alleles if a.name == HAPB3)
    cells = {locus.rsid: cell for locus, cell in zip(definition.positions, hap.alleles, strict=True) if cell}
    found: dict[str | None, tuple[str, ...]] = {}
    for i, (locus, gt) in enumerate(zip(data.positions, data.genotypes, strict=True)):
        if locus.rsid in (HAPB3_EXONIC_RSID, HAPB3_INTRONIC_RSID):
            found[locus.rsid] = strands[i] if strands is not None else gt.alleles
    return (
        found.get(HAPB3_INTRONIC_RSID),
        found.get(HAPB3_EXONIC_RSID),
        cells[HAPB3_INTRONIC_RSID],
        cells[HAPB3_EXONIC_RSID],
    )


def _hapb3(definition: GeneDefinition, data: GeneData, strands: Strands | None) -> HapB3Call:
    intron, exon, intron_allele, exon_allele = _hapb3_alleles(definition, data, strands)
    return call_hapb3(intron, exon, phased=strands is not None, intron_allele=intron_allele, exon_allele=exon_allele)


def call_lowest_function(
    definition: GeneDefinition, sample: VcfSample, *, keep_partial_strands: bool = False
) -> GeneCall:
    """DPYD or RYR1 for one sample: diplotypes when (effectively) phased, else the variants found.

    ``keep_partial_strands`` (research mode): a phased partial genotype (``1|.``) keeps the strand of its one allele,
    the other strand carrying no allele there, instead of being read as one allele of unknown strand."""
    gene = definition.gene
    is_dpyd = gene == "DPYD"
    full = prepare(definition, sample)
    if keep_partial_strands:
        full.genotypes = [_with_strands(g) for g in full.genotypes]
    base = GeneCall(
        gene=gene,
        source="vcf",
        missing_positions=tuple(p.position for p in full.missing),
        warnings=tuple(full.warnings),
    )
    if not full.positions:
        return replace(base, warnings=(f"no {gene} positions in the VCF",))
    hapb3_positions = [p.position for p in full.positions if p.rsid in (HAPB3_EXONIC_RSID, HAPB3_INTRONIC_RSID)]
    keep = [i for i, p in enumerate(full.positions) if not is_dpyd or p.position not in hapb3_positions]
    data = GeneData(gene, [full.positions[i] for i in keep], [full.genotypes[i] for i in keep], full.missing)
    orientations = _orientations(full)
    if orientations is None:
        hapb3 = _hapb3(definition, full, None) if is_dpyd else HapB3Call()
        return _unphased(definition, data, hapb3, base)
    ploidy = 1 if full.haploid else 2
    calls: dict[tuple[str, ...], tuple[str, ...]] = {}  # strand names -> lowest allele of each strand
    messages: list[str] = []
    for oriented in orientations:
        hapb3 = _hapb3(definition, full, oriented) if is_dpyd else HapB3Call()
        if hapb3.message and hapb3.message not in messages:
            messages.append(hapb3.message)
        kept = tuple(oriented[i] for i in keep)
        strands = [_strand_variants(definition, data, kept, s) for s in range(ploidy)]
        for i, name in enumerate((hapb3.per_strand or ())[:ploidy]):
            if name:
                strands[i] = [*strands[i], name]
        names = [_strand_name(s) for s in strands]
        order = sorted(range(ploidy), key=lambda i: name_key(names[i]))
        haps = tuple(names[i] for i in order)
        calls.setdefault(haps, tuple(_lowest(gene, strands[i]) for i in order))
    ordered = sorted(calls, key=lambda h: tuple(name_key(n) for n in h))
    # one lookup diplotype, as PharmCAT's inferFromDiplotypes (its alleles in name order here)
    lookups = sorted(set(calls.values()), key=_diplotype_rank(gene)) if ploidy == 2 else list(calls.values())
    return replace(
        base,
        diplotypes=tuple(Diplotype(h) for h in ordered),
        phased=full.phased,
        effectively_phased=True,
        lookup=(Diplotype(tuple(sorted(lookups[0], key=name_key))),),
        messages=tuple(messages),
    )


def _unphased(definition: GeneDefinition, data: GeneData, hapb3: HapB3Call, base: GeneCall) -> GeneCall:
    """Unphased: every variant found (twice when homozygous); Reference only when at most 2 things were found."""
    as_given: Strands = tuple(g.alleles for g in data.genotypes)
    strand1 = _strand_variants(definition, data, as_given, 0)
    strand2 = _strand_variants(definition, data, as_given, 1)
    found = sorted(set(strand1) | set(strand2), key=name_key)
    homozygous = {n for n in found if n in strand1 and n in strand2}
    has_reference = all(p.ref in g.alleles for p, g in zip(data.positions, data.genotypes, strict=True))
    matches = ([REFERENCE] if has_reference else []) + found
    if len(matches) + hapb3.count > 2:
        matches = found
    variants: list[str] = []
    for name in matches:
        variants += [name, name] if name in homozygous else [name]
    variants = sorted([*variants, *hapb3.found], key=name_key)
    lowest = sorted(variants, key=_haplotype_rank(definition.gene))[:2]
    lookup = (Diplotype(tuple(sorted(lowest, key=name_key))),) if len(lowest) == 2 else ()
    messages = (hapb3.message,) if hapb3.message else ()
    return replace(
        base, variants=tuple(variants), lookup=lookup, messages=messages, phased=False, effectively_phased=False
    )


__all__ = [
    "HAPB3",
    "HAPB3_INTRONIC",
    "MSG_EXONIC_ONLY",
    "MSG_MISMATCH",
    "HapB3Call",
    "call_hapb3",
    "call_lowest_function",
]
