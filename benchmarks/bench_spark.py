"""medml's views on Spark (local mode, 1 and 2 cores) against medml on DuckDB and pysof, on the same NDJSON files.

Data: the Synthea R4 Bundles replicated with new ids into Bulk Data NDJSON (``--scale`` Patients and Observations,
as benchmarks/bench_fhir.py makes them), and the PhysioNet 2012 set converted to FHIR (``--stays`` stays) and
replicated 1, 2 and 4 times with new ids. Each engine runs each view in a fresh process on the same file and
reports 'file to rows': for Spark, NDJSON to Parquet by resource type (``medml.scale.ingest``) then the view to a
Parquet folder (``medml.scale.views``), with the JVM's start-up reported apart; for DuckDB, ingest into an
in-memory store then ``run_view``; for pysof, its streaming NDJSON path. Row counts are checked equal across
engines. Prints a Markdown table and writes it, with the machine and the command, to ``--out``. Usage:

    .venv/bin/python benchmarks/bench_spark.py [--scale 200000] [--stays 3996] [--out benchmarks/results-spark.md]

pysof comes with ``pip install -e '.[bench]'`` (loaded as benchmarks/bench_fhir.py loads it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_fhir  # noqa: E402  (its data preparation, views and engines, shared)

ENGINES = ("spark-local[1]", "spark-local[2]", "medml-duckdb", "pysof")


# ---------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------


def physionet_ndjson(stays: int, folder: Path) -> Path:
    """The first ``stays`` PhysioNet 2012 stays as FHIR NDJSON; the Observation file's path."""
    from medml.config import get_settings
    from medml.fhir.convert import physionet2012 as convert

    convert.write_ndjson(get_settings().data_root / "icu/physionet-2012-set-a", folder, limit=stays, compress=False)
    return next(folder.glob("Observation*.ndjson"))


def replicate_lines(src: Path, times: int, dest: Path) -> int:
    """``src`` copied ``times`` times, copy r with ids and subject references suffixed ``-r``; lines written."""
    import orjson

    n = 0
    with dest.open("wb") as out:
        for r in range(times):
            with src.open("rb") as fh:
                for line in fh:
                    res = orjson.loads(line)
                    res["id"] = f"{res['id']}-{r}"
                    ref = res.get("subject", {}).get("reference")
                    if ref:
                        res["subject"] = {**res["subject"], "reference": f"{ref}-{r}"}
                    out.write(orjson.dumps(res) + b"\n")
                    n += 1
    return n


# ---------------------------------------------------------------------------------------------------------------
# Workers: one engine, one view, one file, in a fresh process
# ---------------------------------------------------------------------------------------------------------------


def worker_spark(master: str, rtype: str, path: Path) -> dict[str, Any]:
    from medml.scale import spark_session
    from medml.scale.ingest import ingest_ndjson, load_resources
    from medml.scale.views import write_view

    start = time.perf_counter()
    spark = spark_session(master)
    startup = time.perf_counter() - start
    tmp = Path(tempfile.mkdtemp(prefix="bench-spark-"))
    start = time.perf_counter()
    report = ingest_ndjson(spark, [path], tmp / "parquet")
    ingest_s = time.perf_counter() - start
    start = time.perf_counter()
    rows, _ = write_view(spark, bench_fhir.VIEWS[rtype], load_resources(spark, [tmp / "parquet"]), tmp / "rows")
    view_s = time.perf_counter() - start
    return {"startup_s": startup, "ingest_s": ingest_s, "view_s": view_s, "resources": report.resources, "rows": rows}


def worker_main(engine: str, rtype: str, path: Path) -> None:
    if engine.startswith("spark-"):
        out = worker_spark(engine.removeprefix("spark-"), rtype, path)
    else:
        fn = {"medml-duckdb": bench_fhir.engine_medml, "pysof": bench_fhir.engine_pysof}[engine]
        t, _ = fn(rtype, path, None)
        out = {"startup_s": 0.0, "ingest_s": t.ingest_s, "view_s": t.view_s, "resources": t.resources, "rows": t.rows}
    print("RESULT " + json.dumps(out))


def run_worker(engine: str, rtype: str, path: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", engine, rtype, str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line.removeprefix("RESULT ")))
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": " / ".join(tail)[:300]}


# ---------------------------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=200_000, help="Synthea Patients and Observations each")
    parser.add_argument("--stays", type=int, default=3996, help="PhysioNet 2012 stays converted (1x)")
    parser.add_argument("--factors", default="1,2,4", help="PhysioNet replication factors")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown results here")
    parser.add_argument("--note", default="", help="a line about the machine's load, written under the table")
    parser.add_argument("--worker", nargs=3, metavar=("ENGINE", "TYPE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args.worker[0], args.worker[1], Path(args.worker[2]))
        return
    engines = [e for e in args.engines.split(",") if e]
    work = Path(tempfile.mkdtemp(prefix="bench-spark-data-"))
    datasets: list[tuple[str, str, Path]] = []
    if args.scale > 0:
        originals = bench_fhir.synthea_resources(
            bench_fhir.synthea_bundles(ROOT.parent / "shared/data/fhir/synthea-r4")
        )
        written = bench_fhir.replicate(originals, args.scale, work)
        for rtype in ("Patient", "Observation"):
            datasets.append((f"Synthea {rtype} x{args.scale:,}", rtype, written[rtype][0]))
    if args.stays > 0:
        base = physionet_ndjson(args.stays, work / "physionet")
        for f in (int(x) for x in args.factors.split(",")):
            dest = work / f"physionet-obs-{f}x.ndjson"
            replicate_lines(base, f, dest)
            datasets.append((f"PhysioNet Observation {f}x ({args.stays:,} stays)", "Observation", dest))
    lines = [
        "| data | resources | engine | JVM start s | ingest s | view s | file to rows s | resources/s | rows |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    results: dict[tuple[str, str], dict[str, Any]] = {}
    for label, rtype, path in datasets:
        for engine in engines:
            r = run_worker(engine, rtype, path)
            results[(label, engine)] = r
            if "error" in r:
                row = f"| {label} | | {engine} | | | | | | failed: {r['error']} |"
            else:
                total = r["ingest_s"] + r["view_s"]
                rate = r["resources"] / total if total else 0.0
                start = f"{r['startup_s']:.1f}" if engine.startswith("spark") else ""
                row = (
                    f"| {label} | {r['resources']:,} | {engine} | {start} | {r['ingest_s']:.2f} | {r['view_s']:.2f} "
                    f"| {total:.2f} | {rate:,.0f} | {r['rows']:,} |"
                )
            print(row, flush=True)
            lines.append(row)
    counts = {}
    for (label, _), r in results.items():
        counts.setdefault(label, set()).add(r.get("rows"))
    mismatched = [label for label, rows in counts.items() if len(rows - {None}) > 1]
    header = [
        "# medml on Spark: throughput in local mode",
        "",
        f"Run: `{' '.join([Path(sys.executable).name, *sys.argv])}` on {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "'file to rows' = ingest + view. Spark: NDJSON to Parquet by resource type, then the view to a Parquet folder",
        "(the JVM's start-up is apart, in 'JVM start'); medml-duckdb: ingest into an in-memory store, then run_view;",
        "pysof 0.2.6: its streaming NDJSON-to-NDJSON path (no ingest). Each cell is one run in a fresh process.",
        "",
    ]
    footer = ["", f"Row counts equal across engines: {'yes' if not mismatched else 'NO: ' + ', '.join(mismatched)}."]
    if args.note:
        footer += ["", args.note]
    text = "\n".join(header + lines + footer) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
