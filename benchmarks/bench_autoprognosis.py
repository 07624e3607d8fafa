"""medml's model search against AutoPrognosis 2.0 on the same features and the same 5 patient-grouped folds.

Per dataset: medml's task definition (features, outcome, patient ids), 5 stratified patient-grouped folds
(``medml.data.splits.patient_kfold``, seed 0), and on each fold's training part:

- medml: the whole pipeline of ``medml train --cv`` (search within a time budget on a grouped inner split, fit,
  calibration map from cross-fitted scores) for the kinds asked (``stack``: spline logistic + LightGBM);
- the floor: scikit-learn's LogisticRegression (median imputation, scaling) and LightGBM, both with default settings;
- AutoPrognosis 0.1.22 (its own virtual environment, ``.venv/peers/autoprognosis``, made by ``make bench-ap``): its
  ClassifierStudy with the classifiers asked, mean imputation, its inner 5-fold CV grouped by patient, one study
  iteration, ``--ap-iter`` trials and ``--ap-timeout`` seconds per classifier; each fold a process stopped at
  ``--fold-cap`` seconds and reported as "did not finish".

Categorical inputs are one-hot encoded for the floor and AutoPrognosis (which take numbers only); medml reads them
as the task declares them. Prints a Markdown table (mean over folds of AUROC and Brier, with the SD over folds, and
the wall time of all folds) and writes it with ``--out``. Usage:

    .venv/bin/python benchmarks/bench_autoprognosis.py [--datasets heart-cleveland,pima] [--medml-budget 10]
        [--ap-iter 10] [--ap-timeout 60] [--fold-cap 1200] [--out benchmarks/results-ap.md]
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
AP_PYTHON = ROOT / ".venv" / "peers" / "autoprognosis" / "bin" / "python"
DATASETS = ("heart-cleveland", "pima", "support2", "diabetes-130")
#: diabetes-130 (101,766 encounters) is subsampled by patient to about this many rows, so AutoPrognosis can finish
SUBSAMPLE_ROWS = {"diabetes-130": 20_000}


def load(key: str, seed: int) -> tuple[Any, str]:
    from medml.pipelines.catalogue import load_dataset

    ds = load_dataset(key)
    limit = SUBSAMPLE_ROWS.get(key)
    if limit is None or len(ds.X) <= limit:
        return ds, ""
    patients = np.unique(ds.groups)
    rng = np.random.default_rng(seed)
    rng.shuffle(patients)
    sizes = pd.Series(ds.groups).value_counts()
    keep = set(patients[: int(np.searchsorted(np.cumsum(sizes[patients].to_numpy()), limit)) + 1])
    rows = np.flatnonzero(np.isin(ds.groups, list(keep)))
    return ds.subset(rows), f"subsample of {len(rows):,} rows ({len(keep):,} patients) of {len(ds.X):,}"


def encoded(ds: Any) -> pd.DataFrame:
    """Numbers only, for the floor and AutoPrognosis: numeric inputs as they are, categorical ones one-hot."""
    num = [f.name for f in ds.features if f.kind == "numeric"]
    cat = [f.name for f in ds.features if f.kind == "categorical"]
    frame = ds.X[num].apply(pd.to_numeric, errors="coerce").astype(float)
    if cat:
        dummies = pd.get_dummies(ds.X[cat].astype("string"), prefix=cat, dtype=float)
        frame = pd.concat([frame, dummies], axis=1)
    frame.columns = [f"f{i}" for i in range(frame.shape[1])]  # AutoPrognosis hashes and writes column names
    return frame


def scores_of(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    from medml.evaluate import auroc, brier

    return {"auroc": auroc(y, p), "brier": brier(y, p)}


def run_medml(ds: Any, folds: list[tuple[np.ndarray, np.ndarray]], kind: str, budget: float) -> dict[str, Any]:
    from medml.pipelines.validation import Recipe, develop

    y = ds.binary_target.values
    rows, start = [], time.perf_counter()
    for i, (tr, te) in enumerate(folds):
        dev = develop(ds.subset(tr), Recipe(kind, budget, 200), seed=i)
        rows.append(scores_of(y[te], dev.model.predict_proba(ds.subset(te).X)[:, 1]))
    return {"rows": rows, "seconds": time.perf_counter() - start, "setting": f"{budget:g} s search per fold"}


def run_floor(X: pd.DataFrame, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], which: str) -> dict[str, Any]:
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rows, start = [], time.perf_counter()
    for tr, te in folds:
        if which == "logistic":
            model = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(max_iter=5000))
        else:
            import lightgbm as lgb

            model = lgb.LGBMClassifier(verbose=-1, n_jobs=2, random_state=0)
        model.fit(X.iloc[tr], y[tr])
        rows.append(scores_of(y[te], model.predict_proba(X.iloc[te])[:, 1]))
    return {"rows": rows, "seconds": time.perf_counter() - start, "setting": "defaults"}


def run_autoprognosis(
    X: pd.DataFrame, y: np.ndarray, groups: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], args: Any
) -> dict[str, Any]:
    rows: list[dict[str, float] | None] = []
    models, start = [], time.perf_counter()
    pid = pd.factorize(pd.Series(groups))[0]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (tr, te) in enumerate(folds):
            folder = Path(tmp) / f"fold{i}"
            folder.mkdir()
            train = X.iloc[tr].assign(target=y[tr], pid=pid[tr])
            train.to_csv(folder / "train.csv", index=False)
            X.iloc[te].to_csv(folder / "test.csv", index=False)
            cmd = [str(AP_PYTHON), str(ROOT / "benchmarks" / "_ap_fold.py"), str(folder), str(args.ap_iter)]
            cmd += [str(args.ap_timeout), args.ap_classifiers]
            env = {**os.environ, "OMP_NUM_THREADS": "2"}
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.fold_cap, env=env)
            except subprocess.TimeoutExpired:
                rows.append(None)
                models.append(f"fold {i + 1}: did not finish in {args.fold_cap} s")
                continue
            if proc.returncode != 0:
                rows.append(None)
                models.append(f"fold {i + 1}: failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1][:200]}")
                continue
            p = np.loadtxt(folder / "scores.txt").reshape(-1)
            rows.append(scores_of(y[te], p))
            print(f"  AutoPrognosis fold {i + 1}: {rows[-1]}, {time.perf_counter() - start:.0f} s so far", flush=True)
            models.append(f"fold {i + 1}: {json.loads((folder / 'info.json').read_text())['model']}")
    setting = (
        f"{args.ap_classifiers}; mean imputation; {args.ap_iter} trials or {args.ap_timeout} s per classifier; "
        f"1 study iteration, 3 ensemble trials; inner 5-fold CV by patient; cap {args.fold_cap} s per fold"
    )
    return {"rows": rows, "seconds": time.perf_counter() - start, "setting": setting, "models": models}


def methods(
    ds: Any, X: pd.DataFrame, y: np.ndarray, folds: list[Any], args: Any
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each method's result on the folds, one at a time (so the table grows while a slow peer runs)."""
    only = set(args.only.split(","))
    for kind in args.medml_kinds.split(",") if "medml" in only else []:
        yield f"medml {kind}", run_medml(ds, folds, kind, args.medml_budget)
    if "floor" in only:
        yield "logistic regression (floor)", run_floor(X, y, folds, "logistic")
        yield "LightGBM (floor)", run_floor(X, y, folds, "lgbm")
    if "ap" in only:
        yield "AutoPrognosis 0.1.22", run_autoprognosis(X, y, np.asarray(ds.groups), folds, args)


