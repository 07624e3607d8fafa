"""Performance while outcomes are unknown (estimated) and once they are in (realised), window by window.

Estimated: confidence-based performance estimation (CBPE; NannyML, "Estimating model performance without ground
truth", docs.nannyml.com, after Garg et al.): if the scores are calibrated on the population scored, each
patient is an event with probability equal to the score, so the confusion matrix at every threshold has an
expected value. The estimated AUROC is the area under the expected ROC curve (computed as NannyML's
``estimate_roc_auc``), the expected Brier score is the mean of ``p (1 - p)``, the expected PPV at the deployed
threshold the mean score of the flagged patients. The interval of each is the range in which the realised value
would fall (2.5th to 97.5th percentile) if outcomes were drawn from the scores (a parametric bootstrap of
``n_draws`` outcome vectors): it is the uncertainty of a finite window, and it assumes calibration. Where the
relation between features and outcome changes (concept shift) the estimate is wrong, and only realised performance
shows it. Scores can first be passed through the development data's isotonic calibration map (``calibration=``
the reference profile), as NannyML does when its calibration check asks for it.

Realised: the ``evaluate`` functions on the predictions whose outcomes have arrived, with percentile bootstrap
intervals, by window and by subgroup.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from medml.errors import MonitorError
from medml.evaluate import Estimate, auroc, bootstrap_many, brier, ppv
from medml.monitor.profile import ReferenceProfile
from medml.monitor.windows import DEFAULT_WINDOW, Windows, windows_of

__all__ = ["EstimateResult", "RealisedResult", "cbpe_auroc", "estimate", "realised"]

DEFAULT_DRAWS = 200
# outcome draws generated at once, bounds memory at about 16 MB
_DRAW_ELEMENTS = 2_000_000


@dataclass(frozen=True)
class EstimateResult:
    """Estimated AUROC, expected Brier score, PPV at ``threshold`` and expected prevalence per window, each an
    :class:`~medml.evaluate.Estimate` (value, low, high)."""

    windows: Windows
    threshold: float | None
    auroc: tuple[Estimate, ...]
    brier: tuple[Estimate, ...]
    ppv: tuple[Estimate, ...]
    prevalence: tuple[Estimate, ...]
    level: float

    def to_frame(self) -> pd.DataFrame:
        out = self.windows.frame()
        for name in ("auroc", "brier", "ppv", "prevalence"):
            ests: tuple[Estimate, ...] = getattr(self, name)
            out[name] = [e.value for e in ests]
            out[f"{name}_low"] = [e.low for e in ests]
            out[f"{name}_high"] = [e.high for e in ests]
        return out


@dataclass(frozen=True)
class RealisedResult:
    """Realised performance per window (``frame``) and per subgroup (``subgroups``; empty without subgroups)."""

    frame: pd.DataFrame
    subgroups: pd.DataFrame

    def to_frame(self) -> pd.DataFrame:
        return self.frame


def cbpe_auroc(calibrated: npt.ArrayLike, scores: npt.ArrayLike | None = None) -> float:
    """CBPE's estimated AUROC: order patients by ``scores`` (the model's, default the calibrated ones), take the
    calibrated probabilities as expected true positives, and integrate the expected ROC curve (NannyML's
    ``estimate_roc_auc``; ties in the scores carry equal calibrated values, so their order does not matter)."""
    p = np.asarray(calibrated, dtype=float)
    s = p if scores is None else np.asarray(scores, dtype=float)
    order = np.argsort(s, kind="stable")[::-1]
    tps = np.r_[0.0, np.cumsum(p[order])]
    fps = np.arange(p.size + 1) - tps
    if tps[-1] <= 0 or fps[-1] <= 0:
        return float("nan")
    tpr, fpr = tps / tps[-1], fps / fps[-1]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def _midranks(s: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    from scipy.stats import rankdata

    return np.asarray(rankdata(s), dtype=float)


def _draws(
    p: npt.NDArray[np.float64], scores: npt.NDArray[np.float64], threshold: float | None, n_draws: int, rng: Any
) -> dict[str, npt.NDArray[np.float64]]:
    """Realised AUROC, Brier, PPV and prevalence of ``n_draws`` outcome vectors drawn from ``p``."""
    n = p.size
    ranks = _midranks(scores)
    flagged = (scores >= threshold).astype(float) if threshold is not None else np.zeros(n)
    n_flagged = flagged.sum()
    out: dict[str, list[npt.NDArray[np.float64]]] = {k: [] for k in ("auroc", "brier", "ppv", "prevalence")}
    rows = max(1, min(n_draws, _DRAW_ELEMENTS // max(n, 1)))
    sum_p2 = float(np.sum(p * p))
    for start in range(0, n_draws, rows):
        r = min(rows, n_draws - start)
        y = (rng.random((r, n)) < p).astype(float)
        n1 = y.sum(axis=1)
        n0 = n - n1
        with np.errstate(invalid="ignore", divide="ignore"):
            out["auroc"].append((y @ ranks - n1 * (n1 + 1) / 2.0) / (n1 * n0))
            out["ppv"].append((y @ flagged) / n_flagged if n_flagged else np.full(r, np.nan))
        out["brier"].append((sum_p2 + y @ (1.0 - 2.0 * p)) / n)
        out["prevalence"].append(n1 / n)
    return {k: np.concatenate(v) for k, v in out.items()}


def _interval(value: float, draws: npt.NDArray[np.float64], level: float) -> Estimate:
    finite = draws[np.isfinite(draws)]
    if not np.isfinite(value) or finite.size < max(1, draws.size // 2):
        return Estimate(value, float("nan"), float("nan"))
    a = (1.0 - level) / 2.0
    low, high = np.quantile(finite, [a, 1.0 - a])
    return Estimate(value, float(low), float(high))


def _check_scores(scores: npt.ArrayLike, what: str) -> npt.NDArray[np.float64]:
    s = np.asarray(scores, dtype=float)
    if s.ndim != 1:
        raise MonitorError(f"{what} needs a flat list of scores, got shape {s.shape}")
    bad = ~np.isfinite(s) | (s < 0) | (s > 1)
    if bad.any():
        raise MonitorError(
            f"{what}: {int(bad.sum())} scores are not risks in [0, 1] (first at position {int(np.argmax(bad))})",
            "pass the model's calibrated risks",
        )
    return s


def estimate(
    scores: npt.ArrayLike,
    *,
    threshold: float | None,
    windows: int | str | Windows = DEFAULT_WINDOW,
    times: Any = None,
    calibration: ReferenceProfile | None = None,
    n_draws: int = DEFAULT_DRAWS,
    level: float = 0.95,
    seed: int = 0,
) -> EstimateResult:
    """CBPE per window of ``scores`` (see the module docstring); ``calibration``: a reference profile whose
    isotonic map first recalibrates the scores."""
    s = _check_scores(scores, "performance estimation")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise MonitorError(f"the threshold must be a risk in [0, 1], got {threshold}")
    if n_draws < 1 or not 0.0 < level < 1.0:
        raise MonitorError(f"n_draws must be 1 or more and level in (0, 1), got {n_draws} and {level}")
    p = s if calibration is None else calibration.recalibrate(s)
    win = windows_of(s.size, windows, times)
    rng = np.random.default_rng(seed)
    order = np.argsort(win.ids, kind="stable")
    bounds = np.r_[0, np.cumsum(win.n)]
    res: dict[str, list[Estimate]] = {k: [] for k in ("auroc", "brier", "ppv", "prevalence")}
    for w in range(len(win)):
        rows = order[bounds[w] : bounds[w + 1]]
        pw, sw = p[rows], s[rows]
        flagged = pw[sw >= threshold] if threshold is not None else np.empty(0)
        values = {
            "auroc": cbpe_auroc(pw, sw),
            "brier": float(np.mean(pw * (1 - pw))),
            "ppv": float(flagged.mean()) if flagged.size else float("nan"),
            "prevalence": float(pw.mean()),
        }
        draws = _draws(pw, sw, threshold, n_draws, rng)
        for k, v in values.items():
            res[k].append(_interval(v, draws[k], level))
    return EstimateResult(
        win, threshold, tuple(res["auroc"]), tuple(res["brier"]), tuple(res["ppv"]), tuple(res["prevalence"]), level
    )


def _realised_row(
    y: npt.NDArray[np.float64],
    s: npt.NDArray[np.float64],
    threshold: float | None,
    n_boot: int,
    seed: int,
    level: float,
) -> dict[str, Any]:
    row: dict[str, Any] = {"n_outcomes": int(y.size), "events": int(y.sum()) if y.size else 0}
    metrics: dict[str, Any] = {"brier": brier}
    both = y.size > 0 and 0 < y.sum() < y.size
    if both:
        metrics["auroc"] = auroc
    if threshold is not None and np.any(s >= threshold):
        t = float(threshold)
        metrics["ppv"] = lambda yy, pp: ppv(yy, pp, t)
    est = bootstrap_many(metrics, y, s, n_boot=n_boot, seed=seed, level=level) if y.size else {}
    for name in ("auroc", "brier", "ppv"):
        e = est.get(name)
        row[name] = e.value if e else float("nan")
        row[f"{name}_low"] = e.low if e else float("nan")
        row[f"{name}_high"] = e.high if e else float("nan")
    row["prevalence"] = float(y.mean()) if y.size else float("nan")
    return row


def realised(
    y: npt.ArrayLike,
    scores: npt.ArrayLike,
    *,
    threshold: float | None,
    windows: int | str | Windows = DEFAULT_WINDOW,
    times: Any = None,
    subgroups: Mapping[str, npt.ArrayLike] | pd.DataFrame | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> RealisedResult:
    """Realised AUROC, Brier score and PPV at ``threshold`` with bootstrap intervals, per window (windows cut on all
    predictions, so that they line up with the estimate's) and per subgroup, from the predictions whose outcome
    ``y`` has arrived (NaN: not yet)."""
    s = _check_scores(scores, "realised performance")
    yy = np.asarray(y, dtype=float)
    if yy.shape != s.shape:
        raise MonitorError(f"realised performance needs one outcome per score: {yy.size} outcomes, {s.size} scores")
    known = ~np.isnan(yy)
    if np.any(known & (yy != 0) & (yy != 1)):
        raise MonitorError("outcomes must be 0, 1 or missing (not yet known)")
    win = windows_of(s.size, windows, times)
    rows = []
    for w in range(len(win)):
        inside = (win.ids == w) & known
        rows.append(_realised_row(yy[inside], s[inside], threshold, n_boot, seed, level))
    frame = pd.concat([win.frame(), pd.DataFrame(rows)], axis=1)
    groups: list[dict[str, Any]] = []
    if subgroups is not None:
        table = subgroups if isinstance(subgroups, pd.DataFrame) else pd.DataFrame(dict(subgroups))
        if len(table) != s.size:
            raise MonitorError(f"subgroups give {len(table)} rows for {s.size} predictions")
        for column in table.columns:
            values = table[column].astype("string").fillna("(missing)").to_numpy()
            for level_ in sorted(set(values)):
                inside = (values == level_) & known
                groups.append(
                    {
                        "attribute": str(column),
                        "group": str(level_),
                        **_realised_row(yy[inside], s[inside], threshold, n_boot, seed, level),
                    }
                )
    return RealisedResult(frame, pd.DataFrame(groups))
