"""The report's header, summary, cohort and performance sections: each ReportInputs -> HTML (text escaped)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medml.report import plots
from medml.report._facts import interval_method
from medml.report._format import (
    DASH,
    clinical_name,
    count,
    esc,
    est,
    floats,
    interval_of,
    measure_digits,
    num,
    pct,
    value_of,
)
from medml.report._html import Cell, Row, est_html, figure, table
from medml.report.inputs import ReportInputs
from medml.report.tables import GROUPS

# --- header and summary ---------------------------------------------------------------------------


def header(i: ReportInputs) -> str:
    m, d, ev = i.model, i.dataset, i.evaluation
    subtitle = " · ".join(esc(x) for x in ("Evaluation report", d.get("task"), d.get("key") or ev.get("dataset")) if x)
    facts = [
        ("Dataset", d.get("key") or ev.get("dataset")),
        ("Task", d.get("task")),
        ("Outcome", d.get("target")),
        ("Population", d.get("population") or ev.get("population")),
        ("Model kind", m.get("model_kind")),
        ("Calibration", m.get("calibration")),
        ("Created", m.get("created")),
        ("Code version", m.get("code_version")),
        ("Training data hash", m.get("data_hash")),
    ]
    meta = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts if v not in (None, ""))
    use = (
        f"<p><strong>Intended use.</strong> {esc(m['intended_use'])}</p>"
        if m.get("intended_use")
        else '<p class="muted">Intended use: not recorded.</p>'
    )
    return (
        f'<header><h1>{esc(i.model_id)}</h1><div class="subtitle">{subtitle}</div>'
        '<div class="notice"><strong>Decision support, not a diagnosis.</strong> This model estimates a '
        "risk to inform a clinician's judgement; it does not replace clinical assessment.</div>"
        f'{use}<dl class="meta">{meta}</dl></header>'
    )


def toc(entries: Sequence[tuple[str, str]]) -> str:
    return '<nav class="toc">' + "".join(f'<a href="#{a}">{esc(t)}</a>' for a, t in entries) + "</nav>"


def _card(label: str, x: Any, hint: str = "") -> str:
    v = value_of(x)
    ci = interval_of(x)
    ci_text = est(x).split(" (", 1)[1].rstrip(")") if ci else ""
    return (
        f'<div class="card"><div class="label">{esc(label)}</div>'
        f'<div class="value">{esc(num(v) if v is not None else DASH)}</div>'
        + (f'<span class="ci">95% CI {esc(ci_text)}</span>' if ci_text else "")
        + (f'<div class="hint">{esc(hint)}</div>' if hint else "")
        + "</div>"
    )


def flagged_gaps(ev: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    """(attribute, flagged metrics) for each sensitive attribute with a flagged gap."""
    return [
        (str(s.get("attribute")), list(s.get("flagged") or [])) for s in ev.get("subgroups") or [] if s.get("flagged")
    ]


def summary(i: ReportInputs) -> str:
    ev = i.evaluation
    d, c = ev.get("discrimination", {}), ev.get("calibration", {})
    cards = [
        _card("AUROC", d.get("auroc"), "discrimination; 0.5 = chance"),
        _card("AUPRC", d.get("auprc"), f"chance = prevalence {num(ev.get('prevalence'))}"),
        _card("Brier score", c.get("brier"), "lower is better"),
        _card("Scaled Brier", c.get("scaled_brier"), "1 = perfect, 0 = no skill"),
        _card("Calibration slope", c.get("slope"), "ideal 1; < 1: too extreme"),
        _card("Calibration intercept", c.get("intercept"), "ideal 0; > 0: underestimates"),
        _card("ICI", c.get("ici"), "mean |observed - predicted|"),
        f'<div class="card"><div class="label">Patients</div><div class="value">{esc(count(ev.get("n")))}</div>'
        f'<div class="hint">{esc(count(ev.get("n_events")))} events ({esc(pct(ev.get("prevalence")))})</div></div>',
    ]
    where = " · ".join(
        esc(x)
        for x in (ev.get("dataset"), f"{ev['split']} split" if ev.get("split") else "", ev.get("population"))
        if x
    )
    boot = esc(interval_method(ev))
    alert = ""
    if flagged_gaps(ev):
        items = "; ".join(f"{esc(a)}: {esc(', '.join(ms))}" for a, ms in flagged_gaps(ev))
        alert = (
            f'<div class="alert"><strong>Large performance gap between groups</strong> ({items}). '
            'See <a href="#subgroups">performance by subgroup</a>.</div>'
        )
    return f'<p class="muted">Evaluated on {where}. {boot}</p><div class="cards">{"".join(cards)}</div>{alert}'


# --- cohort ----------------------------------------------------------------------------------------


def _median_iqr(s: Mapping[str, Any], digits: int) -> str:
    med, q1, q3 = value_of(s.get("median")), value_of(s.get("q1")), value_of(s.get("q3"))
    if med is None:
        return DASH
    return f"{med:.{digits}f} [{num(q1, digits)}-{num(q3, digits)}]"


def _n_pct(n: Any, p: Any) -> str:
    v = value_of(p)
    return f"{count(n)} ({v:.1f}%)" if v is not None else DASH


def cohort(i: ReportInputs) -> str:
    t1 = i.table_one
    if not t1 or not t1.get("variables"):
        return '<p class="unavailable">Table 1 was not computed for this report.</p>'
    groups = t1.get("groups") or list(GROUPS)
    names = {"overall": "Overall", "no": f"{i.target}: no", "yes": f"{i.target}: yes"}
    head: list[Cell] = ["Characteristic"]
    head += [
        (f'{esc(names.get(g, g))}<br><span class="muted">n = {esc(count(t1["n"].get(g)))}</span>', "num")
        for g in groups
    ]
    head.append(("SMD", "num"))
    rows: list[list[Cell] | Row] = []
    for v in t1["variables"]:
        label = esc(clinical_name(str(v.get("label") or v.get("name")), str(v.get("unit") or "")))
        smd = (num(v.get("smd")), "num")
        if v.get("kind") == "numeric":
            stats = v.get("stats", {})
            digits = measure_digits(value_of(stats.get("overall", {}).get("median")))
            rows.append(
                [f"{label}, median [IQR]"] + [(_median_iqr(stats.get(g, {}), digits), "num") for g in groups] + [smd]
            )
            if any(stats.get(g, {}).get("missing") for g in groups):
                rows.append(
                    Row(
                        ["missing, n (%)"]
                        + [
                            (_n_pct(stats.get(g, {}).get("missing"), stats.get(g, {}).get("missing_pct")), "num")
                            for g in groups
                        ]
                        + [""],
                        "level",
                    )
                )
        else:
            rows.append(Row([f"{label}, n (%)"] + [""] * len(groups) + [smd], "var"))
            for lv in v.get("levels", []):
                st = lv.get("stats", {})
                rows.append(
                    Row(
                        [esc(lv.get("level"))]
                        + [(_n_pct(st.get(g, {}).get("n"), st.get(g, {}).get("pct")), "num") for g in groups]
                        + [""],
                        "level",
                    )
                )
    caption = (
        "Median [interquartile range] for numeric characteristics, n (%) of the column's patients for "
        'categorical ones (the commonest levels; the rest as "other"). SMD: standardised mean difference '
        "between patients with and without the outcome."
    )
    if t1.get("note"):
        caption += " " + str(t1["note"])
    return table(head, rows, "table-one", caption)


# --- performance -----------------------------------------------------------------------------------


def discrimination(i: ReportInputs) -> str:
    ev = i.evaluation
    d = ev.get("discrimination", {})
    roc = plots.roc_plot(ev.get("roc_curve") or {}, d.get("auroc"), ev.get("thresholds") or [])
    pr = plots.pr_plot(ev.get("pr_curve") or {}, d.get("auprc"), ev.get("prevalence"))
    return (
        f"<p>AUROC {est_html(d.get('auroc'))}; AUPRC {est_html(d.get('auprc'))} against a prevalence of "
        f'{esc(num(ev.get("prevalence")))}.</p><div class="plots">'
        + figure(roc, "Dots: the operating thresholds in the table below.", "ROC curve")
        + figure(pr, "Dashed: the precision of a model without skill.", "Precision-recall curve")
        + "</div>"
    )


def calibration(i: ReportInputs) -> str:
    c = i.evaluation.get("calibration", {})
    svg = plots.calibration_plot(c)
    rows: list[list[Cell]] = [
        ["Brier score", (est_html(c.get("brier")), "num"), "mean squared error of the risk; lower is better"],
        ["Scaled Brier", (est_html(c.get("scaled_brier")), "num"), "1 - Brier / Brier of the prevalence"],
        ["Calibration slope", (est_html(c.get("slope")), "num"), "ideal 1; below 1: risks too extreme"],
        ["Calibration intercept", (est_html(c.get("intercept")), "num"), "ideal 0; above 0: risks too low on average"],
        ["ICI", (esc(num(c.get("ici"))), "num"), "integrated calibration index (mean absolute error)"],
        ["ECE", (esc(num(c.get("ece"))), "num"), "expected calibration error over the bins"],
    ]
    numbers = table(["Measure", ("Value", "num"), "Reading"], rows)
    return (
        '<div class="plots wide">'
        + figure(
            svg,
            "Points: observed proportion per bin of predicted risk, with 95% intervals; line: "
            "loess-smoothed; dashed: perfect calibration. Bars: how predicted risks are spread (patients per "
            "percentage point of risk in each bin).",
            "Calibration plot",
        )
        + f"<div>{numbers}</div></div>"
    )


def useful_range(dc: Mapping[str, Sequence[Any]]) -> str:
    t, model, treat_all = (floats(dc.get(k)) for k in ("threshold", "model", "treat_all"))
    if t.size == 0 or model.size != t.size:
        return ""
    best_default = np.maximum(treat_all, 0) if treat_all.size == t.size else np.zeros_like(t)
    better = model > best_default + 1e-12
    if not better.any():
        return "The model's net benefit does not exceed treating everyone or no one at any threshold shown."
    # the first run of thresholds where the model is best; beyond it the margin is usually noise
    start = int(np.argmax(better))
    stop = start + (int(np.argmin(better[start:])) if not better[start:].all() else len(better) - start)
    text = (
        f"The model's net benefit exceeds both treating everyone and treating no one for thresholds from "
        f"{t[start]:.2f} to {t[stop - 1]:.2f}"
    )
    return text + (", and intermittently above." if better[stop:].any() else ".")


def decision_curve(i: ReportInputs) -> str:
    ev = i.evaluation
    dc = ev.get("decision_curve") or {}
    svg = plots.decision_curve_plot(dc, ev.get("prevalence"))
    return (
        f"<p>{esc(useful_range(dc))} Net benefit = true positives / n − false positives / n × t / (1 − t), "
        "where t is the risk at which a clinician would act.</p>"
        + figure(svg, "Y-axis clipped below zero: treat-all falls steeply at high thresholds.", "Decision curve")
    )


def thresholds(i: ReportInputs) -> str:
    rows = []
    for t in i.evaluation.get("thresholds") or []:
        rows.append(
            [(esc(num(t.get("threshold"))), "num")]
            + [(esc(num(t.get(k))), "num") for k in ("sensitivity", "specificity", "ppv", "npv")]
            + [(esc(pct(t.get("flagged_fraction"))), "num")]
            + [(esc(count(t.get(k))), "num") for k in ("tp", "fp", "tn", "fn")]
        )
    if not rows:
        return '<p class="unavailable">No operating thresholds were evaluated.</p>'
    head = [
        ("Risk threshold", "num"),
        ("Sensitivity", "num"),
        ("Specificity", "num"),
        ("PPV", "num"),
        ("NPV", "num"),
        ("Flagged", "num"),
        ("TP", "num"),
        ("FP", "num"),
        ("TN", "num"),
        ("FN", "num"),
    ]
    return table(
        head,
        rows,
        "",
        "Patients at or above the threshold are flagged. PPV: share of flagged patients "
        "with the outcome; NPV: share of the others without it.",
    )
