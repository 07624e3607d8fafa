"""`medml monitor check`: is anything wrong with a deployed model now? Drift, and performance once outcomes are in.

For each model version with predictions in the monitoring store (the champion's, not a shadow's), against the
reference profile in its bundle: drift window by window (:func:`medml.monitor.drift.drift`, its alarm rule), the
estimated performance (CBPE, :func:`medml.monitor.estimate.estimate`) and, where outcomes have arrived, the
realised performance (:func:`medml.monitor.estimate.realised`). A window alarms on drift by the drift rule, and on
performance when the realised AUROC's interval lies wholly below the development AUROC's interval (the model is
worse there beyond what chance explains on either side).
"""

from __future__ import annotations

from dataclasses import dataclass
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
    """One model version checked: per window its size, drift alarm, estimated and realised AUROC."""

    model: str
    n: int
    outcomes: int
    windows: pd.DataFrame
    findings: tuple[Finding, ...]
    rule: str
    dev_auroc: tuple[float, float, float] | None


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
    from medml.monitor.drift import AlarmRule, drift
    from medml.monitor.estimate import estimate, realised
    from medml.monitor.profile import profile_of
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
        real = realised(y, scores, threshold=threshold, windows=d.windows, n_boot=200).frame
        table = d.to_frame()
        for col in ("auroc", "auroc_low", "auroc_high"):
            table[f"estimated_{col}"] = est[col].to_numpy()
            table[f"realised_{col}"] = real[col].to_numpy()
        table["n_outcomes"] = real["n_outcomes"].to_numpy()
        findings = [Finding(ref, a.window, a.kind, a.features, a.message) for a in d.alarms]
        h = metadata.headline
        dev = None if h is None else (h.auroc.value, h.auroc.low, h.auroc.high)
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
            )
        )
    return results
