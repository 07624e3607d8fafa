"""Drift of a stream of predictions from the reference profile, window by window, with a stated alarm rule.

Per window, against the development data's profile (:mod:`medml.monitor.profile`):

- each numeric feature: the population stability index (PSI; Siddiqi 2006, *Credit Risk Scorecards*) on the
  profile's decile bins and the two-sample Kolmogorov-Smirnov test on the same bins (binned KS: exact where the
  bins are the distinct values, a lower bound of the KS statistic otherwise; p-value from Smirnov's distribution
  as ``scipy.stats.ks_2samp(method="asymp")`` computes it, conservative on binned data);
- each categorical feature: PSI and the chi-square test of homogeneity (reference counts against the window's), the
  categories under 5% of development rows counted together with unseen ones;
- each feature's missing rate: the two-proportion test (Fisher's exact test near significance);
- the score distribution: as a numeric feature;
- one multivariate measure: the mean PCA reconstruction error of the window's rows (NannyML's "data
  reconstruction drift": standardise, project on the components that explain 65% of the development variance,
  reconstruct, Euclidean distance) against its development mean, a z-test with the development rows' spread.

The alarm rule: in each window every test run is one of ``m`` (the tests with a p-value there); a test alarms when
its p-value is under ``alpha / m`` (Bonferroni, family-wise error ``alpha`` per window, 0.05 by default) and its
effect is large enough to matter (PSI at least 0.1, the usual "moderate shift"; a missing rate changed by at least
5 points; the mean reconstruction error changed by at least 10%). Windows with fewer than ``min_n`` predictions are
measured, not tested. Windows are not corrected against each other: over a null stream about ``alpha`` of the
windows (at most) alarm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from medml.errors import MonitorError
from medml.evaluate.bootstrap import single_threaded_blas
from medml.monitor.profile import (
    CategoricalProfile,
    NumericProfile,
    ReferenceProfile,
    categorical_frequency,
    category_codes,
    numeric_values,
    reconstruction_error,
)
from medml.monitor.windows import DEFAULT_WINDOW, Windows, windows_of

__all__ = ["Alarm", "AlarmRule", "DriftResult", "drift", "psi"]

# a proportion of 0 in a bin is taken as this in PSI (Evidently and NannyML clip the same way)
PSI_FLOOR = 1e-4
# categories under this share of development rows are tested together with the unseen ones
MIN_CATEGORY_SHARE = 0.05
_ROWS_PER_CHUNK = 32_768
# missing-rate tests with an expected count under this (and p under 0.05) are recomputed exactly
EXACT_MISSING_BELOW = 200
_TAIL_STEPS = 2_000
# KS p-values under this (from the limiting distribution) are recomputed at the effective sample size
KS_EXACT_BELOW = 0.001


@dataclass(frozen=True)
class AlarmRule:
    """When a window alarms (see the module docstring)."""

    alpha: float = 0.05
    min_psi: float = 0.1
    min_missing_change: float = 0.05
    min_error_change: float = 0.10
    min_n: int = 30

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise MonitorError(f"the alarm rule's alpha must be between 0 and 1, got {self.alpha}", "use e.g. 0.05")
        if self.min_n < 2:
            raise MonitorError(f"the alarm rule's min_n must be 2 or more, got {self.min_n}")

    def describe(self) -> str:
        return (
            f"a test alarms when p < {self.alpha:g}/m (Bonferroni over the m tests run in the window) and its effect "
            f"matters (PSI >= {self.min_psi:g}; missing rate changed by >= {self.min_missing_change:.0%}; mean PCA "
            f"reconstruction error changed by >= {self.min_error_change:.0%}); windows under {self.min_n} predictions "
            "are not tested"
        )


@dataclass(frozen=True)
class Alarm:
    """What went wrong in one window: ``kind`` is distribution, missing, score or multivariate."""

    window: int
    kind: str
    features: tuple[str, ...]
    message: str


@dataclass(frozen=True)
class DriftResult:
    """Per window and test: ``tests`` has one row per (window, test, feature) with columns window, test, feature,
    statistic, psi, effect, p, alarm; ``alarms`` one :class:`Alarm` per window and kind that alarmed."""

    windows: Windows
    tests: pd.DataFrame
    alarms: tuple[Alarm, ...]
    rule: AlarmRule = field(default_factory=AlarmRule)

    def to_frame(self) -> pd.DataFrame:
        """One row per window: start, end, n, tests run, whether it alarmed and the features it named."""
        out = self.windows.frame()
        t = self.tests
        out["n_tests"] = np.bincount(t["window"][t["p"].notna()], minlength=len(out))
        alarmed = t[t["alarm"]]
        named = alarmed.groupby("window")["feature"].agg(lambda f: ", ".join(dict.fromkeys(f)))
        out["alarm"] = out["window"].isin(named.index)
        out["features"] = [str(named.get(w, "")) for w in out["window"]]
        return out

    @property
    def alarmed_windows(self) -> list[int]:
        return sorted({a.window for a in self.alarms})

    def features_named(self, window: int) -> set[str]:
        return {f for a in self.alarms if a.window == window for f in a.features}


def psi(reference: npt.ArrayLike, current: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Population stability index between bin counts ``reference`` (bins,) and ``current`` (windows x bins):
    ``sum((c - r) * ln(c / r))`` over the bins' proportions, each floored at ``PSI_FLOOR``."""
    r = np.asarray(reference, dtype=float)
    c = np.atleast_2d(np.asarray(current, dtype=float))
    pr = np.maximum(r / max(r.sum(), 1.0), PSI_FLOOR)
    with np.errstate(invalid="ignore", divide="ignore"):
        pc = np.maximum(c / c.sum(axis=1, keepdims=True), PSI_FLOOR)
        return np.asarray(np.sum((pc - pr) * np.log(pc / pr), axis=1), dtype=float)


