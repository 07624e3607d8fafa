"""Genotype-calling speed: single-sample VCFs of all genes, and one 1,000-sample VCF built from the test VCFs.

Run: ``.venv/bin/python benchmarks/bench_pgx.py``. Prints a Markdown table with the machine. Single core
(one process, no threads); reading the VCF is included. Goal: < 50 ms per sample.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

from medml.config import get_settings
from medml.pgx.definitions import load_definitions
from medml.pgx.matcher import call_genes
from medml.pgx.vcf import read_vcf, read_vcf_sample

TESTS = get_settings().data_root / "pgx" / "pharmcat-tests"
N_SAMPLES = 1000


def _single_sample_vcfs() -> list[Path]:
    return [*sorted((TESTS / "vcf" / "PipelineTest").glob("*.vcf")), TESTS / "examples" / "pharmcat.example.vcf"]


def bench_single(paths: list[Path]) -> tuple[int, float]:
    """Calls of all default genes per single-sample VCF, reading included: (files, seconds)."""
    defs = load_definitions()
    call_genes(read_vcf_sample(paths[0]), definitions=defs)  # warm the definition caches
    start = time.perf_counter()
    for p in paths:
        call_genes(read_vcf_sample(p), definitions=defs)
    return len(paths), time.perf_counter() - start


def build_multisample(paths: list[Path], out: Path, n: int) -> None:
    """A VCF of ``n`` samples over the example VCF's records, each sample's genotypes taken from a test VCF."""
    base = [ln for ln in (TESTS / "examples" / "pharmcat.example.vcf").read_text().splitlines()]
    header = [ln for ln in base if ln.startswith("##")]
    records = [ln.split("\t") for ln in base if ln and not ln.startswith("#")]
    donors = [read_vcf_sample(p).genotypes for p in paths]
    with out.open("w") as fh:
        fh.write("\n".join(header) + "\n")
        fh.write(
            "\t".join(
                ["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT"] + [f"S{i}" for i in range(n)]
            )
            + "\n"
        )
        for rec in records:
            key = (rec[0] if rec[0].startswith("chr") else f"chr{rec[0]}", int(rec[1]))
            alleles = [rec[3], *rec[4].split(",")]
            cols = []
            for i in range(n):
                gt = donors[i % len(donors)].get(key)
                if gt is None or any(a not in alleles for a in gt.alleles) or len(gt.alleles) != 2:
                    cols.append(rec[9].split(":")[0])
                else:
                    sep = "|" if gt.phased else "/"
                    cols.append(sep.join(str(alleles.index(a)) for a in gt.alleles))
            fh.write("\t".join([*rec[:8], "GT", *cols]) + "\n")


def bench_multi(path: Path) -> tuple[float, float, float]:
    """(read seconds, call seconds, peak RSS MiB) for every sample of a multi-sample VCF."""
    defs = load_definitions()
    start = time.perf_counter()
    samples = read_vcf(path)
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    for s in samples:
        call_genes(s, definitions=defs)
    call_s = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return read_s, call_s, peak


def main() -> None:
    paths = _single_sample_vcfs()
    n, single_s = bench_single(paths)
    with tempfile.TemporaryDirectory() as tmp:
        multi = Path(tmp) / "multi.vcf"
        build_multisample(paths, multi, N_SAMPLES)
        size_mb = multi.stat().st_size / 2**20
        read_s, call_s, peak = bench_multi(multi)
    print(
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}, {platform.system()} (one core used)\n"
    )
    print("| workload | samples | total (s) | per sample (ms) | samples/s | peak RSS (MiB) |")
    print("|---|---|---|---|---|---|")
    print(
        f"| single-sample VCFs, 19 genes, read + call | {n} | {single_s:.2f} | {1000 * single_s / n:.1f} | "
        f"{n / single_s:.0f} | |"
    )
    total = read_s + call_s
    print(
        f"| {N_SAMPLES}-sample VCF ({size_mb:.1f} MiB), read | {N_SAMPLES} | {read_s:.2f} | "
        f"{1000 * read_s / N_SAMPLES:.2f} | | |"
    )
    print(
        f"| {N_SAMPLES}-sample VCF, call 19 genes | {N_SAMPLES} | {call_s:.2f} | {1000 * call_s / N_SAMPLES:.1f} | "
        f"{N_SAMPLES / call_s:.0f} | |"
    )
    print(
        f"| {N_SAMPLES}-sample VCF, read + call | {N_SAMPLES} | {total:.2f} | {1000 * total / N_SAMPLES:.1f} | "
        f"{N_SAMPLES / total:.0f} | {peak:.0f} |"
    )


if __name__ == "__main__":
    main()
