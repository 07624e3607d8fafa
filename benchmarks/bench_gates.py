"""Promotion gates and retraining, measured on real data.

1. The paired gate's error rates. SUPPORT2's patients are split once: two disjoint training halves of 1,500 patients
   each, and an evaluation population of the other 6,105. The champion is a logistic regression fitted on one half;
   the challengers are (a) the same model kind fitted on the other half ("equal": their AUROCs on the population
   differ by the printed amount), (b) the champion's own risk with noise added to its logit, tuned until its AUROC
   on the population is exactly ``margin`` below the champion's ("at the margin": the non-inferiority boundary) and
   (c) 0.05 below ("worse"). Each repetition draws ``--n`` new patients from the population without replacement and
   runs the ``auroc_difference`` gate of the shipped gates.yaml on them. The stated rates: a challenger ``margin``
   worse passes at most ``alpha`` of the time (type I error); an equal one passes with the power that DeLong's
   standard error of the difference predicts (computed on the population, scaled to ``--n`` patients).
2. Retraining at a new site. Site shift: the Cleveland model scoring the VA patients; case mix: a SUPPORT2 model
   developed on four disease groups (``dzgroup``) scoring the other four. The new site's patients are dated in
   order of admission (the file's order, then ``--orders - 1`` random orders), ``medml retrain``'s code re-fits on
   the development data plus the first half, and both models are measured on the second half, which the retrained
   model never saw. The AUROC lost there is the champion's test AUROC at its development site minus its AUROC on
   those patients; the part recovered is how much of that the retrained model wins back.

    python benchmarks/bench_gates.py --out benchmarks/results-monitor-gates.md
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from medml.config import Settings, get_settings
from medml.data.task import TaskDataset
from medml.evaluate.discrimination import auroc
from medml.models import make_model
from medml.monitor.gates import AurocDifference, auroc_difference_verdict, read_gates
from medml.monitor.promotion import retrain
from medml.pipelines.catalogue import load_dataset
from medml.pipelines.tabular import TrainConfig, train
from medml.registry.tracking import set_aliases

#: SUPPORT2's disease groups the case-mix model is developed on (the chronic illnesses and the cancers); it then
#: scores the acute ones held back (ARF/MOSF with sepsis, MOSF with malignancy, coma). The first split tried, four
#: groups each way (ARF/MOSF w/Sepsis, CHF, COPD, MOSF w/Malig developed), lost no AUROC on the other four (0.853 at
#: the development site, 0.881 on the held-back groups), so there was nothing to recover there.
DEV_GROUPS = ("CHF", "COPD", "Cirrhosis", "Colon Cancer", "Lung Cancer")


# --- 1. the paired gate's error rates ---------------------------------------------------------------------------


def delong_se(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """DeLong, DeLong and Clarke-Pearson (1988): the standard error of AUROC(a) - AUROC(b) on the same patients."""
    pos, neg = y == 1, y == 0
    v10, v01 = [], []
    for s in (a, b):
        x, z = np.sort(s[neg]), s[pos]
        # placement values by ranks (ties count one half): fraction of non-events below each event, and so on
        below = (np.searchsorted(x, z, "left") + np.searchsorted(x, z, "right")) / 2 / neg.sum()
        zs = np.sort(z)
        above = 1 - (np.searchsorted(zs, s[neg], "left") + np.searchsorted(zs, s[neg], "right")) / 2 / pos.sum()
        v10.append(below)
        v01.append(above)
    s10, s01 = np.cov(np.vstack(v10)), np.cov(np.vstack(v01))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / pos.sum() + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / neg.sum()
    return float(np.sqrt(var))


def _noisy(p: np.ndarray, sd: float, z: np.ndarray) -> np.ndarray:
    logit = np.log(p / (1 - p))
    return 1 / (1 + np.exp(-(logit + sd * z)))


def _noise_for(y: np.ndarray, p: np.ndarray, z: np.ndarray, drop: float) -> float:
    """The noise sd on the logit that lowers the population AUROC by ``drop`` (bisection)."""
    target = auroc(y, p) - drop
    lo, hi = 0.0, 10.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if auroc(y, _noisy(p, mid, z)) > target else (lo, mid)
    return (lo + hi) / 2


def gate_error_rates(reps: int, n: int, seed: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    gate = next(g for g in read_gates().gates if isinstance(g, AurocDifference))
    ds = load_dataset("support2")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ds))
    half_a, half_b, population = order[:1500], order[1500:3000], order[3000:]
    y_all = ds.binary_target.values

    def fit(rows: np.ndarray) -> Any:
        part = ds.subset(rows)
        return make_model("logistic", ds.features, {}, seed=0).fit(part.X, part.binary_target.values)

    pop = ds.subset(population)
    y = y_all[population].astype(int)
    champion = fit(half_a).predict_proba(pop.X)[:, 1]
    other = fit(half_b).predict_proba(pop.X)[:, 1]
    z = np.random.default_rng(seed + 1).normal(size=y.size)
    # the other fit is a little better or worse by chance: its logit gets the noise that makes it exactly equal
    ahead = auroc(y, other) - auroc(y, champion)
    equal = _noisy(other, _noise_for(y, other, z[::-1], ahead), z[::-1]) if ahead > 0 else other
    challengers = {
        "equal (another fit, made equal)": equal,
        f"at the margin ({gate.margin:g} worse)": _noisy(champion, _noise_for(y, champion, z, gate.margin), z),
        "worse (0.05 worse)": _noisy(champion, _noise_for(y, champion, z, 0.05), z),
    }
    fpc = np.sqrt(1 - n / y.size)  # drawing n of the population's patients without replacement
    zq = norm.ppf(1 - gate.alpha)
    rows = []
    draws = np.random.default_rng(seed + 2)
    samples = [draws.choice(y.size, size=n, replace=False) for _ in range(reps)]
    for label, p_new in challengers.items():
        true = auroc(y, p_new) - auroc(y, champion)
        se = delong_se(y, p_new, champion) * np.sqrt(y.size / n)
        predicted = float(norm.cdf((true + gate.margin - zq * se) / (se * fpc)))
        t0 = time.perf_counter()
        passed = [auroc_difference_verdict(gate, y[i], p_new[i], champion[i])[0] for i in samples]
        rate = float(np.mean(passed))
        low, high = _wilson(int(np.sum(passed)), reps)
        rows.append(
            {
                "challenger": label,
                "true difference": f"{true:+.4f}",
                "SE at n (DeLong)": f"{se:.4f}",
                "predicted pass rate": f"{predicted:.3f}",
                "observed pass rate (95% CI)": f"{rate:.3f} ({low:.3f}-{high:.3f})",
                "seconds per gate": f"{(time.perf_counter() - t0) / reps:.3f}",
            }
        )
    setup = {
        "population": y.size,
        "events": int(y.sum()),
        "champion AUROC": auroc(y, champion),
        "gate": gate,
        "n": n,
        "reps": reps,
    }
    return rows, setup


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


# --- 2. retraining at a new site ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Scenario:
    label: str
    name: str
    dev: TaskDataset
    new: TaskDataset
    base: bool | TaskDataset


def scenarios() -> list[Scenario]:
    support = load_dataset("support2")
    in_dev = support.X["dzgroup"].astype(str).isin(DEV_GROUPS).to_numpy()
    dev = dataclasses.replace(support.subset(np.flatnonzero(in_dev)), name="support2-dev-groups")
    held = dataclasses.replace(support.subset(np.flatnonzero(~in_dev)), name="support2-held-back-groups")
    cleveland, va = load_dataset("heart-cleveland"), load_dataset("heart-va")
    return [
        Scenario("site: Cleveland -> VA", "heart", cleveland, va, True),
        Scenario("site: Cleveland -> VA, re-fit on VA alone", "heart-va-only", cleveland, va, False),
        Scenario("case mix: SUPPORT2 chronic + cancer -> acute groups", "support2-casemix", dev, held, dev),
    ]


def site_cv_auroc(ds: TaskDataset, kind: str, seed: int, folds: int = 5) -> float:
    """What a model of ``kind`` (default settings) developed at the new site itself reaches there: the mean AUROC of
    a patient-grouped ``folds``-fold cross-validation on all its patients (a ceiling for what retraining can win)."""
    from medml.data.splits import patient_kfold

    values = []
    for train_rows, test_rows in patient_kfold(ds.groups, ds.binary_target.values, k=folds, seed=seed):
        part, held = ds.subset(train_rows), ds.subset(test_rows)
        model = make_model(kind, ds.features, {}, seed=seed).fit(part.X, part.binary_target.values)
        values.append(auroc(held.binary_target.values, model.predict_proba(held.X)[:, 1]))
    return float(np.mean(values))


def retraining_recovery(
    settings: Settings, kind: str, orders: int, budget: float, trials: int, seed: int
) -> list[dict[str, Any]]:
    gates = read_gates()
    rows = []
    for sc in scenarios():
        config = TrainConfig(model=kind, budget_seconds=budget, max_trials=trials, n_boot=200, seed=0, name=sc.name)
        champion = train(sc.dev, config, settings).bundle
        set_aliases(sc.name, {"champion": champion.version}, settings)
        dev_auroc = champion.metadata.headline.auroc.value if champion.metadata.headline else float("nan")
        ceiling = site_cv_auroc(sc.new, kind, seed)
        rng = np.random.default_rng(seed)
        for k in range(orders):
            order = np.arange(len(sc.new)) if k == 0 else rng.permutation(len(sc.new))
            times = np.empty(len(sc.new), dtype="datetime64[s]")
            times[order] = np.datetime64("1990-01-01") + np.arange(len(sc.new)).astype("timedelta64[D]")
            half = len(sc.new) // 2
            until = pd.Timestamp(np.sort(times)[half - 1])
            later = order[half:]
            t0 = time.perf_counter()
            done = retrain(
                sc.name,
                until,
                sc.new,
                times,
                settings,
                gates,
                base=sc.base,
                budget_seconds=budget,
                max_trials=trials,
                n_boot=200,
            )
            seconds = time.perf_counter() - t0
            late = sc.new.subset(later)
            yl = late.binary_target.values
            before = auroc(yl, champion.predict_proba(late.X[champion.feature_names])[:, 1])
            after = auroc(yl, done.bundle.predict_proba(late.X[done.bundle.feature_names])[:, 1])
            lost = dev_auroc - before
            rows.append(
                {
                    "shift": sc.label,
                    "admission order": "file" if k == 0 else f"random {k}",
                    "refit on": (f"{len(sc.dev):,} dev + " if sc.base is not False else "")
                    + f"{done.rows_until:,} new",
                    "judged on (never seen)": f"{len(later):,}",
                    "dev test AUROC": f"{dev_auroc:.3f}",
                    "champion there": f"{before:.3f}",
                    "retrained there": f"{after:.3f}",
                    "site's own CV AUROC": f"{ceiling:.3f}",
                    "lost": f"{lost:.3f}",
                    "recovered": f"{(after - before) / lost:.0%}" if lost > 0 else "-",
                    "gates": _verdict(done),
                    "seconds": f"{seconds:.0f}",
                    "_recovered": (after - before) / lost if lost > 0 else float("nan"),
                    "_winnable": (after - before) / (ceiling - before) if ceiling > before else float("nan"),
                }
            )
            set_aliases(sc.name, {"champion": champion.version}, settings)  # each order starts from the champion
            print(rows[-1], flush=True)
    return rows


def _verdict(done: Any) -> str:
    failed = done.promotion.report.failed
    return "pass" if not failed else "fail: " + ", ".join(r.gate for r in failed)


def _table(rows: list[dict[str, Any]]) -> str:
    keys = [k for k in rows[0] if not k.startswith("_")]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--n", type=int, default=1000, help="patients per repetition of the gate")
    ap.add_argument("--orders", type=int, default=5, help="admission orders per retraining scenario")
    ap.add_argument("--model", default="logistic")
    ap.add_argument("--budget-seconds", type=float, default=10.0)
    ap.add_argument("--max-trials", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-gate", action="store_true")
    ap.add_argument("--skip-retrain", action="store_true")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    parts = [
        "# Promotion gates and retraining (issue 14)",
        "",
        f"`python benchmarks/bench_gates.py {' '.join(sys.argv[1:])}` on {platform.machine()}, "
        f"{os.cpu_count()} CPUs (a machine shared with other jobs: the seconds are not clean timings), "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}.",
    ]
    if not args.skip_gate:
        t0 = time.perf_counter()
        rows, setup = gate_error_rates(args.reps, args.n, args.seed)
        g = setup["gate"]
        parts += [
            "",
            "## 1. The paired AUROC gate: error rates over repeated samples of patients",
            "",
            f"SUPPORT2, in-hospital death. Evaluation population: {setup['population']:,} patients "
            f"({setup['events']:,} deaths); champion AUROC there {setup['champion AUROC']:.3f}. Gate: "
            f"`auroc_difference` of the shipped gates.yaml (margin {g.margin:g}, alpha {g.alpha:g} one-sided, "
            f"{g.n_boot} paired resamples stratified by outcome). {setup['reps']} repetitions of {setup['n']:,} "
            f"patients each, drawn anew without replacement. Stated rates: a challenger {g.margin:g} worse passes at "
            f"most {g.alpha:.0%} of the time; an equal one passes at the predicted rate (normal approximation with "
            "DeLong's SE).",
            "",
            _table(rows),
            "",
            f"({time.perf_counter() - t0:.0f} s in all.)",
        ]
    if not args.skip_retrain:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(home=Path(tmp) / "home", data_root=get_settings().data_root)
            rows = retraining_recovery(
                settings, args.model, args.orders, args.budget_seconds, args.max_trials, args.seed
            )
        summary = []
        for label in dict.fromkeys(r["shift"] for r in rows):
            vals = np.array([r["_recovered"] for r in rows if r["shift"] == label], dtype=float)
            winnable = np.array([r["_winnable"] for r in rows if r["shift"] == label], dtype=float)
            summary.append(
                {
                    "shift": label,
                    "recovered, file order": f"{vals[0]:.0%}",
                    f"median over {vals.size} orders": f"{np.nanmedian(vals):.0%}",
                    "range": f"{np.nanmin(vals):.0%} to {np.nanmax(vals):.0%}",
                    "goal (>= 80%)": "met" if np.nanmedian(vals) >= 0.8 else "NOT met",
                    "median share of the winnable part": f"{np.nanmedian(winnable):.0%}"
                    if np.isfinite(winnable).any()
                    else "- (nothing winnable)",
                }
            )
        parts += [
            "",
            "## 2. Retraining at the new site: how much of the lost AUROC comes back",
            "",
            f"Model kind `{args.model}` (search budget {args.budget_seconds:g} s, at most {args.max_trials} trials), "
            "re-fitted by `medml.monitor.promotion.retrain` (the code of `medml retrain`) on the development data, "
            "with its champion's split kept, plus the first half of the new site's patients by admission date; "
            "judged on the second half. `gates` is the verdict of the shipped gates.yaml against the champion on every "
            "patient neither model saw (both test parts and the second half). `site's own CV AUROC`: a model of the "
            "same kind with default settings, 5-fold cross-validated on all the new site's patients: about what a "
            "model developed there reaches, so the part of the loss that any retraining could win back. The winnable "
            "part is that AUROC minus the champion's there; its share is what retraining won of it.",
            "",
            _table(summary),
            "",
            _table(rows),
        ]
    text = "\n".join(parts) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
