"""The survival metrics behind :mod:`medml.evaluate.survival` (see there for the conventions): input checks,
Kaplan-Meier, concordance, the time-dependent AUC, the Brier score, calibration at a horizon, D-calibration and
Kaplan-Meier curves by risk group. Plain functions on arrays."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from medml.errors import DataError

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: risks closer than this count as tied (scikit-survival's ``tied_tol``)
TIED_TOL = 1e-8
#: the Brier grid: percentiles 5 to 81 of the observed times, as in scikit-survival's user guide
IBS_PERCENTILES = tuple(float(p) for p in np.linspace(5, 81, 15))
#: elements of one block of a pair matrix (about 32 MB of float64)
_BLOCK = 4_000_000


# --- input checks -------------------------------------------------------------------------------------------


def check_survival(
    time: npt.ArrayLike, event: npt.ArrayLike, *, what: str = "survival data"
) -> tuple[FloatArray, BoolArray]:
    """``(time, event)`` as float and bool arrays, or a DataError saying what is wrong: times must be numbers
    above zero, events 0/1 (or booleans), and at least one event must have been observed."""
    t_raw = np.asarray(time)
    e_raw = np.asarray(event)
    if t_raw.ndim != 1 or e_raw.shape != t_raw.shape:
        raise DataError(f"{what}: time and event must be 1-D of equal length, got {t_raw.shape} and {e_raw.shape}")
    if t_raw.size == 0:
        raise DataError(f"{what}: no patients", "evaluate on a non-empty set")
    try:
        t = t_raw.astype(np.float64)
    except (TypeError, ValueError):
        bad = next(v for v in t_raw if not _is_number(v))
        raise DataError(f"{what}: times must be numbers, found {bad!r}", "give follow-up times in days") from None
    if not np.isfinite(t).all():
        raise DataError(f"{what}: {int((~np.isfinite(t)).sum())} missing or infinite times", "drop those patients")
    if (t <= 0).any():
        raise DataError(
            f"{what}: {int((t <= 0).sum())} times are zero or negative (smallest {t.min():g})",
            "times are days from the index time to the event or censoring and must be above zero",
        )
    if e_raw.dtype == bool:
        e = e_raw
    else:
        try:
            ef = e_raw.astype(np.float64)
        except (TypeError, ValueError):
            ef = np.full(e_raw.shape, np.nan)
        if not np.isin(ef, (0.0, 1.0)).all():
            bad_values = sorted({str(v) for v, ok in zip(e_raw, np.isin(ef, (0.0, 1.0)), strict=True) if not ok})
            raise DataError(
                f"{what}: the event indicator must be 0 (censored) or 1 (event), found {', '.join(bad_values[:3])}",
                "map the event column to 0/1 first",
            )
        e = ef.astype(bool)
    if not e.any():
        raise DataError(
            f"{what}: every one of the {e.size} patients is censored: no event was observed",
            "a survival model needs observed events; check the event column",
        )
    return t, e


def _is_number(v: Any) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def check_horizons(horizons: Sequence[float], time: FloatArray, *, what: str = "the data") -> tuple[float, ...]:
    """Horizons as sorted floats; each must lie before the last follow-up time of ``time``."""
    hs = tuple(sorted({float(h) for h in horizons}))
    if not hs:
        raise DataError("no horizons given", "pass e.g. --horizons 180,365,730 (days)")
    if hs[0] <= 0:
        raise DataError(f"horizons must be above zero, got {hs[0]:g}", "give horizons in days, e.g. 180,365,730")
    last = float(np.max(time))
    late = [h for h in hs if h >= last]
    if late:
        raise DataError(
            f"horizon {late[0]:g} is past the last follow-up in {what} ({last:g})",
            f"choose horizons below {last:g}: nobody is followed that long, so risk there cannot be checked",
        )
    return hs


# --- Kaplan-Meier -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KaplanMeier:
    """A Kaplan-Meier curve: the distinct ``times`` and the survival just after each, with the Greenwood sum
    (for intervals) and the patients at risk just before each time."""

    times: FloatArray
    survival: FloatArray
    greenwood: FloatArray
    at_risk: npt.NDArray[np.int64]

    def at(self, t: npt.ArrayLike) -> FloatArray:
        """S(t) as a right-continuous step function; 1 before the first time."""
        idx = np.searchsorted(self.times, np.asarray(t, dtype=float), side="right") - 1
        return np.where(idx >= 0, self.survival[np.clip(idx, 0, None)], 1.0)

    def interval_at(self, t: float, level: float = 0.95) -> tuple[float, float]:
        """The log(-log) ("exponential Greenwood") interval of S(t), lifelines' default."""
        idx = int(np.searchsorted(self.times, t, side="right") - 1)
        if idx < 0:
            return 1.0, 1.0
        s, g = float(self.survival[idx]), float(self.greenwood[idx])
        if s <= 0.0 or s >= 1.0 or not math.isfinite(g):
            return s, s
        z = stats.norm.ppf(0.5 + level / 2)
        half = z * math.sqrt(g) / abs(math.log(s))
        return s ** math.exp(half), s ** math.exp(-half)


