"""PneumoniaMNIST (28x28, official split) with `medml image train`, three seeds, against the MedMNIST v2 table.

Each seed runs `medml image train` in a fresh process into a throw-away MEDML_HOME (wall time and peak resident
memory from wait4), then the registered bundle gives the test metrics (AUROC with its bootstrap interval, accuracy
at 0.5, calibration after Platt scaling) and the epoch times; inference speed is timed on the test images.
Needs the imaging extra (`pip install -e '.[imaging]'`).

Usage: ``.venv/bin/python benchmarks/bench_imaging.py [--seeds 0,1,2] [--epochs 12] [--out FILE]``
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: MedMNIST v2 (Yang et al., Scientific Data 2023), PneumoniaMNIST test AUC / ACC
PAPER = {"ResNet-18 (28)": (0.944, 0.854), "ResNet-18 (224)": (0.956, 0.864), "ResNet-50 (28)": (0.948, 0.854),
         "ResNet-50 (224)": (0.962, 0.884), "auto-sklearn": (0.942, 0.855), "AutoKeras": (0.947, 0.878),
         "Google AutoML Vision": (0.991, 0.946)}


def run_seed(data: Path, seed: int, epochs: int, tta: bool) -> dict[str, float | str]:
    home = Path(tempfile.mkdtemp(prefix=f"medml-bench-img-{seed}-"))
    env = {**os.environ, "MEDML_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "medml.cli", "image", "train", str(data), "--epochs", str(epochs), "--seed",
           str(seed), "--name", "pneumonia", "--calibrate"] + (["--tta"] if tta else [])
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"seed {seed} failed:\n{output}")
    os.environ["MEDML_HOME"] = str(home)
    from medml.config import get_settings
    from medml.data.images import load_images
    from medml.evaluate.calibration import calibration_intercept, calibration_slope
    from medml.imaging_workflow import net_config_of, predict_bundle
    from medml.models.imaging import predict_images
    from medml.registry import load_bundle

    bundle = load_bundle("pneumonia", get_settings())
    md = bundle.metadata
    cal = md.evaluation["calibration"]
    ds = load_images(data)
    test = ds.subset(ds.split(seed=seed).test)
    predict_bundle(bundle, test.images[:64])
    t = time.perf_counter()
    predict_bundle(bundle, test.images)
    per_s = len(test) / (time.perf_counter() - t)
    history = md.extra["history"]
    raw = predict_images(bundle.model, net_config_of(bundle), test.images)  # before Platt scaling
    y = test.labels
    return {"seed": seed, "auroc": md.metrics["auroc"], "low": md.metrics["auroc_low"],
            "high": md.metrics["auroc_high"], "acc": md.metrics["accuracy_at_0_5"],
            "slope": cal["slope"]["value"], "intercept": cal["intercept"]["value"], "epochs": len(history),
            "best_epoch": md.params["best_epoch"], "s_per_epoch": statistics.mean(h["seconds"] for h in history),
            "wall": wall, "peak_mib": usage.ru_maxrss / 1024, "images_per_s": per_s,
            "stopped_by": md.params["stopped_by"], "raw_acc": float(((raw >= 0.5) == (y == 1)).mean()),
            "raw_slope": calibration_slope(y, raw), "raw_intercept": calibration_intercept(y, raw),
            "val_prevalence": md.params["calibration"]["events"] / md.params["calibration"]["n"],
            "test_prevalence": float(y.mean())}


def sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--no-tta", action="store_true")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    from medml.config import get_settings

    data = a.data or get_settings().data_root / "imaging" / "medmnist" / "pneumoniamnist.npz"
    rows = []
    for seed in (int(s) for s in a.seeds.split(",")):
        print(f"seed {seed} ...", file=sys.stderr)
        rows.append(run_seed(data, seed, a.epochs, not a.no_tta))
        print(f"  {rows[-1]}", file=sys.stderr)
    lines = [f"# PneumoniaMNIST, official split ({platform.node()}, {os.cpu_count()} cores, Python "
             f"{platform.python_version()}; {a.epochs} epochs at most, TTA {'off' if a.no_tta else 'on'})", "",
             "| seed | test AUROC (95% CI) | ACC at 0.5: Platt / raw | cal. slope: Platt / raw | "
             "cal. intercept: Platt / raw | epochs (best) | s/epoch | wall s | peak MiB | inference images/s |",
             "|---:|---|---|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['auroc']:.3f} ({r['low']:.3f}-{r['high']:.3f}) | {r['acc']:.3f} / "
                     f"{r['raw_acc']:.3f} | {r['slope']:.2f} / {r['raw_slope']:.2f} | {r['intercept']:.2f} / "
                     f"{r['raw_intercept']:.2f} | {r['epochs']} ({r['best_epoch']}) | {r['s_per_epoch']:.1f} | "
                     f"{r['wall']:.0f} | {r['peak_mib']:.0f} | {r['images_per_s']:.0f} |")
    aucs = [float(r["auroc"]) for r in rows]
    accs = [float(r["acc"]) for r in rows]
    raw_accs = [float(r["raw_acc"]) for r in rows]
    lines += ["", f"Across seeds: AUROC {statistics.mean(aucs):.3f} (SD {sd(aucs):.3f}); ACC at 0.5 "
              f"{statistics.mean(accs):.3f} (SD {sd(accs):.3f}) after Platt scaling, {statistics.mean(raw_accs):.3f} "
              f"(SD {sd(raw_accs):.3f}) before. Pneumonia prevalence: validation split "
              f"{float(rows[0]['val_prevalence']):.1%}, test split {float(rows[0]['test_prevalence']):.1%}.", "",
              "| MedMNIST v2 baseline | AUC | ACC | medml mean AUROC minus it |", "|---|---:|---:|---:|"]
    for name, (auc, acc) in PAPER.items():
        lines.append(f"| {name} | {auc:.3f} | {acc:.3f} | {statistics.mean(aucs) - auc:+.3f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        a.out.write_text(text)


if __name__ == "__main__":
    main()
