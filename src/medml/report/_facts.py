"""Facts about a model and its evaluation, phrased once for the model card and the report."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medml.models.factory import find_model_kind
from medml.report._format import count, est, num, pct, value_of
from medml.report.inputs import ReportInputs

IMBALANCE_PARAMS = ("class_weight", "scale_pos_weight", "is_unbalance", "sample_weight", "resampling")
NO_RECALIBRATION = ("", "none", "no", "uncalibrated")


def model_kind(inputs: ReportInputs) -> str:
    return str(inputs.model.get("model_kind") or "").strip()


def missing_handling(inputs: ReportInputs) -> str | None:
    """How the model meets a missing input: as recorded, else as its model kind declares."""
    if inputs.model.get("missing_data"):
        return str(inputs.model["missing_data"])
    kind = find_model_kind(model_kind(inputs))
    return kind.missing_data.report if kind is not None else None


def missingness(inputs: ReportInputs) -> str:
    parts = []
    for v in inputs.table_one.get("variables", []):
        if v.get("kind") == "numeric":
            p = value_of(v.get("stats", {}).get("overall", {}).get("missing_pct"))
        else:
            p = next(
                (
                    value_of(lv["stats"]["overall"].get("pct"))
                    for lv in v.get("levels", [])
                    if lv.get("level") == "missing"
                ),
                None,
            )
        if p:
            parts.append(f"{v.get('label') or v.get('name')} {p:.1f}%")
    if not inputs.table_one:
        return ""
    return (
        "Missing values in the evaluation data: " + ", ".join(parts) + "."
        if parts
        else "No feature has missing values in the evaluation data."
    )


def params_text(inputs: ReportInputs) -> str:
    params = inputs.model.get("params") or {}
    if not isinstance(params, Mapping) or not params:
        return ""
    items = []
    for k in sorted(params):
        text = repr(params[k]) if isinstance(params[k], str) else str(params[k])
        items.append(f"{k}={text if len(text) <= 40 else text[:39] + '…'}")
    return ", ".join(items)


def calibration_method(inputs: ReportInputs) -> str | None:
    method = inputs.model.get("calibration")
    return None if method is None else str(method)


def split_sizes(inputs: ReportInputs) -> list[str]:
    out = []
    for split, size in (inputs.model.get("split_sizes") or {}).items():
        if isinstance(size, Mapping):
            events = size.get("n_events", size.get("events"))
            out.append(
                f"{split} n = {count(size.get('n'))}" + (f" ({count(events)} events)" if events is not None else "")
            )
        else:
            out.append(f"{split} n = {count(size)}")
    return out


def evaluated_on(ev: Mapping[str, Any]) -> str:
    n, events = ev.get("n"), ev.get("n_events")
    where = ev.get("dataset") or "the evaluation data"
    split = f" ({ev['split']} split)" if ev.get("split") else ""
    return f"{where}{split}: n = {count(n)}, {count(events)} events (prevalence {pct(ev.get('prevalence'))})"


def headline(ev: Mapping[str, Any]) -> str:
    """The headline performance numbers of one evaluation on one line."""
    d, c = ev.get("discrimination", {}), ev.get("calibration", {})
    return (
        f"AUROC {est(d.get('auroc'))}; AUPRC {est(d.get('auprc'))}; Brier {est(c.get('brier'))}; "
        f"scaled Brier {est(c.get('scaled_brier'))}; calibration slope {est(c.get('slope'))}, "
        f"intercept {est(c.get('intercept'))}; ICI {num(c.get('ici'))}"
    )


def interval_method(ev: Mapping[str, Any]) -> str:
    b = ev.get("bootstrap") or {}
    if not b:
        return "Intervals: not computed."
    level = value_of(b.get("level")) or 0.95
    return f"Intervals: {level:.0%} {b.get('method', 'percentile')} bootstrap, {count(b.get('n'))} resamples" + (
        f", seed {b['seed']}." if b.get("seed") is not None else "."
    )


def subgroup_summary(ev: Mapping[str, Any]) -> list[str]:
    """One line per sensitive attribute: its groups, the gaps and which were flagged."""
    lines = []
    for sg in ev.get("subgroups") or []:
        groups = ", ".join(f"{g.get('group')} (n = {count(g.get('n'))})" for g in sg.get("groups", []))
        gaps = "; ".join(f"{k} gap {est(v)}" for k, v in (sg.get("gaps") or {}).items())
        flagged = ", ".join(sg.get("flagged") or []) or "none"
        lines.append(
            f"{sg.get('attribute')}: groups {groups}. Largest gaps: {gaps or 'not computed'}. Flagged: {flagged}."
        )
    return lines