def kaplan_meier(time: npt.ArrayLike, event: npt.ArrayLike, *, reverse: bool = False) -> KaplanMeier:
    """The Kaplan-Meier estimate of survival; with ``reverse``, of the censoring distribution (censorings are
    the events, and patients with an event at a time leave the risk set before the censorings there)."""
    t = np.asarray(time, dtype=float)
    e = np.asarray(event).astype(bool)
    times, inverse = np.unique(t, return_inverse=True)
    deaths = np.bincount(inverse, weights=e, minlength=times.size)
    total = np.bincount(inverse, minlength=times.size).astype(float)
    at_risk = total[::-1].cumsum()[::-1]
    if reverse:
        at_risk, deaths = at_risk - deaths, total - deaths
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(deaths > 0, deaths / at_risk, 0.0)
        greenwood = np.cumsum(np.where(deaths > 0, deaths / (at_risk * (at_risk - deaths)), 0.0))
    survival = np.asarray(np.cumprod(1.0 - ratio), dtype=np.float64)
    return KaplanMeier(times, survival, np.asarray(greenwood, dtype=np.float64), at_risk.astype(np.int64))


def _censoring_weights(train_time: FloatArray, train_event: BoolArray, t: FloatArray) -> FloatArray:
    """G(t) from the training data (scikit-survival's CensoringDistributionEstimator); NaN past its last time."""
    if train_event.all():
        return np.ones_like(t)
    g = kaplan_meier(train_time, train_event, reverse=True)
    out = g.at(t)
    return np.where(t > g.times[-1], np.nan, out)


# --- discrimination ------------------------------------------------------------------------------------------


