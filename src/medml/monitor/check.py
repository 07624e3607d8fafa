"""`medml monitor check`: is anything wrong with a deployed model now? Drift, estimated performance while outcomes
are unknown, and realised performance, overall and by subgroup, once they are in.

For each model version with predictions in the monitoring store (the champion's, not a shadow's), against the
reference profile in its bundle: drift window by window (:func:`medml.monitor.drift.drift`, its alarm rule), the
estimated performance (CBPE, :func:`medml.monitor.estimate.estimate`) and, where outcomes have arrived, the
realised performance (:func:`medml.monitor.estimate.realised`) per window and per subgroup of the development
report's sensitive attributes (:mod:`medml.monitor.subgroups`). A window alarms

- on drift, by the drift rule;
- on estimated performance, when its CBPE-estimated AUROC is below the band a window of its size from the
  development population would show (:mod:`medml.monitor.performance`, the rule stated there);
- on realised performance, when the realised AUROC's interval lies wholly below the development AUROC's interval
  (the model is worse there beyond what chance explains on either side), with at least 30 outcomes;
- on a subgroup, when a group's realised AUROC is below its development reference by more than 0.05 (one-sided
  test, Bonferroni over the groups tested in the window, 10 events and 10 non-events at least:
  :mod:`medml.monitor.performance`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from medml.config import Settings
from medml.errors import DataError, clip
from medml.monitor.store import MonitorStore

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CheckResult", "Finding", "check_models"]

#: outcomes a window needs before its realised AUROC can alarm
MIN_OUTCOMES = 30


@dataclass(frozen=True)
class Finding:
    """One thing wrong: ``kind`` distribution, missing, score, multivariate (drift) or performance."""

    model: str
    window: int
    kind: str
    features: tuple[str, ...]
    message: str


@dataclass(frozen=True)
class CheckResult:
    """One model version checked: per window its size, drift alarm, estimated AUROC (with the floor it alarms
    under), realised AUROC and calibration; per subgroup over all windows (``subgroups``) and in each window
    (``subgroup_windows``: realised metrics with bootstrap intervals, and the test of the subgroup rule); the
    attributes that cannot be watched (``unwatched``, with why) and each rule in words."""

    model: str
    n: int
    outcomes: int
    windows: pd.DataFrame
    findings: tuple[Finding, ...]
    rule: str
    dev_auroc: tuple[float, float, float] | None
    subgroups: pd.DataFrame = field(default_factory=lambda: _empty())
    subgroup_windows: pd.DataFrame = field(default_factory=lambda: _empty())
    unwatched: Mapping[str, str] = field(default_factory=dict)
    estimated_rule: str = ""
    subgroup_rule: str = ""


def _empty() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame()


def _versions(store: MonitorStore, name: str | None, version: int | None) -> list[tuple[str, int]]:
    recorded = store.models()
    recorded = recorded[~recorded["shadow"]]
    if name is not None:
        recorded = recorded[recorded["model"] == name]
        if version is not None:
            recorded = recorded[recorded["version"] == version]
    if recorded.empty:
        what = "any model" if name is None else f"{name}" + (f"@{version}" if version is not None else "")
        raise DataError(
            f"the monitoring store {store.path} has no predictions of {clip(what)}",
            "deploy the model and let the service score patients (or score with `medml predict`) first",
        )
    return [(str(m), int(v)) for m, v in recorded[["model", "version"]].drop_duplicates().itertuples(index=False)]


def check_models(
    store: MonitorStore,
    settings: Settings,
    name: str | None = None,
    version: int | None = None,
    *,
    window: int | str = 200,
    outcome: str | None = None,
    since: datetime | None = None,
    alpha: float = 0.05,
) -> list[CheckResult]:
    """Check each recorded version of ``name`` (every model when None); ``window`` a count or a span such as
    ``"7D"``. A model without a reference profile is a MonitorError (raised by ``profile_of``)."""
    from medml.evaluate import Estimate
    from medml.monitor.drift import AlarmRule, drift
    from medml.monitor.estimate import estimate, realised
    from medml.monitor.performance import (
        describe_estimated_rule,
        describe_subgroup_rule,
        estimated_floor,
        subgroup_tests,
    )
    from medml.monitor.profile import profile_of
    from medml.monitor.subgroups import attributes_of, references_of, subgroup_labels
    from medml.registry import BundleMetadata, show_model

    rule = AlarmRule(alpha=alpha)
    results = []
    for model, ver in _versions(store, name, version):
        ref = f"{model}@{ver}"
        shown = show_model(ref, settings)
        metadata = BundleMetadata.from_dict(shown["metadata"], f"{ref} metadata")
        profile = profile_of(metadata)
        frame = store.joined(model, ver, outcome=outcome, since=since, features=list(profile.features))
        if frame.empty:
            raise DataError(f"no predictions of {ref} since {since}", "check --since")
        scores = frame["score"].to_numpy(dtype=float)
        times = frame["time"].to_numpy()
        recorded = frame["threshold"].dropna()
        threshold = float(recorded.iloc[-1]) if len(recorded) else profile.threshold
        by_time = isinstance(window, str)
        d = drift(profile, frame, scores, window=window, times=times if by_time else None, rule=rule)
        est = estimate(scores, threshold=threshold, windows=d.windows).to_frame()
        y = frame["outcome"].to_numpy(dtype=float)
        groups = subgroup_labels(frame, attributes_of(metadata), metadata)
        real = realised(
            y,
            scores,
            threshold=threshold,
            windows=d.windows,
            subgroups=groups.labels if len(groups.labels.columns) else None,
            n_boot=200,
        )
        table = d.to_frame()
        for col in ("auroc", "auroc_low", "auroc_high"):
            table[f"estimated_{col}"] = est[col].to_numpy()
        for col in ("auroc", "calibration_slope", "calibration_intercept"):
            for suffix in ("", "_low", "_high"):
                table[f"realised_{col}{suffix}"] = real.frame[f"{col}{suffix}"].to_numpy()
        table["n_outcomes"] = real.frame["n_outcomes"].to_numpy()
        table["expected"] = real.frame["expected"].to_numpy()
        table["observed"] = real.frame["prevalence"].to_numpy()
        findings = [Finding(ref, a.window, a.kind, a.features, a.message) for a in d.alarms]
        h = metadata.headline
        dev = None if h is None else (h.auroc.value, h.auroc.low, h.auroc.high)
        overall = None if dev is None or not np.isfinite(dev).all() else Estimate(*dev)
        table["estimated_floor"] = (
            estimated_floor(overall, h.n, table["n"], alpha) if overall is not None and h is not None else np.nan
        )
        if dev is not None and np.isfinite(dev[1]):
            for w, row in enumerate(table.to_dict("records")):
                high = float(row["realised_auroc_high"])
                if int(row["n_outcomes"]) >= MIN_OUTCOMES and np.isfinite(high) and high < dev[1]:
                    findings.append(
                        Finding(
                            ref,
                            w,
                            "performance",
                            (),
                            f"window {w} (n={row['n']}, {row['n_outcomes']} outcomes): realised AUROC "
                            f"{row['realised_auroc']:.3f} ({row['realised_auroc_low']:.3f}-{high:.3f}), below "
                            f"the development AUROC {dev[0]:.3f} ({dev[1]:.3f}-{dev[2]:.3f})",
                        )
                    )
        findings += _estimated_findings(ref, table, dev)
        tests = subgroup_tests(
            y, scores, groups.labels, d.windows.ids, references_of(metadata, overall), overall, alpha=alpha
        )
        by_window = _with_tests(real.subgroups_by_window, tests)
        findings += _subgroup_findings(ref, by_window, alpha)
        table["alarm"] = table["alarm"] | table["window"].isin([f.window for f in findings])
        results.append(
            CheckResult(
                model=ref,
                n=len(frame),
                outcomes=int(np.isfinite(y).sum()),
                windows=table,
                findings=tuple(sorted(findings, key=lambda f: (f.window, f.kind))),
                rule=rule.describe(),
                dev_auroc=dev,
                subgroups=real.subgroups,
                subgroup_windows=by_window,
                unwatched=dict(groups.unavailable),
                estimated_rule=describe_estimated_rule(alpha)
                if overall is not None
                else "no estimated-performance alarm: the bundle records no development AUROC with an interval",
                subgroup_rule=describe_subgroup_rule(alpha)
                if overall is not None
                else "no subgroup alarm: the bundle records no development AUROC with an interval",
            )
        )
    return results


def _estimated_findings(ref: str, table: pd.DataFrame, dev: tuple[float, float, float] | None) -> list[Finding]:
    """A finding per window whose estimated AUROC is under its floor."""
    out = []
    for row in table.to_dict("records"):
        est, floor = float(row["estimated_auroc"]), float(row["estimated_floor"])
        if dev is not None and np.isfinite(est) and np.isfinite(floor) and est < floor:
            w = int(row["window"])
            out.append(
                Finding(
                    ref,
                    w,
                    "estimated performance",
                    (),
                    f"window {w} (n={row['n']}): estimated AUROC {est:.3f} (CBPE, from the scores alone), below "
                    f"{floor:.3f}, the least a window of {row['n']} from the development population would show "
                    f"(development AUROC {dev[0]:.3f}, {dev[1]:.3f}-{dev[2]:.3f})",
                )
            )
    return out


def _with_tests(by_window: pd.DataFrame, tests: pd.DataFrame) -> pd.DataFrame:
    """The subgroups' realised metrics per window with the subgroup rule's test beside them."""
    if by_window.empty:
        return by_window
    keep = ["window", "attribute", "group", "reference", "reference_source", "se", "z", "p", "m", "tested", "alarm"]
    out = by_window.merge(tests[keep], on=["window", "attribute", "group"], how="left")
    for col in ("tested", "alarm"):
        out[col] = out[col].astype("boolean").fillna(False).astype(bool)
    return out


def _subgroup_findings(ref: str, by_window: pd.DataFrame, alpha: float) -> list[Finding]:
    from medml.monitor.performance import SUBGROUP_MARGIN

    out: list[Finding] = []
    if by_window.empty:
        return out
    for row in by_window[by_window["alarm"]].to_dict("records"):
        w = int(row["window"])
        out.append(
            Finding(
                ref,
                w,
                "subgroup performance",
                (str(row["attribute"]),),
                f"window {w}: {row['attribute']} {row['group']} ({row['n_outcomes']} outcomes, {row['events']} "
                f"events): realised AUROC {row['auroc']:.3f} ({row['auroc_low']:.3f}-{row['auroc_high']:.3f}), "
                f"more than {SUBGROUP_MARGIN:g} below {row['reference']:.3f}, the {row['reference_source']} "
                f"(one-sided p={row['p']:.2g} < {alpha:g}/{int(row['m'])})",
            )
        )
    return out
