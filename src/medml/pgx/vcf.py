"""Read the genotypes PharmCAT needs from a VCF: GRCh38 only, plain or bgzipped, one or many samples.

Only records at allele-defining positions are parsed (the rest of each line is checked for its column count
and skipped), so a 1,000-sample VCF costs little more than its PharmCAT positions. Records are normalised the
way PharmCAT's preprocessor leaves them: ``chr``-prefixed chromosome names, parsimonious alleles (common
suffix/prefix trimmed down to the anchor base), and split multi-allelic records merged back. A position absent
from the file is a no-call (never reference); ``0/.`` is missing; only GT (and PS, for phase sets) are read.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import IO

from medml.errors import InputFileError
from medml.pgx.definitions import positions_vcf

#: chromosome 1's length in each build, as written in ``##contig`` headers
_CHR1_LENGTHS = {249250621: "GRCh37", 247249719: "NCBI36", 248956422: "GRCh38"}
_OTHER_BUILD = re.compile(r"GRCh37|hg19|hg18|b37|hs37|NCBI36|b36", re.IGNORECASE)
_CONTIG_ID = re.compile(r"[<,]ID=([^,>]+)")
_CONTIG_LENGTH = re.compile(r"[<,]length=(\d+)")

Key = tuple[str, int]
#: the uncalled allele of a partial genotype (``1/.``), as research mode keeps it
MISSING = "."


@dataclass(frozen=True)
class SampleGenotype:
    """A sample's call at one position: 2 VCF alleles (1 when haploid), phase flag and phase set."""

    alleles: tuple[str, ...]
    phased: bool = False
    phase_set: str | None = None
    #: one allele called and the other missing (``1/.``): kept, but it blocks the gene's call
    partial: bool = False
    #: a phased partial genotype (``1|.``, ``.|1``): which strand (0 or 1) has no allele; None otherwise
    missing_strand: int | None = None

    @property
    def homozygous(self) -> bool:
        return len(set(self.alleles)) == 1

    def with_missing_allele(self) -> SampleGenotype:
        """A partial genotype with its uncalled allele written as :data:`MISSING`, as PharmCAT's VcfReader keeps it:
        ``1|.`` keeps its strands (phased), ``1/.`` is unphased. Any other genotype is returned as it is."""
        if not self.partial or len(self.alleles) != 1:
            return self
        if self.missing_strand is None:
            return replace(self, alleles=(self.alleles[0], MISSING))
        alleles = (MISSING, self.alleles[0]) if self.missing_strand == 0 else (self.alleles[0], MISSING)
        return replace(self, alleles=alleles, phased=True)


@dataclass(frozen=True)
class VcfSample:
    """One sample's genotypes at PharmCAT positions, keyed by (``chrN``, position)."""

    sample_id: str
    source: str
    genotypes: Mapping[Key, SampleGenotype]
    warnings: tuple[str, ...] = field(default=())


def normalize_chromosome(name: str) -> str:
    """``1``/``chr1``/``CHR1`` -> ``chr1``; ``MT`` -> ``chrM``."""
    bare = name[3:] if name[:3].lower() == "chr" else name
    bare = bare.upper() if bare.lower() in ("x", "y", "m", "mt") else bare
    return "chrM" if bare == "MT" else f"chr{bare}"


def trim_alleles(pos: int, alleles: list[str]) -> tuple[int, list[str]]:
    """Parsimonious representation: drop the common suffix, then the common prefix, keeping one anchor base."""
    if all(len(a) == 1 for a in alleles) or any(a.startswith("<") or a == "*" for a in alleles):
        return pos, alleles
    while all(len(a) > 1 for a in alleles) and len({a[-1] for a in alleles}) == 1:
        alleles = [a[:-1] for a in alleles]
    while all(len(a) > 1 for a in alleles) and len({a[0] for a in alleles}) == 1:
        alleles = [a[1:] for a in alleles]
        pos += 1
    return pos, alleles


def pharmcat_positions(path: Path | None = None) -> frozenset[Key]:
    """Every position PharmCAT reads (pharmcat_positions.vcf), as (``chrN``, position)."""
    return _pharmcat_positions(Path(path) if path is not None else positions_vcf())


