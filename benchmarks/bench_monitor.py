"""Monitoring on real shifts: drift alarms, estimated against realised performance, NannyML's CBPE, and speed.

Every stream is a sequence of real predictions replayed through ``medml.monitor`` (``drift`` with windows of 200 and
the default alarm rule, ``estimate``, then ``realised`` once the outcomes are revealed), with models trained by
``medml.pipelines.tabular.train`` (logistic, which writes the reference profile into the bundle):

- peer: NannyML's CBPE (its own venv, ``.venv/peers/nannyml``) on its US Census employment data, chunks of 5,000;
  medml's ``estimate`` on the same chunks with the reference data's calibration map (NannyML calibrates there);
- null streams: SUPPORT2 patients held out at random from development (3 seeds x 4 orders);
- site shift: the Cleveland heart model scoring Hungary, Switzerland and VA;
- case-mix shift: a SUPPORT2 model developed on 4 disease groups (dzgroup) scoring the other 4;
- faults injected from row 600 (window 3) into a null stream: creatinine in umol/L, the sodium feed stopping,
  only patients aged 75 or more;
- speed: drift and estimation over 1,000,000 predictions x 225 numeric features (10% missing), windows of 10,000.

    python benchmarks/bench_monitor.py --out benchmarks/results-monitor.md
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

import numpy as np
import pandas as pd

from medml.config import Settings, get_settings
from medml.data.task import FeatureSpec, TaskDataset
from medml.evaluate import auroc
from medml.monitor.drift import AlarmRule, DriftResult, drift
from medml.monitor.estimate import estimate
from medml.monitor.profile import ReferenceProfile, build_profile, profile_of
from medml.monitor.windows import Windows
from medml.pipelines.catalogue import load_dataset
from medml.pipelines.tabular import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
PEER_PYTHON = ROOT / ".venv/peers/nannyml/bin/python"
WINDOW = 200
FAULT_AT = 600
DEV_GROUPS = ("ARF/MOSF w/Sepsis", "CHF", "COPD", "Cirrhosis")
GOAL_PEER = 0.005
GOAL_ESTIMATE = 0.03


def _train(ds: TaskDataset, settings: Settings, name: str, seed: int = 0) -> tuple[Any, ReferenceProfile]:
    cfg = TrainConfig(model="logistic", budget_seconds=3, max_trials=3, n_boot=100, seed=seed, name=name)
    result = train(ds, cfg, settings)
    return result.bundle.model, profile_of(result.bundle.metadata)


def _scores(model: Any, X: pd.DataFrame) -> np.ndarray:
    return np.asarray(model.predict_proba(X)[:, 1], dtype=float)


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(none)\n"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(_cell(r[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def _cell(v: Any) -> str:
    if isinstance(v, bool | np.bool_):
        return "yes" if v else "no"
    if isinstance(v, float | np.floating):
        x = float(v)
        return "" if np.isnan(x) else f"{x:.4f}" if abs(x) < 10 else f"{x:,.1f}"
    return str(v)


def _est_vs_real(label: str, kind: str, scores: np.ndarray, y: np.ndarray, profile: ReferenceProfile) -> dict[str, Any]:
    """The whole stream as one window: CBPE's AUROC (interval), the realised AUROC, and the expected and observed
    event rates (calibration in the large: where they part, the relation of features to outcome has moved); then
    per full window of 200, the mean distance of estimate to realised and how often the range held it."""
    est = estimate(scores, threshold=None, windows=scores.size)
    a, prev = est.auroc[0], est.prevalence[0]
    real = auroc(y, scores)
    observed = float(y.mean())
    by_window = estimate(scores, threshold=None, windows=WINDOW).to_frame()
    diffs, covered = [], []
    for row in by_window[by_window["n"] == WINDOW].to_dict("records"):
        start = int(row["start"])
        yw, sw = y[start : start + WINDOW], scores[start : start + WINDOW]
        if 0 < yw.sum() < yw.size:
            r = auroc(yw, sw)
            diffs.append(abs(float(row["auroc"]) - r))
            covered.append(bool(row["auroc_low"] <= r <= row["auroc_high"]))
    return {
        "stream": label,
        "shift": kind,
        "n": int(scores.size),
        "estimated AUROC": a.value,
        "95% range if calibrated": f"{a.low:.3f}-{a.high:.3f}",
        "realised AUROC": real,
        "est - real (abs)": abs(a.value - real),
        "expected events": prev.value,
        "observed events": observed,
        "rate within range": bool(prev.low <= observed <= prev.high),
        f"within {GOAL_ESTIMATE}": abs(a.value - real) <= GOAL_ESTIMATE,
        "windows of 200: mean abs diff": float(np.mean(diffs)) if diffs else float("nan"),
        "windows of 200: realised in range": f"{sum(covered)}/{len(covered)}" if covered else "",
    }


def _named(result: DriftResult, window: int, top: int = 6) -> str:
    t = result.tests
    hit = t[(t["window"] == window) & t["alarm"]].sort_values("p")
    names = list(dict.fromkeys(f"{r.feature} ({r.test})" for r in hit.itertuples()))
    return ", ".join(names[:top]) + (f" +{len(names) - top}" if len(names) > top else "")


# --- the peer: NannyML's CBPE on US Census employment ------------------------------------------------------------


def peer_census(chunk_size: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    if not PEER_PYTHON.exists():
        raise SystemExit(
            "the NannyML peer needs its own venv: python3.11 -m venv .venv/peers/nannyml && "
            ".venv/peers/nannyml/bin/pip install nannyml statsmodels"
        )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "nannyml.json"
        subprocess.run(
            [str(PEER_PYTHON), str(ROOT / "benchmarks/monitor_nannyml_peer.py"), str(out), str(chunk_size)],
            check=True,
            capture_output=True,
        )
        peer = json.loads(out.read_text())
    data = next((ROOT / ".venv/peers/nannyml/lib").glob("python3*/site-packages/nannyml/datasets/data"))
    ref = pd.read_parquet(data / "employment_MA_reference.pq")
    ana = pd.read_parquet(data / "employment_MA_analysis.pq").merge(
        pd.read_parquet(data / "employment_MA_analysis_target.pq"), on="id"
    )
    t0 = time.perf_counter()
    profile = build_profile(
        ref[[]], [], ref["predicted_probability"].to_numpy(), ref["employed"].to_numpy(), threshold=0.5
    )
    sizes = np.array([c["end"] - c["start"] + 1 for c in peer["chunks"]])
    win = Windows(
        np.repeat(np.arange(sizes.size), sizes),
        tuple(c["start"] for c in peer["chunks"]),
        tuple(c["end"] for c in peer["chunks"]),
        sizes,
        "count",
    )
    scores = ana["predicted_probability"].to_numpy()
    ours = estimate(scores, threshold=0.5, windows=win, calibration=profile if peer["needs_calibration"] else None)
    seconds = time.perf_counter() - t0
    raw = estimate(scores, threshold=0.5, windows=win)
    rows = []
    for i, c in enumerate(peer["chunks"]):
        rows.append(
            {
                "chunk": f"{c['start']}-{c['end']}",
                "NannyML estimated": c["estimated"],
                "medml estimated": ours.auroc[i].value,
                "difference (abs)": abs(ours.auroc[i].value - c["estimated"]),
                "medml, no recalibration": raw.auroc[i].value,
                "realised": c["realised"],
                "medml 95% range": f"{ours.auroc[i].low:.3f}-{ours.auroc[i].high:.3f}",
                "NannyML band": f"{c['lower']:.3f}-{c['upper']:.3f}",
            }
        )
    summary = {
        "nannyml": peer["nannyml"],
        "needs_calibration": peer["needs_calibration"],
        "chunks": len(rows),
        "max_diff": max(r["difference (abs)"] for r in rows),
        "max_diff_raw": max(abs(r["medml, no recalibration"] - r["NannyML estimated"]) for r in rows),
        "nannyml_seconds": peer["seconds"],
        "medml_seconds": seconds,
    }
    return rows, summary


# --- SUPPORT2: null streams and injected faults -------------------------------------------------------------------


def support_null(settings: Settings, seeds: int, orders: int) -> dict[str, Any]:
    ds = load_dataset("support2")
    patients = np.unique(ds.groups)
    null_rows, windows, estimate_rows = [], [], []
    base: dict[str, Any] = {}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        held = set(rng.choice(patients, size=int(0.3 * patients.size), replace=False))
        is_held = np.isin(ds.groups, list(held))
        model, profile = _train(ds.subset(np.flatnonzero(~is_held)), settings, f"support2-null-{seed}", seed)
        stream_idx = np.flatnonzero(is_held)
        X, y = ds.X.iloc[stream_idx].reset_index(drop=True), ds.binary_target.values[stream_idx].astype(float)
        scores = _scores(model, X)
        estimate_rows.append(
            _est_vs_real(f"SUPPORT2 held-out patients, seed {seed}", "none (null)", scores, y, profile)
        )
        for k in range(orders):
            order = np.random.default_rng(100 * seed + k).permutation(len(X))
            result = drift(profile, X.iloc[order].reset_index(drop=True), scores[order], window=WINDOW)
            frame = result.to_frame()
            full = frame[frame["n"] == WINDOW]
            windows.append(full)
            null_rows.append(
                {
                    "seed": seed,
                    "order": k,
                    "windows of 200": len(full),
                    "alarmed": int(full["alarm"].sum()),
                    "tests per window": int(full["n_tests"].iloc[0]),
                    "alarms name": "; ".join(f for f in full.loc[full["alarm"], "features"])[:120],
                }
            )
        if seed == 0:  # the faults go into this stream in its first random order (the file's order drifts)
            first = np.random.default_rng(0).permutation(len(X))
            base = {"X": X.iloc[first].reset_index(drop=True), "y": y[first], "model": model, "profile": profile}
            in_file_order = drift(profile, X, scores, window=WINDOW).to_frame()
            base["file_order"] = (int(in_file_order["alarm"].sum()), len(in_file_order))
    all_windows = pd.concat(windows)
    return {
        "rows": null_rows,
        "rate": float(all_windows["alarm"].mean()),
        "n_windows": len(all_windows),
        "estimates": estimate_rows,
        "base": base,
    }


def support_faults(base: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    X, y, model, profile = base["X"], base["y"], base["model"], base["profile"]
    rng = np.random.default_rng(7)
    faults: dict[str, tuple[pd.DataFrame, np.ndarray, set[str]]] = {}
    units = X.copy()
    units.loc[FAULT_AT:, "crea"] = units.loc[FAULT_AT:, "crea"] * 88.4
    faults["creatinine in umol/L (x88.4)"] = (units, y, {"crea"})
    stopped = X.copy()
    stopped.loc[FAULT_AT:, "sod"] = np.nan
    faults["sodium feed stops"] = (stopped, y, {"sod"})
    old = np.flatnonzero(X["age"].to_numpy() >= 75)
    picks = np.r_[np.arange(FAULT_AT), rng.choice(old, size=len(X) - FAULT_AT, replace=True)]
    faults["only patients aged >= 75"] = (X.iloc[picks].reset_index(drop=True), y[picks], {"age"})
    rows, estimates = [], []
    for label, (frame, yy, expected) in faults.items():
        scores = _scores(model, frame)
        result = drift(profile, frame, scores, window=WINDOW)
        first = FAULT_AT // WINDOW
        named = result.features_named(first)
        after = sum(w >= first for w in result.alarmed_windows)
        rows.append(
            {
                "fault (from row 600)": label,
                "alarms before": sum(1 for w in result.alarmed_windows if w < first),
                "alarm in its first window": first in result.alarmed_windows,
                "names the feature": expected <= named,
                "named in that window": _named(result, first),
                "windows alarmed after": f"{after}/{len(result.windows) - first}",
            }
        )
        if label.startswith("only patients"):
            later = slice(FAULT_AT, None)
            estimates.append(
                _est_vs_real(
                    "SUPPORT2, aged >= 75 (after the change)",
                    "covariate (by construction)",
                    scores[later],
                    yy[later],
                    profile,
                )
            )
    return rows, estimates


def support_case_mix(settings: Settings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    ds = load_dataset("support2")
    group = ds.X["dzgroup"].astype(str).to_numpy()
    dev = np.isin(group, DEV_GROUPS)
    model, profile = _train(ds.subset(np.flatnonzero(dev)), settings, "support2-casemix")
    idx = np.random.default_rng(3).permutation(np.flatnonzero(~dev))
    X, y = ds.X.iloc[idx].reset_index(drop=True), ds.binary_target.values[idx].astype(float)
    scores = _scores(model, X)
    result = drift(profile, X, scores, window=WINDOW)
    rows = [
        {
            "stream": f"SUPPORT2 {', '.join(sorted(set(group[~dev])))} scored by a model of {', '.join(DEV_GROUPS)}",
            "n": len(X),
            "alarm in window 0": 0 in result.alarmed_windows,
            "windows alarmed": f"{len(result.alarmed_windows)}/{len(result.windows)}",
            "named in window 0": _named(result, 0),
        }
    ]
    estimates = [_est_vs_real("SUPPORT2 held-out disease groups (all)", "case mix", scores, y, profile)]
    for g in sorted(set(group[~dev])):
        inside = X["dzgroup"].astype(str).to_numpy() == g
        estimates.append(_est_vs_real(f"  dzgroup {g}", "case mix", scores[inside], y[inside], profile))
    return rows, estimates


def heart_sites(settings: Settings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    ds = load_dataset("heart-cleveland")
    model, profile = _train(ds, settings, "heart-cleveland-monitor")
    rows, estimates = [], []
    for site in ("hungary", "switzerland", "va"):
        other = load_dataset(f"heart-{site}")
        X, y = other.X.reset_index(drop=True), other.binary_target.values.astype(float)
        scores = _scores(model, X)
        result = drift(profile, X, scores, window=WINDOW)
        rows.append(
            {
                "site": site,
                "n": len(X),
                "alarm in window 0": 0 in result.alarmed_windows,
                "windows alarmed": f"{len(result.alarmed_windows)}/{len(result.windows)}",
                "named in window 0": _named(result, 0),
            }
        )
        estimates.append(_est_vs_real(f"heart: Cleveland model at {site}", "site", scores, y, profile))
    return rows, estimates


# --- speed ------------------------------------------------------------------------------------------------------


def speed(n: int, d: int, windows: tuple[int, ...]) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    features = [FeatureSpec(f"x{i}", "numeric") for i in range(d)]

    def frame(rows: int) -> pd.DataFrame:
        values = rng.standard_normal((rows, d))
        values[rng.random((rows, d)) < 0.1] = np.nan
        return pd.DataFrame(values, columns=[f.name for f in features])

    ref_scores = rng.random(20_000)
    profile = build_profile(frame(20_000), features, ref_scores, rng.random(20_000) < ref_scores, threshold=0.5)
    X, scores = frame(n), rng.random(n)
    rows = []
    for window in windows:
        load = os.getloadavg()[0]
        c0, t0 = os.times(), time.perf_counter()
        result = drift(profile, X, scores, window=window)
        t1 = time.perf_counter()
        estimate(scores, threshold=0.5, windows=window)
        t2, c1 = time.perf_counter(), os.times()
        rows.append(
            {
                "predictions": n,
                "features": d,
                "window": window,
                "PCA components": len(profile.pca.components) if profile.pca else 0,
                "drift s": t1 - t0,
                "estimate s": t2 - t1,
                "total wall s": t2 - t0,
                "CPU s (user+sys)": (c1.user - c0.user) + (c1.system - c0.system),
                "load average before": load,
                "null windows alarmed": f"{len(result.alarmed_windows)}/{len(result.windows)}",
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--orders", type=int, default=4)
    parser.add_argument("--speed-rows", type=int, default=1_000_000)
    parser.add_argument("--skip", nargs="*", default=[], choices=["peer", "null", "sites", "casemix", "speed"])
    args = parser.parse_args()
    out: list[str] = [
        "# Monitoring benchmark (issue 14)\n",
        f"`python benchmarks/bench_monitor.py` on {platform.node()} ({os.cpu_count()} CPUs, shared with other "
        f"work while it ran; load average at start {os.getloadavg()[0]:.1f}), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.\n",
        f"Alarm rule: {AlarmRule().describe()}. Windows of {WINDOW} predictions.\n",
    ]

    def emit(text: str) -> None:
        print(text, flush=True)
        out.append(text)

    estimates: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), data_root=get_settings().data_root)
        if "peer" not in args.skip:
            rows, s = peer_census(5000)
            emit(
                f"## NannyML's CBPE on US Census employment (nannyml {s['nannyml']}, its own venv)\n\n"
                f"{s['chunks']} analysis chunks of 5,000. NannyML decided to recalibrate: {s['needs_calibration']}; "
                f"medml used the reference data's isotonic map the same way. Largest |medml - NannyML|: "
                f"**{s['max_diff']:.2e}** (goal <= {GOAL_PEER}); without the recalibration {s['max_diff_raw']:.4f}. "
                f"Time: NannyML fit+estimate {s['nannyml_seconds']:.1f} s, medml profile+estimate "
                f"{s['medml_seconds']:.1f} s.\n\n" + _table(rows)
            )
        if "null" not in args.skip:
            null = support_null(settings, args.seeds, args.orders)
            emit(
                f"## Null streams: SUPPORT2 patients held out at random ({args.seeds} seeds x {args.orders} orders)\n\n"
                f"Alarmed windows: **{null['rate']:.1%}** of {null['n_windows']} full windows (goal <= 5%).\n\n"
                + _table(null["rows"])
            )
            estimates += null["estimates"]
            faults, fault_est = support_faults(null["base"])
            estimates += fault_est
            alarmed, total = null["base"]["file_order"]
            emit(
                "## Faults injected into the seed-0 null stream (random order 0) from row 600 (window 3)\n\n"
                + _table(faults)
                + f"\nThe same held-out patients in the order of the SUPPORT2 file (not shuffled) alarm in {alarmed} "
                f"of {total} windows: the file's order carries drift of its own, so null streams are shuffled.\n"
            )
        if "sites" not in args.skip:
            rows, est = heart_sites(settings)
            estimates += est
            emit("## Site shift: the Cleveland heart model at the other three sites\n\n" + _table(rows))
        if "casemix" not in args.skip:
            rows, est = support_case_mix(settings)
            estimates += est
            emit("## Case-mix shift: SUPPORT2 disease groups\n\n" + _table(rows))
    if estimates:
        emit(
            "## Estimated (CBPE) against realised AUROC, whole streams\n\n"
            "The estimate assumes the scores stay calibrated on the new population: where the observed event rate "
            "leaves the range the scores predict, the relation of features to outcome moved (concept or label "
            "shift) and the estimate is not to be trusted; only realised performance shows it.\n\n" + _table(estimates)
        )
    if estimates:
        emit(
            "### Where the estimate fails\n\n"
            "CBPE reads performance off the scores alone, so it is right only while the scores stay calibrated on "
            "the population scored. Rows whose observed event rate falls outside the range the scores predict "
            "(`rate within range: no`) are streams where the outcome's relation to the inputs (or its base rate) "
            "moved: concept or label shift. There the estimated AUROC can land near the realised one by chance "
            "(a discrimination that happens to carry over) or miss it widely; either way it must not be trusted, "
            "and `medml monitor` should show realised performance as soon as outcomes arrive. The calibration check "
            "(expected against observed events) is the signal that the estimate has stopped holding.\n"
        )
    if "speed" not in args.skip:
        emit(
            "## Speed\n\nSynthetic: 225 numeric features (10% missing, independent, so the PCA keeps 137 components: "
            "the worst case), profile from 20,000 rows. Wall time is on 2 CPUs shared with other work (the load "
            "average says how shared); CPU time is what the work itself used.\n\n"
            + _table(speed(args.speed_rows, 225, (10_000, 200)))
        )
    if args.out:
        args.out.write_text("\n".join(out))
        print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
