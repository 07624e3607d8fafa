"""How PharmCAT's report prints a gene call (its "print calls"), and whether the gene is reportable.

The same rules serve VCF calls and outside calls:

- a diplotype prints its two alleles in PharmCAT's name order (``*1/*4``, ``*1x2/*4``); one allele prints alone
  (MT-RNR1 ``m.1555A>G``, HLA-B ``*15:02``); several outside diplotypes print in the order the reader gives them;
- CACNA1S, CFTR, DPYD and RYR1 name a lone variant against the reference ``X (heterozygous)`` and two reference
  alleles ``Reference/Reference``, whatever the reference allele is called (CFTR's is "ivacaftor non-responsive
  CFTR sequence"); an unphased DPYD/RYR1 variant list prints sorted, a variant found twice as ``X (homozygous)``;
- CYP2D6 copy numbers print as reported (``*1/*1x7``), though they are looked up as ``*1/*1x≥3``;
- an outside call without a diplotype prints its phenotype, with the activity score in brackets when there is one
  (``Normal Metabolizer (1.25)``), or its HLA allele status (``*57:01 positive``);
- a VCF gene that is not called prints ``Not called``, or SLCO1B1's rs4149056 genotype when that fallback is used.
"""

from __future__ import annotations

from collections import Counter
from functools import cache
from pathlib import Path

from medml.errors import MedmlError
from medml.pgx.calls import GeneCall
from medml.pgx.definitions import load_definition_file
from medml.pgx.naming import name_key, star_allele
from medml.pgx.phenotype import ACTIVITY_GENES, NA, pgx_data_root, phenotype

__all__ = ["NOT_CALLED", "UNKNOWN", "diplotype_labels", "print_calls", "reportable"]

NOT_CALLED = "Not called"
UNKNOWN = "Unknown/Unknown"
#: genes whose report names a lone variant against the reference as "X (heterozygous)"
_VARIANT_DISPLAY_GENES = frozenset({"CACNA1S", "CFTR", "DPYD", "RYR1"})
_REFERENCE = "Reference"


@cache
def _reference_allele(gene: str, root: Path) -> str | None:
    """The reference allele's name in the gene's definition file (None when there is none)."""
    path = root / "pharmcat-3.1.1" / "definition" / "alleles" / f"{gene}_translation.json"
    try:
        return load_definition_file(path, with_exemptions=False).reference.name if path.is_file() else None
    except MedmlError:
        return None


def _is_reference(gene: str, name: str, data_root: Path | None) -> bool:
    return name == _REFERENCE or name == _reference_allele(gene, pgx_data_root(data_root))


def _diplotype_label(gene: str, haplotypes: tuple[str, ...], data_root: Path | None) -> str:
    haps = sorted((star_allele(h) for h in haplotypes), key=name_key)
    if gene in _VARIANT_DISPLAY_GENES and len(haps) == 2:
        refs = [_is_reference(gene, h, data_root) for h in haps]
        if all(refs):
            return f"{_REFERENCE}/{_REFERENCE}"
        if any(refs):
            return f"{haps[refs.index(False)]} (heterozygous)"
    return "/".join(haps)


def _result_label(call: GeneCall, data_root: Path | None) -> list[str]:
    """An outside call that gives no diplotype: its allele status, or its phenotype (and activity score)."""
    if call.allele_status:
        return ["/".join(call.allele_status)]
    labels = []
    for r in phenotype(call, data_root).results:
        pheno = r.phenotype or (NA if call.gene in ACTIVITY_GENES else None)
        score = call.activity_score
        labels.append(f"{pheno} ({score})" if pheno and score else (pheno or score or NA))
    return labels


def diplotype_labels(call: GeneCall | None, data_root: Path | None = None) -> list[str]:
    """The report's label of each called diplotype (PharmCAT's source diplotypes); ``Unknown/Unknown`` if none."""
    if call is None or not call.called:
        return [UNKNOWN]
    if call.variants:
        counts = Counter(call.variants)
        return [f"{v} (homozygous)" if counts[v] > 1 else v for v in sorted(counts, key=name_key)]
    if not call.diplotypes:
        return _result_label(call, data_root)
    # in the call's order: the matcher's, or for outside calls the reporter's (outside.read_outside_calls)
    return [_diplotype_label(call.gene, d.haplotypes, data_root) for d in call.diplotypes]


def _rs4149056_genotype(call: GeneCall) -> str:
    """PharmCAT prints SLCO1B1's rs4149056 fallback as the genotype: ``rs4149056 C/rs4149056 T`` (``*5`` = C)."""
    bases = sorted("C" if h == "*5" else "T" for h in call.lookup_diplotypes[0].haplotypes)
    return "/".join(f"rs4149056 {b}" for b in bases)


def print_calls(call: GeneCall | None, data_root: Path | None = None) -> list[str]:
    """What the report prints for a gene: its diplotype labels, ``Not called``, or SLCO1B1's fallback genotype."""
    if call is not None and call.called:
        return diplotype_labels(call, data_root)
    if call is not None and call.lookup:
        return [_rs4149056_genotype(call)]
    return [NOT_CALLED]


def reportable(call: GeneCall | None) -> bool:
    """Whether recommendations can be looked up for the gene: it is called (from the VCF, or by an outside
    diplotype, phenotype, activity score or allele status), or the matcher's fallback gave a lookup diplotype."""
    return call is not None and (call.called or bool(call.lookup))
