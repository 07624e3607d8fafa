"""ECG and PPG signals against their references, and the atrial-fibrillation classifier on PhysioNet/CinC 2017.

1. R peaks (NeuroKit2) on MIT-BIH record 100 against its cardiologists' beat annotations: sensitivity and PPV
   within 150 ms (goal: both at least 99.5%).
2. PPG pulse rate on the 2015 false-alarm records with PPG (a103l, v102s) against the ECG-derived rate (the most
   regular ECG lead in each 10 s window): mean absolute error on the windows the quality gate accepts (goal: at
   most 3/min) and the share it rejects.
3. AF on the 300 PhysioNet/CinC 2017 records (150 N / 50 AF / 70 Other / 30 Noisy): repeated stratified 5-fold
   cross-validation of four-class classifiers on medml's rhythm features; the challenge score (mean F1 of Normal,
   AF and Other; Noisy is a class but not in the mean) and F1 for AF (goals: at least 0.80 and 0.85). The tuned
   LightGBM is chosen by nested cross-validation: inside each outer training fold a 3-fold stratified grid search
   picks its settings by the challenge score, and the outer test fold is scored once, never used to choose.

    python benchmarks/bench_signals.py --out benchmarks/results-signals.md
    python benchmarks/bench_signals.py --only af --repeats 3     # the AF section alone (prints; --out writes it)
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, make_scorer
from sklearn.model_selection import GridSearchCV, RepeatedStratifiedKFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medml.config import get_settings
from medml.vitals.af import record_features
from medml.vitals.ecg import match_beats, r_peaks
from medml.vitals.ppg import gated_rates
from medml.vitals.signals import read_beats, read_recording

SIGNALS = get_settings().data_root / "signals"


def peaks_table() -> list[str]:
    rec = read_recording(SIGNALS / "wfdb-samples" / "100.hea")
    ref = read_beats(SIGNALS / "wfdb-samples" / "100.hea")
    t = time.perf_counter()
    det = r_peaks(rec.channel("MLII"), rec.fs)
    seconds = time.perf_counter() - t
    m = match_beats(det, ref, rec.fs)
    return [
        "### R peaks: MIT-BIH record 100 (MLII, 30 min, 360 Hz) against its beat annotations, 150 ms tolerance",
        "",
        "| reference beats | detected | true positives | sensitivity | PPV | detector time | goal |",
        "|---:|---:|---:|---:|---:|---:|---|",
        f"| {m.n_reference:,} | {m.n_detected:,} | {m.true_positives:,} | {m.sensitivity:.4f} | {m.ppv:.4f} | "
        f"{seconds:.2f} s | both >= 0.995 |",
        "",
    ]


def ppg_table() -> list[str]:
    lines = [
        "### PPG pulse rate against the ECG (10 s windows; gate: template match >= 0.9, interval CV <= 0.25, "
        "4+ pulses)",
        "",
        "| record | windows | accepted | rejected | MAE accepted (/min) | MAE all windows (/min) | goal |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name in ("a103l", "v102s"):
        rec = read_recording(SIGNALS / "wfdb-samples" / f"{name}.hea")
        w = gated_rates(rec.channel("PLETH"), rec.fs, ecg=np.stack([rec.channel("II"), rec.channel("V")]))
        acc = w[w["accepted"]]
        mae_acc = float(np.abs(acc["ppg_rate"] - acc["ecg_rate"]).mean())
        mae_all = float(np.nanmean(np.abs(w["ppg_rate"] - w["ecg_rate"])))
        rejected = 1 - len(acc) / len(w)
        lines.append(
            f"| {name} ({', '.join(rec.comments)}) | {len(w)} | {len(acc)} | {rejected:.0%} | {mae_acc:.2f} | "
            f"{mae_all:.2f} | MAE accepted <= 3 |"
        )
    return [*lines, ""]


def challenge_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The PhysioNet/CinC 2017 score: the mean F1 of Normal, AF and Other (Noisy is predicted but not averaged)."""
    return float(np.mean(f1_score(y_true, y_pred, labels=["N", "A", "O"], average=None)))


#: the inner-CV grid of the tuned LightGBM: tree size and feature subsampling, 250 trees at a 0.05 rate
LGBM_GRID = {"num_leaves": [4, 8], "colsample_bytree": [0.4, 0.7]}


