"""Small single-sample VCFs for PharmCAT-style tests, written the way PharmCAT's TestVcfBuilder writes them.

Every definition position of each gene named is written (``0/0``, or ``0|0`` when phased, unless edited); an edit
gives the two CPIC alleles of one position (by rsid or ``chrN:pos``), translated to VCF allele indexes with the
definition's ``cpicToVcfAlleleMap`` (``.`` stays a missing allele); a missing position is left out of the file; an
as-is edit writes its genotype, REF and ALTs verbatim (an undocumented ALT, say). The gene's extra positions
(exemptions.json, e.g. CYP2C9 rs12777823) follow as ``POI`` lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from medml.pgx.definitions import GeneDefinition, VariantLocus, load_definitions


@dataclass
class _Edit:
    cpic: tuple[str, ...] = ()
    phased: bool | None = None
    phase_set: int | None = None
    as_is: tuple[str, str, tuple[str, ...]] | None = None  # gt, ref, alts
    missing: bool = False


@dataclass
class VcfBuilder:
    """``VcfBuilder().reference("RYR1").variation("RYR1", "rs193922746", "A", "G").write(path)``."""

    is_phased: bool = False
    definitions: dict[str, GeneDefinition] = field(default_factory=dict)
    edits: dict[str, dict[str, _Edit]] = field(default_factory=dict)

    def phased(self) -> VcfBuilder:
        self.is_phased = True
        return self

    def reference(self, gene: str, definition: GeneDefinition | None = None) -> VcfBuilder:
        self.definitions[gene] = definition or load_definitions((gene,))[gene]
        self.edits.setdefault(gene, {})
        return self

    def variation(
        self, gene: str, where: str, *cpic: str, phased: bool | None = None, phase_set: int | None = None
    ) -> VcfBuilder:
        self.reference(gene, self.definitions.get(gene))
        self.edits[gene][where] = _Edit(cpic=cpic, phased=phased, phase_set=phase_set)
        return self

    def variation_as_is(self, gene: str, where: str, gt: str, ref: str, *alts: str) -> VcfBuilder:
        self.reference(gene, self.definitions.get(gene))
        self.edits[gene][where] = _Edit(as_is=(gt, ref, alts))
        return self

    def missing(self, gene: str, *where: str) -> VcfBuilder:
        self.reference(gene, self.definitions.get(gene))
        for w in where:
            self.edits[gene][w] = _Edit(missing=True)
        return self

    def text(self, name: str = "test") -> str:
        contigs = sorted({d.chromosome for d in self.definitions.values()})
        lines = [
            "##fileformat=VCFv4.2",
            f"##source=medml test ({name})",
            *(f'##contig=<ID={c},assembly=GRCh38.p14,species="Homo sapiens">' for c in contigs),
            '##FILTER=<ID=PASS,Description="All filters passed">',
            '##INFO=<ID=PX,Number=.,Type=String,Description="Gene">',
            '##INFO=<ID=POI,Number=0,Type=Flag,Description="Position of Interest, not in an allele definition">',
            '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
            '##FORMAT=<ID=PS,Number=1,Type=Integer,Description="Phase set">',
            "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tSAMPLE",
        ]
        for gene, definition in self.definitions.items():
            edits = dict(self.edits[gene])
            for locus in definition.positions:
                lines += self._line(locus, edits, f"PX={gene}")
            for locus in definition.exemption.extra_positions:
                lines += self._line(locus, edits, "POI")
            if edits:
                raise ValueError(f"{gene}: no definition position {sorted(edits)}")
        return "\n".join(lines) + "\n"

    def write(self, path: Path, name: str = "test") -> Path:
        path.write_text(self.text(name))
        return path

    def _line(self, locus: VariantLocus, edits: dict[str, _Edit], info: str) -> list[str]:
        edit = edits.pop(locus.rsid or "", None) or edits.pop(f"{locus.chromosome}:{locus.position}", None)
        rsid = locus.rsid or "."
        alts = list(locus.alts)
        sep = "|" if self.is_phased else "/"
        fmt, extra = "GT", ""
        if edit is None:
            gt, ref = f"0{sep}0", locus.ref
        elif edit.missing:
            return []
        elif edit.as_is is not None:
            gt, ref, given = edit.as_is
            alts = list(given)
        else:
            ref = locus.ref
            if edit.phased is not None:
                sep = "|" if edit.phased else "/"
            indexes = []
            for cpic in edit.cpic:
                vcf = "." if cpic == "." else locus.cpic_to_vcf[cpic]
                indexes.append("." if vcf == "." else "0" if vcf == ref else str(alts.index(vcf) + 1))
            gt = sep.join(indexes)
            if edit.phase_set is not None:
                fmt, extra = "GT:PS", f":{edit.phase_set}"
        alt = ",".join(alts) or "."
        return [f"{locus.chromosome}\t{locus.position}\t{rsid}\t{ref}\t{alt}\t.\tPASS\t{info}\t{fmt}\t{gt}{extra}"]