def binned_ks(
    reference: npt.ArrayLike, current: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Two-sample KS statistic and p-value between bin counts ``reference`` and each row of ``current``."""
    r = np.asarray(reference, dtype=float)
    c = np.atleast_2d(np.asarray(current, dtype=float))
    n_r, n_c = r.sum(), c.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.max(np.abs(np.cumsum(r) / n_r - np.cumsum(c, axis=1) / n_c[:, None]), axis=1)
        m, n = np.maximum(n_r, n_c), np.minimum(n_r, n_c)
        en = np.round(m * n / (m + n))
    p = np.full(d.shape, np.nan)
    ok = (n_c > 0) & (n_r > 0)
    p[ok] = stats.kstwobign.sf(np.sqrt(en[ok]) * d[ok])  # Kolmogorov's limit: fast, close for these sizes
    near = np.flatnonzero(ok & (p < KS_EXACT_BELOW))
    p[near] = stats.kstwo.sf(d[near], np.maximum(en[near], 1))  # Smirnov at the effective n, as scipy's asymp
    return d, p


def chi2_homogeneity(
    reference: npt.ArrayLike, current: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Chi-square statistic and p-value of the 2 x bins table (reference counts, window counts), per window; bins
    empty in both are left out of the degrees of freedom (as ``scipy.stats.chi2_contingency`` without correction)."""
    r = np.asarray(reference, dtype=float)
    c = np.atleast_2d(np.asarray(current, dtype=float))
    col = r[None, :] + c
    n_r, n_c = r.sum(), c.sum(axis=1, keepdims=True)
    total = n_r + n_c
    with np.errstate(invalid="ignore", divide="ignore"):
        e_r, e_c = col * n_r / total, col * n_c / total
        terms = np.where(col > 0, (r - e_r) ** 2 / e_r + (c - e_c) ** 2 / e_c, 0.0)
    stat = terms.sum(axis=1)
    dof = (col > 0).sum(axis=1) - 1
    p = np.full(stat.shape, np.nan)
    ok = (dof > 0) & (n_c[:, 0] > 0)
    p[ok] = stats.chi2.sf(stat[ok], dof[ok])
    p[(dof == 0) & (n_c[:, 0] > 0)] = 1.0
    return stat, p


def missing_test(
    ref_missing: int, ref_n: int, missing: npt.NDArray[np.float64], n: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Two-sided p-value that the window's missing rate equals the development one: Fisher's exact test (twice
    the smaller hypergeometric tail) wherever the normal approximation comes near significance (under 0.05) and
    the counts are small enough (expected counts under ``EXACT_MISSING_BELOW``) for it to be too optimistic in the
    tail (it let 3.7% of null windows alarm on missing rates of 10%); the normal approximation elsewhere."""
    p1 = ref_missing / ref_n
    with np.errstate(invalid="ignore", divide="ignore"):
        p2 = missing / n
        pool = (ref_missing + missing) / (ref_n + n)
        z = (p2 - p1) / np.sqrt(pool * (1 - pool) * (1 / ref_n + 1 / n))
        p = np.where(pool * (1 - pool) > 0, 2 * stats.norm.sf(np.abs(z)), 1.0)
        expected = np.minimum(pool, 1 - pool) * np.minimum(n, ref_n)
    p[n == 0] = np.nan
    near = np.flatnonzero((p < 0.05) & (expected < EXACT_MISSING_BELOW))
    if near.size:
        total, marked = ref_n + n[near], ref_missing + missing[near]
        upper, lower = hypergeom_tails(missing[near], total, marked, n[near])
        p[near] = np.minimum(1.0, 2.0 * np.minimum(upper, lower))
    return np.asarray(p, dtype=float)


def hypergeom_tails(
    x: npt.NDArray[np.float64], total: npt.NDArray[np.float64], marked: npt.NDArray[np.float64], drawn: Any
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``P(X >= x)`` and ``P(X <= x)`` for hypergeometric ``X`` (``drawn`` of ``total``, ``marked`` of them
    marked), vectorised: the probability of ``x`` from log-gamma, then each tail by the ratio of successive terms
    (as ``scipy.stats.hypergeom`` gives, without its per-value cost). Far out in a tail the probability of ``x``
    underflows to 0 while the sum of ratios towards the mode overflows: that tail holds the mode and the other
    tail is below the smallest float, so it is 1."""
    from scipy.special import gammaln

    drawn = np.asarray(drawn, dtype=float) + np.zeros_like(x)

    def log_choose(a: Any, b: Any) -> Any:
        return gammaln(a + 1) - gammaln(b + 1) - gammaln(a - b + 1)

    pmf = np.exp(log_choose(marked, x) + log_choose(total - marked, drawn - x) - log_choose(total, drawn))
    tails = []
    for step in (1, -1):
        k, term, acc = x.copy(), np.ones_like(x), np.ones_like(x)
        with np.errstate(over="ignore", invalid="ignore"):
            for _ in range(_TAIL_STEPS):
                if step == 1:
                    ratio = (marked - k) * (drawn - k) / ((k + 1) * (total - marked - drawn + k + 1))
                else:
                    ratio = k * (total - marked - drawn + k) / ((marked - k + 1) * (drawn - k + 1))
                term = term * np.where(np.isfinite(ratio) & (ratio > 0), ratio, 0.0)
                acc += term
                k += step
                if not np.any(term > 1e-16 * acc):
                    break
            tail = pmf * acc
        tails.append(np.where(np.isfinite(tail), np.minimum(1.0, tail), 1.0))
    return tails[0], tails[1]


class _Tests:
    """Columns of the tests table, gathered feature by feature."""

    def __init__(self, n_windows: int) -> None:
        self.n_windows = n_windows
        self.cols: dict[str, list[Any]] = {k: [] for k in ("test", "feature", "statistic", "psi", "effect", "p")}

    def add(self, test: str, feature: str, statistic: Any, psi_: Any, effect: Any, p: Any) -> None:
        w = self.n_windows
        self.cols["test"].append(np.full(w, test, dtype=object))
        self.cols["feature"].append(np.full(w, feature, dtype=object))
        for key, v in (("statistic", statistic), ("psi", psi_), ("effect", effect), ("p", p)):
            self.cols[key].append(np.broadcast_to(np.asarray(v, dtype=float), (w,)))

    def frame(self) -> pd.DataFrame:
        n = len(self.cols["test"])
        window = np.tile(np.arange(self.n_windows), n)
        data = {k: np.concatenate(v) if v else np.empty(0) for k, v in self.cols.items()}
        return pd.DataFrame({"window": window, **data})


@dataclass
class _Feature:
    """One distribution to count per window: its bins' reference counts and, per row, its values or bins."""

    name: str
    test: str
    n_cells: int  # present cells; cell ``n_cells`` is missing
    numeric: NumericProfile | None = None
    values: npt.NDArray[np.float64] | None = None  # numeric: the values
    cells: npt.NDArray[np.intp] | None = None  # categorical: the cell of each row
    pca_column: npt.NDArray[np.float64] | None = None  # categorical: its frequency encoding
    reference: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    ref_missing: int = 0
    ref_n: int = 0
    counts: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty((0, 0), dtype=np.int64))


def _as_floats(column: pd.Series) -> npt.NDArray[np.float64]:
    if column.dtype == np.float64:
        return np.asarray(column.to_numpy(), dtype=np.float64)  # the frame's own memory, no copy
    return numeric_values(column)


def _numeric_feature(prof: NumericProfile, values: npt.NDArray[np.float64], test: str, n_windows: int) -> _Feature:
    k = len(prof.counts)
    return _Feature(
        prof.name, test, k, numeric=prof, values=values, reference=np.asarray(prof.counts, dtype=float),
        ref_missing=prof.n_missing, ref_n=prof.n_present + prof.n_missing,
        counts=np.zeros((n_windows, k + 1), dtype=np.int64),
    )  # fmt: skip


def _categorical_feature(prof: CategoricalProfile, column: pd.Series, n_windows: int, pca: bool) -> _Feature:
    """Kept categories (at least ``MIN_CATEGORY_SHARE`` of development rows) each a cell, then one cell for the
    rare and unseen ones, then missing."""
    total = max(prof.n_present, 1)
    kept = [i for i, c in enumerate(prof.counts) if c / total >= MIN_CATEGORY_SHARE]
    k = len(kept)
    table = np.full(len(prof.categories) + 1, k, dtype=np.intp)
    table[kept] = np.arange(k)
    codes = category_codes(column, prof.categories)
    cells = table[codes]
    cells[column.isna().to_numpy()] = k + 1
    ref = [prof.counts[i] for i in kept] + [prof.n_present - sum(prof.counts[i] for i in kept)]
    return _Feature(
        prof.name, "distribution", k + 1, cells=cells, reference=np.asarray(ref, dtype=float),
        pca_column=categorical_frequency(column, prof) if pca else None,
        ref_missing=prof.n_missing, ref_n=prof.n_present + prof.n_missing,
        counts=np.zeros((n_windows, k + 2), dtype=np.int64),
    )  # fmt: skip


def _cells(x: npt.NDArray[np.float64], edges: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
    """``np.searchsorted(edges, x, side="right")``; for a few edges as a sum of comparisons, 3x faster (no
    branches); NaN lands in bin 0 and is set apart by the caller."""
    if edges.size > 16:
        return np.asarray(np.searchsorted(edges, x, side="right"), dtype=np.intp)
    cells = np.zeros(x.size, dtype=np.intp)
    above = np.empty(x.size, dtype=bool)
    for edge in edges:
        np.greater_equal(x, edge, out=above)
        cells += above
    return cells


def _count_chunk(
    plan: list[_Feature], ids: npt.NDArray[np.intp], start: int, stop: int, pca: _PCAPlan | None
) -> tuple[int, list[npt.NDArray[np.int64]], npt.NDArray[np.float64] | None]:
    """Per-window cell counts of rows ``start:stop`` for every feature, and the sum of their reconstruction
    errors per window; windows relative to the chunk's first."""
    first = int(ids[start])
    local = ids[start:stop] - first
    n_local = int(local[-1]) + 1
    z = pca.buffer(stop - start) if pca is not None else None
    offsets: dict[int, npt.NDArray[np.intp]] = {}
    out = []
    for f in plan:
        width = f.n_cells + 1
        if f.values is not None:
            x = f.values[start:stop]
            missing = np.isnan(x)
            cells = _cells(x, f.numeric.edges_array)  # type: ignore[union-attr]
            cells[missing] = f.n_cells
            if z is not None and f.name in pca.index:  # type: ignore[union-attr]
                z[:, pca.index[f.name]] = x  # type: ignore[union-attr]
        else:
            cells = f.cells[start:stop].copy()  # type: ignore[index]
            if z is not None and f.pca_column is not None and f.name in pca.index:  # type: ignore[union-attr]
                z[:, pca.index[f.name]] = f.pca_column[start:stop]  # type: ignore[union-attr]
        if width not in offsets:
            offsets[width] = local * width
        cells += offsets[width]
        out.append(np.bincount(cells, minlength=n_local * width).reshape(n_local, width).astype(np.int64))
    errors = None
    if z is not None and pca is not None:
        errors = np.bincount(local, weights=pca.errors(z), minlength=n_local).astype(np.float64)
    return first, out, errors


class _PCAPlan:
    """The profile's PCA as float32 arrays, and the column of each of its features."""

    def __init__(self, profile: ReferenceProfile) -> None:
        assert profile.pca is not None
        self.pca = profile.pca
        self.index = {name: j for j, name in enumerate(self.pca.features)}
        self.means = np.asarray(self.pca.means, dtype=np.float32)
        self.scales = np.asarray(self.pca.scales, dtype=np.float32)
        self.components = np.asarray(self.pca.components, dtype=np.float32)

    def buffer(self, rows: int) -> npt.NDArray[np.float32]:
        return np.empty((rows, len(self.index)), dtype=np.float32, order="F")  # columns filled one by one

    def errors(self, z: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        np.copyto(z, self.means, where=np.isnan(z))  # NannyML imputes the mean
        z -= self.means
        z /= self.scales
        return reconstruction_error(z, self.components)


def _run(plan: list[_Feature], win: Windows, pca: _PCAPlan | None, n_rows: int, threads: int) -> Any:
    """Count every feature's cells per window (and the PCA errors) over row chunks, on ``threads`` threads."""
    from concurrent.futures import ThreadPoolExecutor

    bounds = [(a, min(a + _ROWS_PER_CHUNK, n_rows)) for a in range(0, n_rows, _ROWS_PER_CHUNK)]
    error_sums = np.zeros(len(win))

    def gather(result: tuple[int, list[npt.NDArray[np.int64]], npt.NDArray[np.float64] | None]) -> None:
        first, counts, errors = result
        for f, c in zip(plan, counts, strict=True):
            f.counts[first : first + len(c)] += c
        if errors is not None:
            error_sums[first : first + len(errors)] += errors

    if threads <= 1 or len(bounds) == 1:
        for a, b in bounds:
            gather(_count_chunk(plan, win.ids, a, b, pca))
    else:
        with single_threaded_blas(), ThreadPoolExecutor(threads) as pool:
            for result in pool.map(lambda ab: _count_chunk(plan, win.ids, ab[0], ab[1], pca), bounds):
                gather(result)
    return error_sums


def _feature_tests(out: _Tests, f: _Feature) -> None:
    present = f.counts[:, : f.n_cells]
    shift = psi(f.reference, present)
    if f.numeric is not None:
        stat, p = binned_ks(f.reference, present)
    else:
        stat, p = chi2_homogeneity(f.reference, present)
    out.add(f.test, f.name, stat, shift, shift, p)
    if f.test != "score":
        _missing_tests(out, f.name, f.ref_missing, f.ref_n, f.counts[:, f.n_cells], f.counts.sum(axis=1))


def _missing_tests(
    out: _Tests, name: str, ref_missing: int, ref_n: int, missing: npt.NDArray[Any], n: npt.NDArray[Any]
) -> None:
    m, nn = missing.astype(float), n.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        change = m / nn - ref_missing / max(ref_n, 1)
    out.add("missing", name, change, np.nan, np.abs(change), missing_test(ref_missing, max(ref_n, 1), m, nn))


def _multivariate_tests(out: _Tests, pca: _PCAPlan, sums: npt.NDArray[np.float64], win: Windows) -> None:
    ref = pca.pca
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / win.n
        z_stat = (mean - ref.error_mean) / (ref.error_sd * np.sqrt(1.0 / win.n + 1.0 / ref.n))
    p = 2 * stats.norm.sf(np.abs(z_stat))
    out.add("multivariate", "PCA reconstruction error", mean, np.nan, np.abs(mean / ref.error_mean - 1.0), p)


def _alarm_flags(tests: pd.DataFrame, win: Windows, rule: AlarmRule) -> npt.NDArray[np.bool_]:
    tested = tests["p"].notna() & (win.n[tests["window"]] >= rule.min_n)
    tests.loc[~tested, "p"] = np.nan
    m = np.bincount(tests["window"][tested], minlength=len(win))
    bound = rule.alpha / np.maximum(m, 1)
    minimum = (
        tests["test"]
        .map({"distribution": rule.min_psi, "score": rule.min_psi, "missing": rule.min_missing_change})
        .fillna(rule.min_error_change)
    )
    return np.asarray(tested & (tests["p"] < bound[tests["window"]]) & (tests["effect"] >= minimum))


def _describe(row: Any) -> str:
    p = "p<1e-16" if row.p < 1e-16 else f"p={row.p:.2g}"
    if row.test == "missing":
        return f"{row.feature} (missing {row.statistic:+.0%}, {p})"
    if row.test == "multivariate":
        return f"{row.feature} (mean {row.statistic:.3g}, {row.effect:+.0%} from development, {p})"
    return f"{row.feature} (PSI {row.psi:.2f}, {p})"


def _alarms(tests: pd.DataFrame, win: Windows) -> tuple[Alarm, ...]:
    out = []
    kinds = {
        "distribution": "distribution drift in",
        "missing": "missing rate changed for",
        "score": "score distribution drifted:",
        "multivariate": "multivariate drift:",
    }
    for key, rows in tests[tests["alarm"]].groupby(["window", "test"], sort=True):
        first, second = cast(tuple[Any, Any], key)
        w, kind = int(first), str(second)
        rows = rows.sort_values("p")
        where = f"rows {win.start[w]}-{win.end[w]}" if win.by == "count" else f"{win.start[w]} to {win.end[w]}"
        text = ", ".join(_describe(r) for r in rows.itertuples())
        message = f"window {w} ({where}, n={win.n[w]}): {kinds[kind]} {text}"
        out.append(Alarm(w, kind, tuple(rows["feature"]), message))
    return tuple(out)


def drift(
    profile: ReferenceProfile,
    frame: pd.DataFrame,
    scores: npt.ArrayLike,
    *,
    window: int | str | Windows = DEFAULT_WINDOW,
    times: Any = None,
    rule: AlarmRule | None = None,
    features: Sequence[str] | None = None,
    threads: int = 2,
) -> DriftResult:
    """Drift of the predictions in ``frame`` (one column per model feature, rows in time order; a ``time`` column
    is used for windows by time when ``times`` is not given) and their ``scores`` from ``profile``, per window.
    ``features`` limits the check to some features (and leaves out the multivariate test); the rows are counted in
    chunks on ``threads`` threads."""
    rule = rule or AlarmRule()
    p = np.asarray(scores, dtype=float)
    if p.shape != (len(frame),):
        raise MonitorError(f"drift needs one score per prediction: {p.size} scores for {len(frame)} rows")
    if len(frame) == 0:
        raise MonitorError("there are no predictions to check", "record predictions first")
    names = list(features) if features is not None else list(profile.features)
    absent = [n for n in names if n not in frame.columns]
    if absent:
        raise MonitorError(
            f"the predictions lack {len(absent)} of the model's features: {', '.join(absent[:10])}",
            "record the values the model saw for every feature",
        )
    if times is None and isinstance(window, str) and "time" in frame.columns:
        times = frame["time"].to_numpy()
    win = windows_of(len(frame), window, times)
    use_pca = features is None and profile.pca is not None
    plan = []
    for name in names:
        if name in profile.numeric:
            plan.append(_numeric_feature(profile.numeric[name], _as_floats(frame[name]), "distribution", len(win)))
        elif name in profile.categorical:
            plan.append(_categorical_feature(profile.categorical[name], frame[name], len(win), use_pca))
        else:
            raise MonitorError(f"feature {name!r} is not in the reference profile")
    plan.append(_numeric_feature(profile.score, p, "score", len(win)))
    pca = _PCAPlan(profile) if use_pca else None
    order = np.argsort(win.ids, kind="stable")
    counted = win
    if np.any(order != np.arange(order.size)):  # time windows of rows out of time order: count them in order
        counted = Windows(win.ids[order], win.start, win.end, win.n, win.by)
        for f in plan:
            f.values = None if f.values is None else f.values[order]
            f.cells = None if f.cells is None else f.cells[order]
            f.pca_column = None if f.pca_column is None else f.pca_column[order]
    error_sums = _run(plan, counted, pca, len(frame), threads)
    out = _Tests(len(win))
    for f in plan:
        _feature_tests(out, f)
    if pca is not None:
        _multivariate_tests(out, pca, error_sums, win)
    tests = out.frame()
    tests["alarm"] = _alarm_flags(tests, win, rule)
    return DriftResult(win, tests, _alarms(tests, win), rule)