def cell(result: dict[str, Any], key: str) -> str:
    done = [r[key] for r in result["rows"] if r is not None]
    if not done:
        return "did not finish"
    sd = f" ± {np.std(done, ddof=1):.3f}" if len(done) > 1 else ""
    part = "" if len(done) == len(result["rows"]) else f" ({len(done)} of {len(result['rows'])} folds)"
    return f"{np.mean(done):.3f}{sd}{part}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--medml-kinds", default="stack")
    ap.add_argument("--medml-budget", type=float, default=10.0, help="search seconds per fold")
    ap.add_argument("--ap-classifiers", default="logistic_regression,lgbm")
    ap.add_argument("--ap-iter", type=int, default=10)
    ap.add_argument("--ap-timeout", type=int, default=60)
    ap.add_argument("--fold-cap", type=int, default=1200, help="seconds before an AutoPrognosis fold is stopped")
    ap.add_argument("--only", default="medml,floor,ap", help="which of medml, floor, ap to run")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    from medml.data.splits import patient_kfold

    if "ap" in args.only and not AP_PYTHON.exists():
        sys.exit(f"no AutoPrognosis at {AP_PYTHON}: run `make bench-ap`, which makes its virtual environment")
    lines = [
        f"machine: {platform.machine()}, {os.cpu_count()} cores shared with other work (timings are of a busy "
        f"machine), Python {platform.python_version()}; 5 patient-grouped stratified folds, seed 0",
        f"command: {' '.join([Path(sys.executable).name, *sys.argv])}",
        "",
        "| dataset | rows (events) | method | setting | AUROC (mean ± SD over folds) | Brier | wall s (5 folds) |",
        "|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    notes = []
    for key in args.datasets.split(","):
        ds, note = load(key, seed=0)
        if note:
            notes.append(f"{key}: {note}")
        y = np.asarray(ds.binary_target.values).astype(int)
        folds = list(patient_kfold(ds.groups, y, k=5, seed=0))
        X = encoded(ds)
        for method, r in methods(ds, X, y, folds, args):
            row = (
                f"| {key} | {len(y):,} ({int(y.sum()):,}) | {method} | {r['setting']} | {cell(r, 'auroc')} | "
                f"{cell(r, 'brier')} | {r['seconds']:.0f} |"
            )
            lines.append(row)
            print(row, flush=True)
            if r.get("models"):
                notes.append(f"{key} AutoPrognosis models: " + "; ".join(r["models"]))
            if args.out:
                args.out.write_text("\n".join(lines) + "\n")
    lines += ["", *(f"- {n}" for n in notes)]
    print("\n".join(f"- {n}" for n in notes))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
