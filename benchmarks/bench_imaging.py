"""PneumoniaMNIST (28x28, official split) with `medml image train`, three seeds, against the MedMNIST v2 table.

Each seed runs `medml image train` in a fresh process into a throw-away MEDML_HOME (wall time and peak resident
memory from wait4): by default one ResNet (the default widths) of at most 12 epochs under a 14-minute training budget,
test-time flips on; ``--ensemble N`` trains N networks per run (seeds SEED, SEED+1, ...: give seeds N apart). The
registered bundle gives the test metrics (AUROC with its bootstrap interval, accuracy at 0.5 with its interval,
calibration), the Grad-CAM deletion check and the epoch times; inference speed is timed on the test images.
Needs the imaging extra (`pip install -e '.[imaging]'`).

Usage: ``.venv/bin/python benchmarks/bench_imaging.py [--seeds 0,1,2] [--ensemble 1] [--epochs 12] [--out FILE]``
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
from typing import Any

#: MedMNIST v2 (Yang et al., Scientific Data 2023), PneumoniaMNIST test AUC / ACC
PAPER = {
    "ResNet-18 (28)": (0.944, 0.854),
    "ResNet-18 (224)": (0.956, 0.864),
    "ResNet-50 (28)": (0.948, 0.854),
    "ResNet-50 (224)": (0.962, 0.884),
    "auto-sklearn": (0.942, 0.855),
    "AutoKeras": (0.947, 0.878),
    "Google AutoML Vision": (0.991, 0.946),
}
OPEN_BEST = (0.962, 0.884)  # the best open baseline on each figure (ResNet-50 at 224 x 224)


def run_seed(
    data: Path, seed: int, epochs: int, ensemble: int, budget: float, tta: bool, smoothing: float = 0.0
) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix=f"medml-bench-img-{seed}-"))
    env = {**os.environ, "MEDML_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [
        sys.executable,
        "-m",
        "medml.cli",
        "image",
        "train",
        str(data),
        "--epochs",
        str(epochs),
        "--seed",
        str(seed),
        "--name",
        "pneumonia",
        "--ensemble",
        str(ensemble),
        "--budget-minutes",
        str(budget),
    ]
    cmd += (["--tta"] if tta else []) + (["--label-smoothing", str(smoothing)] if smoothing else [])
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"seed {seed} failed:\n{output}")
    os.environ["MEDML_HOME"] = str(home)
    import numpy as np

    from medml.config import get_settings
    from medml.data.images import load_images
    from medml.evaluate import bootstrap_ci
    from medml.models.imaging import predict_bundle
    from medml.registry import load_bundle

    bundle = load_bundle("pneumonia", get_settings())
    md = bundle.metadata
    cal = md.evaluation["calibration"]
    ds = load_images(data)
    test = ds.subset(ds.split(seed=seed).test)
    predict_bundle(bundle, test.images[:64])
    t = time.perf_counter()
    p = predict_bundle(bundle, test.images)
    per_s = len(test) / (time.perf_counter() - t)
    y = test.labels
    acc = bootstrap_ci(
        lambda yy, pp: float(np.mean((np.asarray(pp) >= 0.5) == np.asarray(yy))),
        y,
        p,
        n_boot=1000,
        seed=seed,
        skip_one_class=False,
    )
    history = md.extra["history"]
    deletion = md.extra["saliency"]["deletion"]
    train_s = sum(m["seconds"] for m in md.params["members"])
    return {
        "seed": seed,
        "auroc": md.metrics["auroc"],
        "low": md.metrics["auroc_low"],
        "high": md.metrics["auroc_high"],
        "acc": acc.value,
        "acc_low": acc.low,
        "acc_high": acc.high,
        "slope": cal["slope"],
        "intercept": cal["intercept"],
        "ici": cal["ici"],
        "epochs": "+".join(str(sum(h["network"] == k + 1 for h in history)) for k in range(ensemble)),
        "best": "+".join(str(m["best_epoch"]) for m in md.params["members"]),
        "s_per_epoch": statistics.mean(h["seconds"] for h in history),
        "train_min": train_s / 60,
        "wall": wall,
        "peak_mib": usage.ru_maxrss / 1024,
        "images_per_s": per_s,
        "stopped_by": md.params["stopped_by"],
        "deletion": deletion,
        "widths": md.params["net"]["widths"],
        "test_prevalence": float(y.mean()),
    }


def _ci(e: dict[str, Any]) -> str:
    if e.get("low") is None or e.get("high") is None:
        return f"{e['value']:.2f} (interval not estimable)"
    return f"{e['value']:.2f} ({e['low']:.2f} to {e['high']:.2f})"


def sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=12, help="most epochs per network")
    ap.add_argument("--ensemble", type=int, default=1, help="networks per model")
    ap.add_argument("--budget-minutes", type=float, default=14.0, help="training budget per model (all networks)")
    ap.add_argument("--no-tta", action="store_true")
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    from medml.config import get_settings

    data = a.data or get_settings().data_root / "imaging" / "medmnist" / "pneumoniamnist.npz"
    rows = []
    for seed in (int(s) for s in a.seeds.split(",")):
        print(f"seed {seed} ...", file=sys.stderr)
        rows.append(run_seed(data, seed, a.epochs, a.ensemble, a.budget_minutes, not a.no_tta, a.label_smoothing))
        print(f"  {rows[-1]}", file=sys.stderr)
    widths = "-".join(str(w) for w in rows[0]["widths"])
    what = (
        (f"a deep ensemble of {a.ensemble} ResNets" if a.ensemble > 1 else "one ResNet")
        + f" of widths {widths}"
        + f", {a.epochs} epochs at most each, a {a.budget_minutes:g}-minute training budget, TTA "
        + ("off" if a.no_tta else "on")
        + (f", label smoothing {a.label_smoothing:g}" if a.label_smoothing else "")
    )
    lines = [
        f"# PneumoniaMNIST, official split ({platform.node()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; {what})",
        "",
        "| seed | test AUROC (95% CI) | ACC at 0.5 (95% CI) | cal. slope (95% CI) | cal. intercept (95% CI) "
        "| epochs per network (best) | s/epoch | training min | wall s | peak MiB | inference images/s |",
        "|---:|---|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['auroc']:.3f} ({r['low']:.3f}-{r['high']:.3f}) | {r['acc']:.3f} "
            f"({r['acc_low']:.3f}-{r['acc_high']:.3f}) | {_ci(r['slope'])} | {_ci(r['intercept'])} | "
            f"{r['epochs']} ({r['best']}) | {r['s_per_epoch']:.1f} | {r['train_min']:.1f} | "
            f"{r['wall']:.0f} | {r['peak_mib']:.0f} | {r['images_per_s']:.0f} |"
        )
    aucs = [float(r["auroc"]) for r in rows]
    accs = [float(r["acc"]) for r in rows]
    beat = all(float(r["auroc"]) > OPEN_BEST[0] and float(r["acc"]) > OPEN_BEST[1] for r in rows)
    strict = all(float(r["low"]) > OPEN_BEST[0] for r in rows)
    lines += [
        "",
        f"Across seeds: AUROC {statistics.mean(aucs):.3f} (SD {sd(aucs):.3f}, variance "
        f"{statistics.variance(aucs) if len(aucs) > 1 else 0:.1e}); ACC at 0.5 {statistics.mean(accs):.3f} "
        f"(SD {sd(accs):.3f}). Pneumonia prevalence in the test split {float(rows[0]['test_prevalence']):.1%}."
        f" Every seed above the best open baseline on both figures (AUC > {OPEN_BEST[0]}, ACC > "
        f"{OPEN_BEST[1]}): {'yes' if beat else 'no'}; every AUROC interval above {OPEN_BEST[0]}: "
        f"{'yes' if strict else 'no'}.",
        "",
        "| MedMNIST v2 baseline | AUC | ACC | medml mean AUROC minus it | medml mean ACC minus it |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, (auc, acc) in PAPER.items():
        lines.append(
            f"| {name} | {auc:.3f} | {acc:.3f} | {statistics.mean(aucs) - auc:+.3f} | "
            f"{statistics.mean(accs) - acc:+.3f} |"
        )
    lines += [
        "",
        "Grad-CAM faithfulness (deletion curve on 64 test images per seed: pixels set to the image mean in "
        "20 steps, most salient first vs 3 random orders; the area under the predicted class's probability, "
        "lower = faster drop):",
        "",
        "| seed | area, salient first | area, random | difference | images where salient-first fell faster |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        d = r["deletion"]
        lines.append(
            f"| {r['seed']} | {d['auc_saliency']:.3f} | {d['auc_random']:.3f} | "
            f"{d['auc_difference']:+.3f} | {d['share_faster_than_random']:.0%} of {d['n_images']} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        a.out.write_text(text)


if __name__ == "__main__":
    main()
