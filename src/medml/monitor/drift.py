"""Drift of a stream of predictions from the reference profile, window by window, with a stated alarm rule.

Per window, against the development data's profile (:mod:`medml.monitor.profile`):

- each numeric feature: the population stability index (PSI; Siddiqi 2006, *Credit Risk Scorecards*) on the
  profile's decile bins and the two-sample Kolmogorov-Smirnov test on the same bins (binned KS: exact where the
  bins are the distinct values, a lower bound of the KS statistic otherwise; p-value from Smirnov's distribution
  as ``scipy.stats.ks_2samp(method="asymp")`` computes it, conservative on binned data);
- each categorical feature: PSI and the chi-square test of homogeneity (reference counts against the window's), the
  categories under 5% of development rows counted together with unseen ones;
- each feature's missing rate: the two-proportion test (Fisher's exact test where counts are small);
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
from medml.monitor.profile import (
    CategoricalProfile,
    NumericProfile,
    ReferenceProfile,
    categorical_frequency,
    category_values,
    numeric_values,
    reconstruction_error,
)
from medml.monitor.windows import DEFAULT_WINDOW, Windows, windows_of

__all__ = ["Alarm", "AlarmRule", "DriftResult", "drift", "psi"]

# a proportion of 0 in a bin is taken as this in PSI (Evidently and NannyML clip the same way)
PSI_FLOOR = 1e-4
# categories under this share of development rows are tested together with the unseen ones
MIN_CATEGORY_SHARE = 0.05
_ROWS_PER_CHUNK = 65_536


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
    p[ok] = stats.kstwo.sf(d[ok], np.maximum(en[ok], 1))
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
    """Two-sided p-value that the window's missing rate equals the development one: the normal approximation, and
    Fisher's exact test (``scipy.stats.fisher_exact``) where that approximation comes near significance (under
    0.05) with an expected count under 5, where it is too optimistic."""
    p1 = ref_missing / ref_n
    with np.errstate(invalid="ignore", divide="ignore"):
        p2 = missing / n
        pool = (ref_missing + missing) / (ref_n + n)
        z = (p2 - p1) / np.sqrt(pool * (1 - pool) * (1 / ref_n + 1 / n))
        p = np.where(pool * (1 - pool) > 0, 2 * stats.norm.sf(np.abs(z)), 1.0)
        smallest = np.minimum(np.minimum(pool, 1 - pool) * np.minimum(n, ref_n), np.inf)
    p[n == 0] = np.nan
    for i in np.flatnonzero((p < 0.05) & (smallest < 5)):
        table = [[ref_missing, ref_n - ref_missing], [int(missing[i]), int(n[i] - missing[i])]]
        p[i] = stats.fisher_exact(table).pvalue
    return np.asarray(p, dtype=float)


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


def _cell_counts(cells: npt.NDArray[np.intp], ids: npt.NDArray[np.intp], n_cells: int, n_windows: int) -> Any:
    return np.bincount(ids * n_cells + cells, minlength=n_windows * n_cells).reshape(n_windows, n_cells)


def _numeric_tests(out: _Tests, prof: NumericProfile, values: npt.NDArray[np.float64], win: Windows, test: str) -> None:
    k = len(prof.counts)
    counts = _cell_counts(prof.cell(values), win.ids, k + 1, len(win))
    present = counts[:, :k]
    d, p = binned_ks(prof.counts, present)
    shift = psi(prof.counts, present)
    out.add(test, prof.name, d, shift, shift, p)
    _missing_tests(out, prof.name, prof.n_missing, prof.n_present + prof.n_missing, counts[:, k], counts.sum(axis=1))


def _categorical_tests(out: _Tests, prof: CategoricalProfile, column: pd.Series, win: Windows) -> None:
    total = max(prof.n_present, 1)
    kept = [i for i, c in enumerate(prof.counts) if c / total >= MIN_CATEGORY_SHARE]
    k = len(kept)
    # category code -> cell: kept categories first, then "other" (rare, unseen), then missing
    table = np.full(len(prof.categories) + 1, k, dtype=np.intp)
    table[kept] = np.arange(k)
    codes = pd.Categorical(category_values(column), categories=list(prof.categories)).codes
    cells = table[codes]
    cells[column.isna().to_numpy()] = k + 1
    counts = _cell_counts(cells, win.ids, k + 2, len(win))
    ref = np.array([prof.counts[i] for i in kept] + [prof.n_present - sum(prof.counts[i] for i in kept)], dtype=float)
    stat, p = chi2_homogeneity(ref, counts[:, : k + 1])
    shift = psi(ref, counts[:, : k + 1])
    out.add("distribution", prof.name, stat, shift, shift, p)
    _missing_tests(
        out, prof.name, prof.n_missing, prof.n_present + prof.n_missing, counts[:, k + 1], counts.sum(axis=1)
    )


def _missing_tests(
    out: _Tests, name: str, ref_missing: int, ref_n: int, missing: npt.NDArray[Any], n: npt.NDArray[Any]
) -> None:
    m, nn = missing.astype(float), n.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        change = m / nn - ref_missing / max(ref_n, 1)
    out.add("missing", name, change, np.nan, np.abs(change), missing_test(ref_missing, max(ref_n, 1), m, nn))


def _multivariate(out: _Tests, profile: ReferenceProfile, frame: pd.DataFrame, win: Windows) -> None:
    pca = profile.pca
    if pca is None:
        return
    means, scales = np.asarray(pca.means), np.asarray(pca.scales)
    components = np.asarray(pca.components)
    columns = [numeric_values(frame[name]) if name not in profile.categorical else None for name in pca.features]
    sums = np.zeros(len(win))
    for start in range(0, len(frame), _ROWS_PER_CHUNK):
        stop = min(start + _ROWS_PER_CHUNK, len(frame))
        z = np.empty((stop - start, len(pca.features)))
        for j, name in enumerate(pca.features):
            col = columns[j]
            if col is None:
                z[:, j] = categorical_frequency(frame[name].iloc[start:stop], profile.categorical[name])
            else:
                z[:, j] = col[start:stop]
        np.copyto(z, means, where=np.isnan(z))
        z -= means
        z /= scales
        sums += np.bincount(win.ids[start:stop], weights=reconstruction_error(z, components), minlength=len(win))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / win.n
        se = pca.error_sd * np.sqrt(1.0 / win.n + 1.0 / pca.n)
        z_stat = (mean - pca.error_mean) / se
    p = 2 * stats.norm.sf(np.abs(z_stat))
    out.add("multivariate", "PCA reconstruction error", mean, np.nan, np.abs(mean / pca.error_mean - 1.0), p)


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
) -> DriftResult:
    """Drift of the predictions in ``frame`` (one column per model feature, rows in time order; a ``time`` column
    is used for windows by time when ``times`` is not given) and their ``scores`` from ``profile``, per window."""
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
    out = _Tests(len(win))
    for name in names:
        if name in profile.numeric:
            _numeric_tests(out, profile.numeric[name], numeric_values(frame[name]), win, "distribution")
        elif name in profile.categorical:
            _categorical_tests(out, profile.categorical[name], frame[name], win)
        else:
            raise MonitorError(f"feature {name!r} is not in the reference profile")
    _numeric_tests(out, profile.score, p, win, "score")
    if features is None:
        _multivariate(out, profile, frame, win)
    tests = out.frame()
    tests = tests[~((tests["test"] == "missing") & (tests["feature"] == "score"))].reset_index(drop=True)
    tests["alarm"] = _alarm_flags(tests, win, rule)
    return DriftResult(win, tests, _alarms(tests, win), rule)
