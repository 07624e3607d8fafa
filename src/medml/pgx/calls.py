"""The seam between calling and interpreting: what the allele matcher and outside calls hand to the phenotyper.

A :class:`GeneCall` is one gene's result for one sample, from the VCF (the named-allele matcher) or from an
outside call (CYP2D6, HLA, MT-RNR1, ...). Names follow PharmCAT's display: ``*1``, ``c.1905+1G>A``, ``Reference``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CallSource = Literal["vcf", "outside"]


@dataclass(frozen=True)
class Diplotype:
    """Two haplotypes, or one for a haploid call (G6PD in males, MT-RNR1); ``score`` is the matcher's score."""

    haplotypes: tuple[str, ...]
    score: int | None = None

    @property
    def label(self) -> str:
        return "/".join(self.haplotypes)


@dataclass(frozen=True)
class GeneCall:
    """One gene of one sample: the best-scoring diplotypes (ties all kept), or why there is none."""

    gene: str
    source: CallSource
    #: best-scoring diplotypes in the matcher's order; empty when the gene is not called
    diplotypes: tuple[Diplotype, ...] = ()
    phased: bool = False
    #: phased, or unphased with at most two strand permutations (all homozygous, or one heterozygous position)
    effectively_phased: bool = False
    #: an outside call may give a phenotype, an activity score or an allele status instead of a diplotype
    phenotype: str | None = None
    activity_score: str | None = None
    allele_status: tuple[str, ...] = ()
    #: lowest-function genes (DPYD, RYR1), called per variant: the variants found (twice when homozygous)
    variants: tuple[str, ...] = ()
    #: the haplotypes used to look up recommendations (PharmCAT's "recommended diplotype"), when they differ
    #: from ``diplotypes`` (lowest-function genes); None otherwise
    lookup: tuple[Diplotype, ...] | None = None
    missing_positions: tuple[int, ...] = ()
    #: human-readable warnings (undocumented allele treated as reference, missing positions, ...)
    warnings: tuple[str, ...] = ()
    #: PharmCAT message ids raised for this gene (e.g. ``pcat-dpyd-hapB3-exonic-only``)
    messages: tuple[str, ...] = ()

    @property
    def called(self) -> bool:
        return (
            bool(self.diplotypes)
            or bool(self.variants)
            or self.phenotype is not None
            or self.activity_score is not None
            or bool(self.allele_status)
        )

    @property
    def lookup_diplotypes(self) -> tuple[Diplotype, ...]:
        return self.lookup if self.lookup is not None else self.diplotypes