def _models(seed: int) -> dict[str, Callable[[], Any]]:
    import lightgbm as lgb

    def lgbm_tuned() -> Any:
        base = lgb.LGBMClassifier(
            n_estimators=250,
            learning_rate=0.05,
            min_child_samples=8,
            subsample=0.8,
            subsample_freq=1,
            class_weight="balanced",
            random_state=seed,
            verbose=-1,
            n_jobs=1,
        )
        inner = StratifiedKFold(n_splits=3, shuffle=True, random_state=seed)
        return GridSearchCV(base, LGBM_GRID, scoring=make_scorer(challenge_score), cv=inner, n_jobs=1)

    def logistic_tuned() -> Any:
        base = make_pipeline(
            SimpleImputer(strategy="median"),
            StandardScaler(),
            LogisticRegression(max_iter=5000, class_weight="balanced"),
        )
        inner = StratifiedKFold(n_splits=3, shuffle=True, random_state=seed)
        grid = {"logisticregression__C": [0.01, 0.03, 0.1, 0.3, 1.0]}
        return GridSearchCV(base, grid, scoring=make_scorer(challenge_score), cv=inner, n_jobs=1)

    return {
        "logistic (L2, balanced)": lambda: make_pipeline(
            SimpleImputer(strategy="median"),
            StandardScaler(),
            LogisticRegression(C=1.0, max_iter=5000, class_weight="balanced"),
        ),
        "logistic, C by inner 3-fold CV (nested)": logistic_tuned,
        "LightGBM (small trees, balanced)": lambda: lgb.LGBMClassifier(
            n_estimators=200,
            learning_rate=0.05,
            num_leaves=4,
            min_child_samples=8,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.6,
            class_weight="balanced",
            random_state=seed,
            verbose=-1,
            n_jobs=1,
        ),
        "LightGBM tuned by inner 3-fold CV (nested)": lgbm_tuned,
    }


def af_table(repeats: int, seed: int) -> list[str]:
    cache = get_settings().home / "cache"
    before = set(cache.glob("af-features-*.parquet"))
    t = time.perf_counter()
    recs = record_features(SIGNALS / "physionet-2017-af")
    feature_s = time.perf_counter() - t
    computed = set(cache.glob("af-features-*.parquet")) != before
    feature_note = f"features {feature_s:.0f} s" + ("" if computed else " (read from the cache)")
    X, y = recs.features.astype(float), recs.labels.to_numpy()
    cv = RepeatedStratifiedKFold(n_splits=5, n_repeats=repeats, random_state=seed)
    lines = [
        f"### Atrial fibrillation: PhysioNet/CinC 2017, {len(X)} records, {repeats} x stratified 5-fold CV "
        f"({feature_note}, {X.shape[1]} per record; left out: {len(recs.left_out)})",
        "",
        "| model | challenge score (mean F1 of N, AF, O) | F1 normal | F1 AF | F1 other | F1 noisy | goals: >= 0.80, "
        "F1 AF >= 0.85 |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    chosen: dict[str, Counter[str]] = {}
    for name, make in _models(seed).items():
        per: list[np.ndarray] = []
        for tr, te in cv.split(X, y):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = make().fit(X.iloc[tr], y[tr])
                pred = model.predict(X.iloc[te])
            if isinstance(model, GridSearchCV):
                params = ", ".join(f"{k.split('__')[-1]}={v}" for k, v in sorted(model.best_params_.items()))
                chosen.setdefault(name, Counter())[params] += 1
            per.append(f1_score(y[te], pred, labels=["N", "A", "O", "~"], average=None))
        f = np.array(per)
        score = f[:, :3].mean(axis=1)
        lines.append(
            f"| {name} | {score.mean():.3f} ± {score.std(ddof=1):.3f} | {f[:, 0].mean():.3f} | {f[:, 1].mean():.3f} | "
            f"{f[:, 2].mean():.3f} | {f[:, 3].mean():.3f} | "
            f"{'met' if score.mean() >= 0.80 else 'not met'}, {'met' if f[:, 1].mean() >= 0.85 else 'not met'} |"
        )
    lines.append("")
    for name, counts in chosen.items():
        picks = "; ".join(f"{k} x{n}" for k, n in counts.most_common())
        lines.append(f"Inner-CV choices of {name} over the {repeats * 5} outer folds: {picks}.")
    lines += [
        "",
        "Protocol: every model is fitted on the outer training folds only; the nested models choose their settings "
        "by a 3-fold stratified grid search inside each outer training fold (scored by the challenge score), so the "
        "outer test folds choose nothing. The fixed models' settings were set before this run. The feature set "
        "itself (medml.vitals.af_features) was designed while looking at cross-validated results on these same 300 "
        "records, so the numbers carry some optimism from that choice.",
        "",
        "The challenge's best entries scored 0.83 on its hidden test set (3,658 records) after training on 8,528. "
        "This is not the same measure: here 300 records (the challenge's validation set) are both trained and "
        "tested on by cross-validation, each fold training on 240 records, 40 of them AF; the hidden test set's "
        "class mix and recording conditions differ, and a model chosen on 300 records has seen far fewer Other "
        "rhythms than the 2,456 of the training set.",
        "",
    ]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    ap.add_argument(
        "--only", nargs="+", choices=["peaks", "ppg", "af"], default=["peaks", "ppg", "af"], help="sections to run"
    )
    args = ap.parse_args()
    t0 = time.perf_counter()
    sections = {"peaks": peaks_table, "ppg": ppg_table, "af": lambda: af_table(args.repeats, args.seed)}
    body = [line for name in args.only for line in sections[name]()]
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
    head = [
        "# Signals: R peaks, PPG pulse rate, atrial fibrillation (`benchmarks/bench_signals.py`)",
        "",
        f"Machine: {os.cpu_count()} cores ({names[0] if names else platform.processor()}), shared with other jobs; "
        f"load average at start {os.getloadavg()[0]:.1f}. Total {time.perf_counter() - t0:.0f} s.",
        "",
    ]
    text = "\n".join(head + body)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
