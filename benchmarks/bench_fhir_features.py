"""Time to build PhysioNet 2012's 48-hour training features from FHIR, against the tabular adapter.

Each step runs in a fresh process (wall time and peak resident memory from wait4), in a throw-away MEDML_HOME:

- tabular: ``physionet2012.load()`` from the archive (parse + aggregate; its Parquet cache is empty);
- FHIR, once per data set: convert set A to Bulk Data NDJSON, then ingest it into a DuckDB store;
- FHIR, per training run: the ``encounters`` and ``observations`` views and the aggregation over the store.

Usage: ``.venv/bin/python benchmarks/bench_fhir_features.py [--out benchmarks/results-fhir-features.md]``
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEPS = {
    "tabular adapter (parse archive + aggregate)": (
        "from medml.data.datasets import physionet2012; ds = physionet2012.load(); print(ds.X.shape)"
    ),
    "FHIR: convert set A to NDJSON (once)": (
        "from medml.config import get_settings; from medml.fhir.convert.physionet2012 import write_ndjson; "
        "print(write_ndjson(get_settings().data_root / 'icu/physionet-2012-set-a', '{work}/ndjson', compress=True))"
    ),
    "FHIR: ingest NDJSON into the store (once)": (
        "from medml.fhir.store import FhirStore; from medml.fhir.ingest import ingest; "
        "s = FhirStore('{work}/store.duckdb'); r = ingest(s, ['{work}/ndjson']); print(r.resources)"
    ),
    "FHIR: views + features from the store (each training run)": (
        "from medml.fhir.store import FhirStore; from medml.fhir.tasks import physionet_in_hospital_death; "
        "s = FhirStore('{work}/store.duckdb', read_only=True); ds = physionet_in_hospital_death(s); print(ds.X.shape)"
    ),
}


def run_step(code: str, home: Path) -> tuple[float, float, str]:
    env = {**os.environ, "MEDML_HOME": str(home)}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"step failed:\n{output}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024, output.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results-fhir-features.md"))
    args = parser.parse_args()
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    lines = [
        f"PhysioNet 2012 set A features, {time.strftime('%Y-%m-%d')}, {cpu}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "",
        "| step | wall (s) | peak RSS (MiB) | result |",
        "|---|---:|---:|---|",
    ]
    with tempfile.TemporaryDirectory() as work:
        home = Path(work) / "home"
        for label, code in STEPS.items():
            wall, rss, result = run_step(code.format(work=work), home)
            lines.append(f"| {label} | {wall:.1f} | {rss:,.0f} | {result} |")
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
