"""Quality and cost of `medml train` on every bundled dataset, for both models, plus `medml demo`.

Each run is a fresh `medml train` process (its wall time and peak resident memory measured with wait4)
into a throw-away MEDML_HOME; the test-split metrics are read back from the registered bundle. Prints a
Markdown table for the README. Usage:

    .venv/bin/python benchmarks/bench_tabular.py [--budget-seconds 60] [--datasets a,b] [--demo]
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

LITERATURE = {
    "heart-cleveland": "about 0.90 (UCI Cleveland)",
    "diabetes-130": "0.64-0.70 (patient-level split)",
    "physionet-2012": "0.85-0.87 (boosted trees, 48 h aggregates)",
    "support2": "as measured",
    "pima": "not given",
}
DATASETS = ("heart-cleveland", "pima", "support2", "physionet-2012", "diabetes-130")


def run_child(args: list[str], home: Path) -> tuple[float, float, int, str]:
    """Run `medml ARGS` with wait4 so that the peak memory is this child's alone."""
    env = {**os.environ, "MEDML_HOME": str(home), "COLUMNS": "200"}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "medml.cli", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - start, usage.ru_maxrss / 1024, proc.returncode, output


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget-seconds", type=float, default=60.0)
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--models", default="logistic,lgbm")
    ap.add_argument("--demo", action="store_true", help="also time `medml demo`")
    args = ap.parse_args()

    cpu = (
        next(
            (
                ln.split(":", 1)[1].strip()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")
            ),
            platform.machine(),
        )
        if Path("/proc/cpuinfo").exists()
        else ""
    )
    print(f"machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"search budget {args.budget_seconds:.0f} s per model; seed 0; bootstrap 1000\n")
    print(
        "| dataset | model | test n (events) | AUROC (95% CI) | AUPRC | Brier | cal. slope | calibration "
        "| trials | wall s | peak MiB | literature AUROC |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        for key in args.datasets.split(","):
            for kind in args.models.split(","):
                wall, peak, rc, output = run_child(
                    ["train", key, "--model", kind, "--budget-seconds", str(args.budget_seconds)], home
                )
                if rc != 0:
                    print(f"| {key} | {kind} | failed (exit {rc}): {output.strip().splitlines()[-1]} |")
                    continue
                name = f"{key}-{kind}"
                version = max(int(p.name) for p in (home / "models" / name).iterdir() if p.name.isdigit())
                md = json.loads((home / "models" / name / str(version) / "metadata.json").read_text())
                m = md["metrics"]
                print(
                    f"| {key} | {kind} | {m['n']} ({m['n_events']}) | {m['auroc']:.3f} "
                    f"({m['auroc_low']:.3f}-{m['auroc_high']:.3f}) | {m['auprc']:.3f} | {m['brier']:.3f} | "
                    f"{m['calibration_slope']:.2f} | {md['calibration']} | {md['params'].get('n_trials', '')} | "
                    f"{wall:.0f} | {peak:.0f} | {LITERATURE.get(key, '')} |"
                )
                for site, ev in md.get("extra", {}).get("external", {}).items():
                    d = ev["discrimination"]["auroc"]
                    c = ev["calibration"]
                    print(
                        f"| {site} (external) | {kind} | {ev['n']} ({ev['n_events']}) | {d['value']:.3f} "
                        f"({d['low']:.3f}-{d['high']:.3f}) | {ev['discrimination']['auprc']['value']:.3f} | "
                        f"{c['brier']['value']:.3f} | {c['slope']['value']:.2f} | | | | | as measured |"
                    )
                sys.stdout.flush()
        if args.demo:
            wall, peak, rc, output = run_child(["demo"], Path(tmp) / "demo-home")
            print(f"\n`medml demo`: exit {rc}, wall {wall:.0f} s, peak {peak:.0f} MiB")


if __name__ == "__main__":
    main()
