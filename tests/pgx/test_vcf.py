"""VCF reading: formats, chromosome names, multi-allelic records, phase sets, builds, malformed input."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from medml.errors import InputFileError
from medml.pgx.vcf import SampleGenotype, read_vcf, read_vcf_sample, trim_alleles

HEADER = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\n"
POS = frozenset({("chr10", 94781859), ("chr2", 233760233)})


def _write(tmp_path: Path, body: str, header: str = HEADER, name: str = "x.vcf") -> Path:
    path = tmp_path / name
    path.write_text(header + body)
    return path


def test_reads_plain_and_gzipped_and_chr_naming(tmp_path: Path) -> None:
    body = "10\t94781859\trs12769205\tA\tG\t.\tPASS\t.\tGT\t0/1\n"
    plain = read_vcf_sample(_write(tmp_path, body), positions=POS)
    gz = tmp_path / "x.vcf.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write(HEADER + body)
    assert plain.genotypes == read_vcf_sample(gz, positions=POS).genotypes
    assert plain.genotypes[("chr10", 94781859)] == SampleGenotype(("A", "G"))


def test_phase_and_phase_sets_and_missing(tmp_path: Path) -> None:
    body = "chr10\t94781859\t.\tA\tG\t.\tPASS\t.\tGT:PS\t1|0:77\nchr2\t233760233\t.\tCAT\tC\t.\tPASS\t.\tGT\t0/.\n"
    sample = read_vcf_sample(_write(tmp_path, body), positions=POS)
    assert sample.genotypes[("chr10", 94781859)] == SampleGenotype(("G", "A"), True, "77")
    assert ("chr2", 233760233) not in sample.genotypes  # 0/. is missing, never reference


def test_split_multiallelic_records_are_merged(tmp_path: Path) -> None:
    body = "chr2\t233760233\t.\tCAT\tC\t.\tPASS\t.\tGT\t0/1\nchr2\t233760233\t.\tCAT\tCATAT\t.\tPASS\t.\tGT\t0/1\n"
    gt = read_vcf_sample(_write(tmp_path, body), positions=POS).genotypes[("chr2", 233760233)]
    assert gt.alleles == ("C", "CATAT")


def test_parsimonious_trimming() -> None:
    assert trim_alleles(100, ["CATAT", "CAT"]) == (100, ["CAT", "C"])
    assert trim_alleles(100, ["A", "G"]) == (100, ["A", "G"])


def test_multisample(tmp_path: Path) -> None:
    header = HEADER.replace("\tS1\n", "\tS1\tS2\n")
    body = "chr10\t94781859\t.\tA\tG\t.\tPASS\t.\tGT\t0/1\t1/1\n"
    samples = read_vcf(_write(tmp_path, body, header), positions=POS)
    assert [s.sample_id for s in samples] == ["S1", "S2"]
    assert samples[1].genotypes[("chr10", 94781859)].alleles == ("G", "G")


def test_grch37_is_refused(tmp_path: Path) -> None:
    header = "##fileformat=VCFv4.2\n##contig=<ID=1,length=249250621>\n" + HEADER.split("\n", 1)[1]
    with pytest.raises(InputFileError, match="GRCh37"):
        read_vcf(_write(tmp_path, "", header), positions=POS)


def test_truncated_line_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "chr10\t94781859\t.\tA\tG\t.\n")
    with pytest.raises(InputFileError, match=r"x\.vcf line 3: 6 columns"):
        read_vcf(path, positions=POS)


def test_missing_gt_field(tmp_path: Path) -> None:
    path = _write(tmp_path, "chr10\t94781859\t.\tA\tG\t.\tPASS\t.\tDP\t12\n")
    with pytest.raises(InputFileError, match="line 3: no GT"):
        read_vcf(path, positions=POS)