@cache
def _pharmcat_positions(path: Path) -> frozenset[Key]:
    keys = set()
    with _open(path) as fh:
        for line in fh:
            if not line.startswith("#"):
                chrom, pos, _ = line.split("\t", 2)
                keys.add((normalize_chromosome(chrom), int(pos)))
    return frozenset(keys)


def _open(path: Path) -> IO[str]:
    try:
        with path.open("rb") as probe:
            magic = probe.read(2)
    except FileNotFoundError as err:
        raise InputFileError(f"VCF file {path} not found", "check the path") from err
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8", newline="\n")
    return path.open(encoding="utf-8", newline="\n")


def _check_build(path: Path, lineno: int, line: str) -> None:
    if line.startswith("##reference=") or line.startswith("##assembly="):
        value = line.split("=", 1)[1]
        if _OTHER_BUILD.search(value) and "38" not in value:
            raise InputFileError(
                f"{path} line {lineno}: the VCF was called against {value.strip()}, not GRCh38",
                "lift the VCF over to GRCh38 (PharmCAT positions are GRCh38 only)",
            )
    elif line.startswith("##contig="):
        cid, length = _CONTIG_ID.search(line), _CONTIG_LENGTH.search(line)
        if cid and length and normalize_chromosome(cid.group(1)) == "chr1":
            build = _CHR1_LENGTHS.get(int(length.group(1)))
            if build and build != "GRCh38":
                raise InputFileError(
                    f"{path} line {lineno}: contig chr1 has length {length.group(1)}, i.e. {build}",
                    "lift the VCF over to GRCh38 (PharmCAT positions are GRCh38 only)",
                )
        if re.search(r"assembly=(GRCh37|hg19|b37)", line):
            raise InputFileError(
                f"{path} line {lineno}: contig header names a GRCh37 assembly",
                "lift the VCF over to GRCh38 (PharmCAT positions are GRCh38 only)",
            )


def _parse_gt(gt: str, alleles: list[str], where: str) -> SampleGenotype | None:
    phased = "|" in gt
    parts = re.split(r"[/|]", gt)
    called = [p for p in parts if p != "."]
    if not called or (len(called) < len(parts) and all(p == "0" for p in called)):
        return None  # fully missing, or 0/. (treated as missing)
    try:
        seqs = tuple(alleles[int(p)] for p in called[:2])
    except (ValueError, IndexError) as err:
        raise InputFileError(
            f"{where}: genotype {gt!r} does not index the record's alleles",
            "fix the GT field (allele indexes 0..number of ALT alleles)",
        ) from err
    if len(called) < len(parts):
        missing = parts.index(".") if phased and len(parts) == 2 else None
        return SampleGenotype(alleles=seqs, phased=False, partial=True, missing_strand=missing)
    return SampleGenotype(alleles=seqs, phased=phased and len(seqs) == 2)


def _merge(old: SampleGenotype, new: SampleGenotype, ref: str) -> SampleGenotype:
    """Merge a split multi-allelic record's genotype into the first record's (``0/1`` + ``0/1`` -> ``1/2``)."""
    if all(a == ref for a in new.alleles):
        return old
    if all(a == ref for a in old.alleles):
        return new
    alts = [a for a in old.alleles if a != ref] + [a for a in new.alleles if a != ref]
    return SampleGenotype(alleles=tuple(alts[:2]), phased=False)


def read_vcf(
    path: str | Path, *, samples: Iterable[str] | None = None, positions: frozenset[Key] | None = None
) -> list[VcfSample]:
    """Read the genotypes at ``positions`` (default: PharmCAT's) for ``samples`` (default: all) of a VCF."""
    path = Path(path)
    keys = positions if positions is not None else pharmcat_positions()
    try:
        with _open(path) as fh:
            return _read(path, fh, keys, samples)
    except (EOFError, gzip.BadGzipFile, UnicodeDecodeError) as err:
        raise InputFileError(
            f"{path} is truncated or not a (b)gzipped/plain-text VCF ({err})",
            "re-export the VCF; check the download or copy completed",
        ) from err


def read_vcf_sample(
    path: str | Path, sample: str | None = None, *, positions: frozenset[Key] | None = None
) -> VcfSample:
    """One sample of a VCF: the named one, or the only/first one."""
    found = read_vcf(path, samples=None if sample is None else [sample], positions=positions)
    if not found:
        raise InputFileError(f"{path} has no sample columns", "a VCF with genotypes (FORMAT + samples) is needed")
    return found[0]


