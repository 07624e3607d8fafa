"""The performance alarms of ``medml monitor check``: the estimated AUROC while outcomes are unknown, and each
subgroup's realised AUROC once they are in. Both use the development AUROC stored in the bundle (its headline: the
held-out split, ``n_R`` patients, a 95% bootstrap interval) as the reference; a standard error is read from a 95%
interval as ``(high - low) / (2 z_0.975)``.

**Estimated AUROC below the development band.** A window of ``n`` predictions drawn from the development
population would show an AUROC around the development value ``R`` with standard deviation
``SE_n = SE_R sqrt(n_R / n)`` (the AUROC's variance falls as ``1/n`` at a fixed event rate; Hanley and McNeil 1982).
A window alarms when its CBPE-estimated AUROC (:func:`medml.monitor.estimate.estimate`) is below the floor
``R - z_(1-alpha) sqrt(SE_R^2 + SE_n^2)``: one one-sided test per window at the check's ``alpha`` (0.05), the
reference's own uncertainty included; windows under 30 predictions are not tested, and windows are not corrected
against each other (as the drift rule). The estimate has no outcome noise, so it moves less than a realised AUROC
would: on an unchanged population under ``alpha`` of the windows alarm. It assumes the model is calibrated on the
patients scored, so it sees a change in the scores (a case mix the model separates less well, a feed that stops,
scores squeezed together) and not a change in how the features relate to the outcome (concept shift), which only
realised performance shows.

**A subgroup's realised AUROC below its reference.** In each window, each group of each watched attribute
(:mod:`medml.monitor.subgroups`) with at least 10 events and 10 non-events among the outcomes arrived is tested
against its reference ``R_g``: the group's own development AUROC where the development report estimated it, else the
overall development AUROC. With ``A`` the group's realised AUROC and ``SE_A`` its DeLong standard error (DeLong,
DeLong and Clarke-Pearson 1988; closed form, so the alarm has no resampling noise), ``z = (A - (R_g - margin)) /
sqrt(SE_A^2 + SE_R^2)`` tests whether the group is served worse than in development by more than ``margin`` (0.05,
the development audit's AUROC gap tolerance); it alarms when the one-sided p-value ``Phi(z)`` is under
``alpha / m``, ``m`` the groups tested in that window (Bonferroni), so that a window of an unchanged population
alarms with probability at most ``alpha``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from medml.errors import MonitorError
from medml.evaluate import Estimate
from medml.monitor.estimate import MIN_EVENTS
from medml.monitor.subgroups import Reference, reference_for

__all__ = [
    "ESTIMATED_MIN_N",
    "SUBGROUP_MARGIN",
    "delong_se",
    "describe_estimated_rule",
    "describe_subgroup_rule",
    "estimated_floor",
    "standard_error",
    "subgroup_tests",
]

#: windows with fewer predictions than this are not tested on their estimated AUROC
ESTIMATED_MIN_N = 30
#: how much worse than its reference a group's AUROC may be before it alarms (the subgroup audit's AUROC tolerance)
SUBGROUP_MARGIN = 0.05


def standard_error(e: Estimate, level: float = 0.95) -> float:
    """The standard error a normal ``level`` interval of width ``high - low`` implies (NaN without an interval)."""
    return float((e.high - e.low) / (2.0 * stats.norm.ppf(0.5 + level / 2.0)))


def estimated_floor(
    reference: Estimate, n_reference: int, n: npt.ArrayLike, alpha: float = 0.05
) -> npt.NDArray[np.float64]:
    """Per window of ``n`` predictions, the estimated AUROC under which it alarms (see the module docstring)."""
    if not 0.0 < alpha < 1.0:
        raise MonitorError(f"alpha must be between 0 and 1, got {alpha}", "use e.g. 0.05")
    sizes = np.asarray(n, dtype=float)
    se_r = standard_error(reference)
    if not (np.isfinite(se_r) and n_reference > 0):
        return np.full(sizes.shape, np.nan)
    with np.errstate(divide="ignore"):
        se_n = se_r * np.sqrt(n_reference / sizes)
    floor = reference.value - stats.norm.ppf(1.0 - alpha) * np.sqrt(se_r**2 + se_n**2)
    return np.where(sizes >= ESTIMATED_MIN_N, floor, np.nan)


def delong_se(y: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """DeLong's standard error of the AUROC: from each event's share of non-events scored below it and each
    non-event's share of events scored above it (ties half), ``sqrt(var(V10)/m + var(V01)/n)``; NaN with fewer
    than 2 events or 2 non-events."""
    yy = np.asarray(y, dtype=float) == 1
    s = np.asarray(scores, dtype=float)
    m, n = int(yy.sum()), int((~yy).sum())
    if m < 2 or n < 2:
        return float("nan")
    ranks = stats.rankdata(s)
    v10 = (ranks[yy] - stats.rankdata(s[yy])) / n
    v01 = 1.0 - (ranks[~yy] - stats.rankdata(s[~yy])) / m
    return float(np.sqrt(v10.var(ddof=1) / m + v01.var(ddof=1) / n))


def subgroup_tests(
    y: npt.ArrayLike,
    scores: npt.ArrayLike,
    labels: pd.DataFrame,
    window_ids: npt.ArrayLike,
    references: Mapping[tuple[str, str], Reference],
    overall: Estimate | None,
    *,
    alpha: float = 0.05,
    margin: float = SUBGROUP_MARGIN,
    min_events: int = MIN_EVENTS,
) -> pd.DataFrame:
    """One row per (window, attribute, group) with an outcome: its realised AUROC, DeLong standard error, reference,
    z, one-sided p, the number ``m`` of groups tested in the window and whether it alarms (module docstring)."""
    yy = np.asarray(y, dtype=float)
    s = np.asarray(scores, dtype=float)
    ids = np.asarray(window_ids)
    known = ~np.isnan(yy)
    rows: list[dict[str, Any]] = []
    for attribute in labels.columns:
        values = labels[attribute].astype(str).to_numpy()
        for group in sorted(set(values[known])):
            for w in np.unique(ids[known & (values == group)]):
                cell = known & (values == group) & (ids == w)
                events = int(yy[cell].sum())
                row: dict[str, Any] = {
                    "window": int(w),
                    "attribute": str(attribute),
                    "group": group,
                    "n_outcomes": int(cell.sum()),
                    "events": events,
                    "tested": False,
                }
                ref = reference_for(references, str(attribute), group, overall)
                if ref is not None:
                    row |= {
                        "reference": ref.auroc.value,
                        "reference_se": standard_error(ref.auroc),
                        "reference_source": ref.source,
                    }
                if ref is not None and min(events, int(cell.sum()) - events) >= min_events:
                    from medml.evaluate import auroc

                    a, se = auroc(yy[cell], s[cell]), delong_se(yy[cell], s[cell])
                    z = (a - (ref.auroc.value - margin)) / np.hypot(se, row["reference_se"])
                    row |= {"auroc": a, "se": se, "z": float(z), "p": float(stats.norm.cdf(z)), "tested": True}
                rows.append(row)
    columns = ["window", "attribute", "group", "n_outcomes", "events", "tested", "auroc", "se", "reference"]
    out = pd.DataFrame(rows).reindex(columns=[*columns, "reference_se", "reference_source", "z", "p"])
    out["tested"] = out["tested"].astype(bool)
    out["m"] = out.groupby("window")["tested"].transform("sum").astype(int)
    out["alarm"] = out["tested"] & (out["p"] < alpha / out["m"].clip(lower=1))
    return out.sort_values(["window", "attribute", "group"], ignore_index=True)


def describe_estimated_rule(alpha: float) -> str:
    return (
        f"estimated AUROC (CBPE) alarms when under R - z(1-{alpha:g}) sqrt(SE_R^2 + SE_R^2 n_R/n), R the development "
        f"AUROC of n_R patients with standard error SE_R and n the window's predictions (windows under "
        f"{ESTIMATED_MIN_N} not tested)"
    )


def describe_subgroup_rule(alpha: float, margin: float = SUBGROUP_MARGIN, min_events: int = MIN_EVENTS) -> str:
    return (
        f"a subgroup alarms when its realised AUROC is below its development AUROC (the overall one where the "
        f"group's was not estimated) by more than {margin:g}: one-sided z-test with DeLong's standard error, p < "
        f"{alpha:g}/m (Bonferroni over the m groups tested in the window); groups with fewer than {min_events} "
        f"events or {min_events} non-events are not tested"
    )
