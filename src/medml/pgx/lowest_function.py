"""DPYD's and RYR1's lowest-function calling (PharmCAT's NamedAlleleMatcher.callDpyd and DpydHapB3Matcher).

DPYD is called variant by variant. Phased or effectively phased data gives one diplotype whose strands list the
variants on them (``[c.498G>A + c.2582A>G]/c.2846A>T``, ``Reference`` when none); unphased data gives the list of
variants found, twice when homozygous. Recommendations use the lowest-activity variant of each strand (phased)
or the two lowest overall (unphased). HapB3 is decided by the intronic rs75017182; when that is missing the
exonic rs56038477 is used with ``pcat-dpyd-hapB3-exonic-only``, and a disagreement between the two raises
``pcat-dpyd-hapB3-intronic-mismatch-exonic``.
"""

from __future__ import annotations

from dataclasses import replace

from medml.pgx.calls import Diplotype, GeneCall
from medml.pgx.definitions import GeneDefinition, load_activity_values
from medml.pgx.matcher import GeneData, prepare
from medml.pgx.naming import compare_names, name_key
from medml.pgx.vcf import SampleGenotype, VcfSample

HAPB3 = "c.1129-5923C>G, c.1236G>A (HapB3)"
HAPB3_EXONIC = "rs56038477"
HAPB3_INTRONIC = "rs75017182"
MSG_EXONIC_ONLY = "pcat-dpyd-hapB3-exonic-only"
MSG_MISMATCH = "pcat-dpyd-hapB3-intronic-mismatch-exonic"
REFERENCE = "Reference"


def _strand_calls(allele: str, gt: SampleGenotype) -> list[bool]:
    return [a == allele for a in gt.alleles]


def call_hapb3(definition: GeneDefinition, sample: VcfSample, effectively_phased: bool,
               ) -> tuple[list[bool] | None, str | None]:
    """HapB3 per strand (None when both positions are missing) and the message the call raises, if any."""
    hap = next(a for a in definition.alleles if a.name == HAPB3)
    found: dict[str, tuple[str, SampleGenotype | None]] = {}
    for locus, cell in zip(definition.positions, hap.alleles, strict=True):
        if locus.rsid in (HAPB3_EXONIC, HAPB3_INTRONIC) and cell is not None:
            found[locus.rsid] = (cell, sample.genotypes.get((locus.chromosome, locus.position)))
    intron_allele, intron = found[HAPB3_INTRONIC]
    exon_allele, exon = found[HAPB3_EXONIC]
    if intron is None and exon is None:
        return None, None
    if intron is None:
        assert exon is not None
        return _strand_calls(exon_allele, exon), MSG_EXONIC_ONLY
    call = _strand_calls(intron_allele, intron)
    message = None
    if exon is not None and len(call) == 2:
        exonic = _strand_calls(exon_allele, exon)
        if not any(call):
            if any(exonic):
                message = MSG_MISMATCH
        elif len(exonic) != 2:
            message = MSG_MISMATCH
        elif effectively_phased:
            if call != exonic:
                message = MSG_MISMATCH
        elif sum(call) != sum(exonic):
            message = MSG_MISMATCH
    return call, message


def _variants_on(definition: GeneDefinition, data: GeneData, strand: int) -> list[str]:
    """Named (single-position) DPYD alleles carried on one strand, HapB3 excluded."""
    index = {p.position: i for i, p in enumerate(definition.positions)}
    names = []
    for locus, gt in zip(data.positions, data.genotypes, strict=True):
        allele = gt.alleles[min(strand, len(gt.alleles) - 1)]
        if allele == locus.ref:
            continue
        col = index[locus.position]
        names += [na.name for na in definition.alleles[1:] if na.name != HAPB3 and na.alleles[col] == allele]
    return names


def _strand_name(names: list[str]) -> str:
    if not names:
        return REFERENCE
    if len(names) == 1:
        return names[0]
    return "[" + " + ".join(sorted(names, key=name_key)) + "]"


def _lowest(gene: str, names: list[str]) -> str:
    activity = load_activity_values(gene)
    return min(names, key=lambda n: (activity.get(n, 1.0), name_key(n))) if names else REFERENCE


def call_lowest_function(definition: GeneDefinition, sample: VcfSample) -> GeneCall:
    """DPYD or RYR1 for one sample: a diplotype when (effectively) phased, else the variants found."""
    gene = definition.gene
    is_dpyd = gene == "DPYD"
    hapb3_positions = [p.position for p in definition.positions if p.rsid in (HAPB3_EXONIC, HAPB3_INTRONIC)]
    full = prepare(definition, sample)
    base = GeneCall(gene=gene, source="vcf", missing_positions=tuple(p.position for p in full.missing),
                    warnings=tuple(full.warnings))
    if not full.positions:
        return replace(base, warnings=(f"no {gene} positions in the VCF",))
    effectively_phased = len(full.permutations()) <= 2
    hapb3, message = call_hapb3(definition, sample, effectively_phased) if is_dpyd else (None, None)
    data = prepare(definition, sample, skip_positions=hapb3_positions)
    messages = (message,) if message else ()
    if not data.positions:
        strands = [[HAPB3] if hapb3 and hapb3[i] else [] for i in range(len(full.genotypes[0].alleles))]
    elif effectively_phased:
        ploidy = 1 if full.haploid else 2
        strands = [_variants_on(definition, data, s) for s in range(ploidy)]
        if hapb3:
            strands = [[*s, HAPB3] if i < len(hapb3) and hapb3[i] else s for i, s in enumerate(strands)]
    else:
        return _unphased(definition, data, hapb3, base, messages)
    names = [_strand_name(s) for s in strands]
    order = sorted(range(len(names)), key=lambda i: name_key(names[i]))
    haps = tuple(names[i] for i in order)
    lookup = tuple(sorted((_lowest(gene, strands[i]) for i in order), key=name_key))
    return replace(base, diplotypes=(Diplotype(haps),), phased=full.phased, effectively_phased=True,
                   lookup=(Diplotype(lookup),), messages=messages)


def _unphased(definition: GeneDefinition, data: GeneData, hapb3: list[bool] | None, base: GeneCall,
              messages: tuple[str, ...]) -> GeneCall:
    """Unphased: every variant found (twice when homozygous); Reference only when at most 2 things were found."""
    strand1, strand2 = _variants_on(definition, data, 0), _variants_on(definition, data, 1)
    found = sorted(set(strand1) | set(strand2), key=name_key)
    homozygous = {n for n in found if n in strand1 and n in strand2}
    has_reference = all(p.ref in g.alleles for p, g in zip(data.positions, data.genotypes, strict=True))
    n_hapb3 = sum(hapb3) if hapb3 else 0
    matches = ([REFERENCE] if has_reference else []) + found
    if len(matches) + n_hapb3 > 2:
        matches = found
    variants: list[str] = []
    for name in matches:
        variants += [name, name] if name in homozygous else [name]
    if hapb3 is not None and len(hapb3) == 2 and n_hapb3:
        variants += [HAPB3] * n_hapb3
    activity = load_activity_values(definition.gene)
    lowest = sorted(variants, key=lambda n: (activity.get(n, 1.0), name_key(n)))[:2]
    lookup = (Diplotype(tuple(sorted(lowest, key=name_key))),) if len(lowest) == 2 else ()
    return replace(base, variants=tuple(variants), lookup=lookup, messages=messages, phased=False,
                   effectively_phased=False)


__all__ = ["HAPB3", "MSG_EXONIC_ONLY", "MSG_MISMATCH", "call_hapb3", "call_lowest_function", "compare_names"]