def _read(
    path: Path, lines: Iterator[str] | IO[str], keys: frozenset[Key], wanted: Iterable[str] | None
) -> list[VcfSample]:
    header: list[str] | None = None
    columns: list[int] = []
    ncols = 0
    calls: list[dict[Key, SampleGenotype]] = []
    warnings: list[str] = []
    chrom_cache: dict[str, str] = {}
    lineno = 0
    for lineno, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if header is None:
            if line.startswith("##"):
                _check_build(path, lineno, line)
                continue
            if not line.startswith("#CHROM"):
                raise InputFileError(
                    f"{path} line {lineno}: expected the #CHROM header line, found {line[:40]!r}",
                    "give a VCF file (header lines, then #CHROM, then records)",
                )
            header = line.split("\t")
            if len(header) < 10:
                raise InputFileError(
                    f"{path} line {lineno}: no sample columns in the #CHROM line",
                    "a VCF with genotypes (FORMAT + at least one sample) is needed",
                )
            names = header[9:]
            if wanted is None:
                columns = list(range(9, len(header)))
            else:
                missing = [s for s in wanted if s not in names]
                if missing:
                    raise InputFileError(
                        f"{path}: sample(s) {', '.join(missing)} not in the VCF",
                        f"choose among {', '.join(names[:10])}",
                    )
                columns = [9 + names.index(s) for s in wanted]
            ncols = len(header)
            calls = [{} for _ in columns]
            continue
        if not line or line.startswith("#"):
            continue
        if line.count("\t") != ncols - 1:
            raise InputFileError(
                f"{path} line {lineno}: {line.count(chr(9)) + 1} columns where the header has "
                f"{ncols} (truncated or malformed line)",
                "repair or re-export the VCF",
            )
        chrom_raw, pos_raw, _ = line.split("\t", 2)
        chrom = chrom_cache.get(chrom_raw)
        if chrom is None:
            chrom = chrom_cache.setdefault(chrom_raw, normalize_chromosome(chrom_raw))
        try:
            pos = int(pos_raw)
        except ValueError as err:
            raise InputFileError(
                f"{path} line {lineno}: POS {pos_raw!r} is not a number", "repair or re-export the VCF"
            ) from err
        if (chrom, pos) not in keys and not _maybe_shifted(chrom, pos, keys):
            continue
        fields = line.split("\t")
        ref, alts = fields[3].upper(), [a.upper() for a in fields[4].split(",") if a != "."]
        alleles = [ref, *alts]
        key = (chrom, pos)
        if key not in keys:  # only re-trim records that do not already sit on a defined position
            new_pos, alleles = trim_alleles(pos, alleles)
            key = (chrom, new_pos)
        if key not in keys:
            continue
        fmt = fields[8].split(":")
        if "GT" not in fmt:
            raise InputFileError(
                f"{path} line {lineno}: no GT in FORMAT {fields[8]!r}",
                "PharmCAT needs genotypes (GT) at every position it reads",
            )
        gt_idx = fmt.index("GT")
        ps_idx = fmt.index("PS") if "PS" in fmt else -1
        for out, col in zip(calls, columns, strict=True):
            sub = fields[col].split(":")
            gt = _parse_gt(sub[gt_idx] if gt_idx < len(sub) else ".", alleles, f"{path} line {lineno}")
            if gt is None:
                continue
            if ps_idx >= 0 and gt.phased and ps_idx < len(sub) and sub[ps_idx] not in (".", ""):
                gt = SampleGenotype(gt.alleles, True, sub[ps_idx])
            if key in out:
                out[key] = _merge(out[key], gt, alleles[0])
            else:
                out[key] = gt
    if header is None:
        raise InputFileError(f"{path} has no #CHROM header line (empty or not a VCF)", "give a VCF file")
    return [
        VcfSample(sample_id=header[col], source=str(path), genotypes=out, warnings=tuple(warnings))
        for out, col in zip(calls, columns, strict=True)
    ]


def _maybe_shifted(chrom: str, pos: int, keys: frozenset[Key]) -> bool:
    """A non-parsimonious indel can start a few bases before the defined position; let those through."""
    return (chrom, pos + 1) in keys or (chrom, pos + 2) in keys