def _pair_sums(
    rows: BoolArray,
    comparable: Any,
    time: FloatArray,
    risk: FloatArray,
    row_weight: FloatArray,
    counts: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """Sum over resamples b of ``sum_i c_bi w_i sum_j c_bj K_ij`` (numerator: concordance credit, denominator:
    comparable pairs), K over the rows ``rows`` and all columns, in blocks; ``comparable(i_idx)`` gives the
    comparable-pair mask of a block of rows."""
    idx = np.flatnonzero(rows & (row_weight > 0))
    num = np.zeros(counts.shape[0])
    den = np.zeros(counts.shape[0])
    step = max(1, _BLOCK // max(time.size, 1))
    for start in range(0, idx.size, step):
        i = idx[start : start + step]
        comp = comparable(i)
        diff = risk[i, None] - risk[None, :]
        credit = np.where(np.abs(diff) <= TIED_TOL, 0.5, (diff > 0).astype(float)) * comp
        weighted_rows = counts[:, i] * row_weight[i]
        num += np.einsum("bi,bi->b", weighted_rows, counts @ credit.T)
        den += np.einsum("bi,bi->b", weighted_rows, counts @ comp.T.astype(float))
    return num, den


def _concordance(
    time: FloatArray, event: BoolArray, risk: FloatArray, weight: FloatArray, counts: FloatArray
) -> FloatArray:
    def comparable(i: npt.NDArray[np.intp]) -> BoolArray:
        ti = time[i, None]
        return (time[None, :] > ti) | ((time[None, :] == ti) & ~event[None, :])

    num, den = _pair_sums(event, comparable, time, risk, weight, counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def harrell_c(time: npt.ArrayLike, event: npt.ArrayLike, risk: npt.ArrayLike) -> float:
    """Harrell's concordance index of a risk score (higher = earlier event)."""
    t, e = check_survival(time, event, what="Harrell's C")
    r = np.asarray(risk, dtype=float)
    return float(_concordance(t, e, r, np.ones_like(t), np.ones((1, t.size)))[0])


def _uno_weights(
    time: FloatArray, event: BoolArray, train_time: FloatArray, train_event: BoolArray, tau: float | None
) -> FloatArray:
    g = _censoring_weights(train_time, train_event, time)
    keep = event & (time < tau) if tau is not None else event.copy()
    if np.isnan(g[keep]).any() or (g[keep] == 0).any():
        raise DataError(
            "Uno's C: test events lie past the last training follow-up time",
            "pass tau (the truncation time) below the last follow-up of the training data",
        )
    w = np.zeros_like(time)
    w[keep] = 1.0 / np.square(g[keep])
    return w


def uno_c(
    time: npt.ArrayLike,
    event: npt.ArrayLike,
    risk: npt.ArrayLike,
    *,
    train_time: npt.ArrayLike,
    train_event: npt.ArrayLike,
    tau: float | None = None,
) -> float:
    """Uno's concordance index (IPCW with the training data's censoring), truncated at ``tau``."""
    t, e = check_survival(time, event, what="Uno's C")
    tt, te = check_survival(train_time, train_event, what="Uno's C (training data)")
    w = _uno_weights(t, e, tt, te, tau)
    return float(_concordance(t, e, np.asarray(risk, dtype=float), w, np.ones((1, t.size)))[0])


def _cumulative_auc(
    time: FloatArray, event: BoolArray, risk: FloatArray, g_at_time: FloatArray, horizon: float, counts: FloatArray
) -> FloatArray:
    case = event & (time <= horizon)
    control = time > horizon
    w = np.where(case, 1.0 / np.where(case, g_at_time, 1.0), 0.0)

    def comparable(i: npt.NDArray[np.intp]) -> BoolArray:
        return np.broadcast_to(control[None, :], (i.size, time.size))

    num, den = _pair_sums(case, comparable, time, risk, w, counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def time_dependent_auc(
    time: npt.ArrayLike,
    event: npt.ArrayLike,
    risk_at: npt.ArrayLike,
    horizons: Sequence[float],
    *,
    train_time: npt.ArrayLike,
    train_event: npt.ArrayLike,
) -> FloatArray:
    """The cumulative/dynamic AUC at each horizon (Uno et al. 2007; scikit-survival's ``cumulative_dynamic_auc``):
    cases had the event by the horizon (weighted 1/G(t)), controls were still event-free after it.
    ``risk_at`` is one risk per patient, or one column per horizon."""
    t, e = check_survival(time, event, what="time-dependent AUC")
    tt, te = check_survival(train_time, train_event, what="time-dependent AUC (training data)")
    hs = check_horizons(horizons, t, what="the evaluated patients")
    r = _per_horizon(risk_at, t.size, len(hs))
    g = _censoring_weights(tt, te, t)
    ones = np.ones((1, t.size))
    return np.array([_cumulative_auc(t, e, r[:, k], g, h, ones)[0] for k, h in enumerate(hs)])


def _per_horizon(values: npt.ArrayLike, n: int, k: int) -> FloatArray:
    v = np.asarray(values, dtype=float)
    if v.ndim == 1:
        v = np.repeat(v[:, None], k, axis=1)
    if v.shape != (n, k):
        raise DataError(f"expected {n} x {k} predictions (patients x horizons), got {v.shape}")
    return v


# --- Brier score ---------------------------------------------------------------------------------------------


def _brier_losses(
    time: FloatArray,
    event: BoolArray,
    survival_at: FloatArray,
    times: FloatArray,
    g_time: FloatArray,
    g_grid: FloatArray,
) -> FloatArray:
    """Per patient and time, the IPCW squared error (patients x times); the Brier score is its column mean."""
    case = event[:, None] & (time[:, None] <= times[None, :])
    control = time[:, None] > times[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        loss = np.where(case, np.square(survival_at) / g_time[:, None], 0.0)
        loss = loss + np.where(control, np.square(1.0 - survival_at) / g_grid[None, :], 0.0)
    return loss


def brier_scores(
    time: npt.ArrayLike,
    event: npt.ArrayLike,
    survival_at: npt.ArrayLike,
    times: Sequence[float],
    *,
    train_time: npt.ArrayLike,
    train_event: npt.ArrayLike,
) -> FloatArray:
    """The time-dependent Brier score (Graf et al. 1999) at ``times`` of predicted survival probabilities
    ``survival_at`` (patients x times), with inverse probability of censoring weights."""
    t, e = check_survival(time, event, what="Brier score")
    tt, te = check_survival(train_time, train_event, what="Brier score (training data)")
    grid = np.asarray(times, dtype=float)
    s = _per_horizon(survival_at, t.size, grid.size)
    g_time, g_grid = _safe_g(tt, te, t), _safe_g(tt, te, grid)
    return np.asarray(_brier_losses(t, e, s, grid, g_time, g_grid).mean(axis=0), dtype=float)


def _safe_g(train_time: FloatArray, train_event: BoolArray, t: FloatArray) -> FloatArray:
    g = _censoring_weights(train_time, train_event, t)
    return np.where(np.isnan(g) | (g == 0), np.inf, g)


def integrated_brier(times: FloatArray, scores: FloatArray) -> float:
    """The Brier scores over ``times`` integrated by the trapezoid rule, per unit of time."""
    if times.size < 2:
        raise DataError("the integrated Brier score needs at least two times", "pass a grid of times")
    return float(np.trapezoid(scores, times) / (times[-1] - times[0]))


def brier_grid(time: npt.ArrayLike) -> FloatArray:
    """The Brier grid of scikit-survival's user guide: percentiles 5 to 81 of the observed times."""
    return np.unique(np.percentile(np.asarray(time, dtype=float), IBS_PERCENTILES))


# --- calibration ---------------------------------------------------------------------------------------------


def km_calibration(
    time: npt.ArrayLike, event: npt.ArrayLike, risk: npt.ArrayLike, horizon: float, *, groups: int = 10
) -> dict[str, list[float] | list[int]]:
    """Predicted against observed risk by the ``horizon`` in groups of predicted risk (quantiles): the mean
    predicted risk, the Kaplan-Meier risk 1 - S(horizon) of the group with its 95% interval, and its size."""
    t, e = check_survival(time, event, what="calibration")
    r = np.asarray(risk, dtype=float)
    k = max(1, min(groups, t.size // 20))
    order = np.argsort(r, kind="mergesort")
    out: dict[str, list[Any]] = {"predicted": [], "observed": [], "low": [], "high": [], "count": []}
    for part in np.array_split(order, k):
        km = kaplan_meier(t[part], e[part])
        s = float(km.at(horizon)[()])
        s_low, s_high = km.interval_at(horizon)
        out["predicted"].append(float(r[part].mean()))
        out["observed"].append(1.0 - s)
        out["low"].append(1.0 - s_high)
        out["high"].append(1.0 - s_low)
        out["count"].append(int(part.size))
    return out


def _rcs_basis(x: FloatArray, knots: FloatArray) -> FloatArray:
    """Restricted cubic spline basis (Harrell's parametrisation): x and k - 2 nonlinear terms."""
    k = knots.size
    norm = (knots[-1] - knots[0]) ** 2
    cols = [x]
    for j in range(k - 2):
        term = (
            np.clip(x - knots[j], 0, None) ** 3
            - np.clip(x - knots[-2], 0, None) ** 3 * (knots[-1] - knots[j]) / (knots[-1] - knots[-2])
            + np.clip(x - knots[-1], 0, None) ** 3 * (knots[-2] - knots[j]) / (knots[-1] - knots[-2])
        )
        cols.append(term / norm)
    return np.column_stack(cols)


@dataclass(frozen=True)
class SmoothCalibration:
    """Austin, Harrell and van Klaveren (2020): observed risk by the horizon as a smooth function of the
    predicted one (a Cox model on a restricted cubic spline of log(-log(1 - risk))), and the summaries of
    |observed - predicted| over the patients: ICI (mean), E50 (median), E90."""

    ici: float
    e50: float
    e90: float
    predicted: tuple[float, ...]
    observed: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ici": self.ici,
            "e50": self.e50,
            "e90": self.e90,
            "smooth": {"predicted": list(self.predicted), "observed": list(self.observed)},
        }


def smooth_calibration(
    time: npt.ArrayLike, event: npt.ArrayLike, risk: npt.ArrayLike, horizon: float, *, knots: int = 3, points: int = 50
) -> SmoothCalibration:
    """The smooth calibration curve at ``horizon`` and its ICI (Austin et al. 2020, with 3 knots at the 10th,
    50th and 90th percentiles as there)."""
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    t, e = check_survival(time, event, what="smooth calibration")
    p = np.clip(np.asarray(risk, dtype=float), 1e-10, 1 - 1e-10)
    cll = np.log(-np.log(1.0 - p))
    qs = {3: (10, 50, 90), 4: (5, 35, 65, 95), 5: (5, 27.5, 50, 72.5, 95)}[knots]
    kn = np.unique(np.percentile(cll, qs))
    basis = _rcs_basis(cll, kn) if kn.size >= 3 else cll[:, None]
    y = np.empty(t.size, dtype=[("event", bool), ("time", float)])
    y["event"], y["time"] = e, t
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter on nearly flat fits; the fit is still used
        cox = CoxPHSurvivalAnalysis(alpha=1e-8, ties="breslow").fit(basis, y)
    steps = cox.cum_baseline_hazard_
    h0 = float(steps(min(horizon, float(steps.x[-1])))) if horizon >= steps.x[0] else 0.0

    def observed(b: FloatArray) -> FloatArray:
        return np.asarray(1.0 - np.exp(-h0 * np.exp(b @ cox.coef_)), dtype=float)

    delta = np.abs(observed(basis) - p)
    grid = np.linspace(np.quantile(p, 0.01), np.quantile(p, 0.99), points)
    g_cll = np.log(-np.log(1.0 - grid))
    g_basis = _rcs_basis(g_cll, kn) if kn.size >= 3 else g_cll[:, None]
    return SmoothCalibration(
        float(delta.mean()),
        float(np.quantile(delta, 0.5)),
        float(np.quantile(delta, 0.9)),
        tuple(float(v) for v in grid),
        tuple(float(v) for v in observed(g_basis)),
    )


@dataclass(frozen=True)
class DCalibration:
    """D-calibration (Haider et al. 2020): the share of patients in each tenth of predicted survival at their own
    time, and the chi-square test that the shares are equal (not rejected: the curves are calibrated as
    distributions)."""

    statistic: float
    p_value: float
    counts: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"statistic": self.statistic, "p_value": self.p_value, "counts": list(self.counts)}


def d_calibration(
    time: npt.ArrayLike, event: npt.ArrayLike, survival_at_own_time: npt.ArrayLike, *, bins: int = 10
) -> DCalibration:
    """D-calibration of the predicted survival S(t_i | x_i) at each patient's own time: an event adds one to its
    bin; a censored patient, whose true S(T) lies uniformly below S(c), spreads one over the bins below."""
    t, e = check_survival(time, event, what="D-calibration")
    s = np.clip(np.asarray(survival_at_own_time, dtype=float), 0.0, 1.0)
    if s.shape != t.shape:
        raise DataError(f"D-calibration: {s.size} survival probabilities for {t.size} patients")
    edges = np.linspace(0.0, 1.0, bins + 1)
    b = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, bins - 1)
    counts = np.bincount(b[e], minlength=bins).astype(float)
    cs, cb = s[~e], b[~e]
    positive = cs > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        own = np.where(positive, (cs - edges[cb]) / cs, 1.0)
        below = np.where(positive, (1.0 / bins) / cs, 0.0)
    counts += np.bincount(cb, weights=own, minlength=bins)
    # each censored patient adds `below` to every bin under its own: bins 0 .. cb-1
    add = np.bincount(cb, weights=below, minlength=bins + 1)
    counts += np.cumsum(add[::-1])[::-1][1:]
    expected = t.size / bins
    statistic = float(np.sum(np.square(counts - expected) / expected))
    return DCalibration(statistic, float(stats.chi2.sf(statistic, bins - 1)), tuple(float(c) for c in counts))


# --- risk groups ---------------------------------------------------------------------------------------------


def km_by_risk_group(
    time: npt.ArrayLike, event: npt.ArrayLike, risk: npt.ArrayLike, *, groups: int = 3, points: int = 60
) -> list[dict[str, Any]]:
    """The Kaplan-Meier curve of each third (``groups``) of predicted risk, lowest first, on a shared grid."""
    t, e = check_survival(time, event, what="risk groups")
    r = np.asarray(risk, dtype=float)
    order = np.argsort(r, kind="mergesort")
    grid = np.linspace(0.0, float(np.quantile(t, 0.95)), points)
    names = {3: ("low", "middle", "high")}.get(groups)
    out = []
    for k, part in enumerate(np.array_split(order, groups)):
        km = kaplan_meier(t[part], e[part])
        out.append(
            {
                "group": names[k] if names else f"group {k + 1}",
                "n": int(part.size),
                "n_events": int(e[part].sum()),
                "risk_range": [float(r[part].min()), float(r[part].max())],
                "time": [float(v) for v in grid],
                "survival": [float(v) for v in km.at(grid)],
            }
        )
    return out
