"""The report's subgroup, external validation, explanation and model card sections (ReportInputs -> HTML)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from medml.report import plots
from medml.report._format import count, esc, measure_digits, num, pct, value_of
from medml.report._html import Cell, Row, est_html, figure, table
from medml.report.checklist import load_checklist
from medml.report.inputs import ReportInputs
from medml.report.model_card import ANSWERED, model_card

# subgroup table columns: (key in a group dict, heading, how shown)
_GROUP_COLUMNS = (
    ("n", "n", "count"),
    ("n_events", "Events (prevalence)", "events"),
    ("auroc", "AUROC", "est"),
    ("auprc", "AUPRC", "est"),
    ("brier", "Brier", "est"),
    ("calibration_slope", "Calibration slope", "est"),
    ("sensitivity", "Sensitivity", "est"),
    ("specificity", "Specificity", "est"),
    ("ppv", "PPV", "est"),
)


def _show(x: Any, how: str, group: Mapping[str, Any]) -> str:
    if how == "events":
        return f'{esc(count(x))} <span class="ci">({esc(pct(group.get("prevalence")))})</span>'
    if how == "count":
        return esc(count(x))
    return est_html(x)


def _subgroup_table(sg: Mapping[str, Any]) -> str:
    flagged = set(sg.get("flagged") or [])
    gaps = sg.get("gaps") or {}
    head: list[Cell] = ["Group"] + [(esc(h), "num") for _, h, _ in _GROUP_COLUMNS]
    rows: list[list[Cell] | Row] = []
    for g in sg.get("groups", []):
        note = str(g.get("note") or "")
        name = esc(g.get("group"))
        if note:
            name += f' <span class="badge note">note</span><span class="group-note">{esc(note)}</span>'
        cells: list[Cell] = [name]
        cells += [(_show(g.get(k), how, g), "num flag" if k in flagged else "num") for k, _, how in _GROUP_COLUMNS]
        rows.append(Row(cells, "noted" if note else ""))
    if gaps:
        gap_cells: list[Cell] = ["Gap (max - min)"]
        for k, _, _ in _GROUP_COLUMNS:
            if k in gaps:
                mark = '<span class="flag-mark" title="large gap">⚠</span>' if k in flagged else ""
                gap_cells.append((mark + est_html(gaps[k]), "num flag" if k in flagged else "num"))
            else:
                gap_cells.append("")
        rows.append(Row(gap_cells, "gap"))
    t = num(sg.get("reference_threshold"))
    level = value_of(sg.get("gap_level")) or 0.95
    caption = (
        f"Sensitivity, specificity and PPV at the reference threshold {esc(t)}. Gap: the largest minus the "
        f"smallest group value; ⚠ a large gap, one whose {level:.0%} interval also excludes 0 (its column is "
        "shaded)."
    )
    other = [k for k in gaps if k not in {c for c, _, _ in _GROUP_COLUMNS}]
    if other:
        caption += " Other gaps: " + "; ".join(f"{esc(k)} {est_html(gaps[k])}" for k in other) + "."
    return table(head, rows, "subgroups stack", caption)


def subgroups(i: ReportInputs) -> str:
    groups = i.evaluation.get("subgroups") or []
    if not groups:
        return '<p class="unavailable">No sensitive attributes were supplied, so no subgroup analysis was run.</p>'
    parts = [
        "<p>Performance within each group of each sensitive attribute. Groups with too few patients or "
        "events carry a note and may have no estimate.</p>"
    ]
    for sg in groups:
        flagged = sg.get("flagged") or []
        badge = (
            f' <span class="badge flag">flagged: {esc(", ".join(flagged))}</span>'
            if flagged
            else ' <span class="badge ok">no large gap</span>'
        )
        parts.append(f"<h3>{esc(sg.get('attribute'))}{badge}</h3>{_subgroup_table(sg)}")
    return "".join(parts)


def classes(i: ReportInputs) -> str:
    """Multiclass and multilabel models: each class one-vs-rest, the macro-mean AUROC, the accuracy, and for
    multiclass the confusion matrix; the sections after this one show the pooled (image, class) pairs."""
    c = i.classes
    multiclass = c.get("task") == "multiclass"
    head: list[Cell] = ["Class" if multiclass else "Finding"] + [
        (h, "num")
        for h in (
            "Events (prevalence)",
            "Mean probability",
            "AUROC",
            "AUPRC",
            "Brier",
            "Calibration slope",
            "Calibration intercept",
        )
    ]
    rows: list[list[Cell] | Row] = []
    for r in c.get("per_class", []):
        rows.append(
            [
                esc(r.get("name")),
                (f'{esc(count(r.get("n_events")))} <span class="ci">({esc(pct(r.get("prevalence")))})</span>', "num"),
                (esc(pct(r.get("mean_probability"))), "num"),
                (est_html(r.get("auroc")) if r.get("auroc") else "no events and non-events", "num"),
                (esc(num(r.get("auprc"))), "num"),
                (esc(num(r.get("brier"))), "num"),
                (esc(num(r.get("calibration_slope"), 2)), "num"),
                (esc(num(r.get("calibration_intercept"), 2)), "num"),
            ]
        )
    boot = c.get("bootstrap", {})
    out = (
        f"<p>{esc(count(c.get('n')))} images, {len(c.get('classes', []))} "
        f"{'classes' if multiclass else 'findings (an image may have several)'}. "
        f"<strong>Macro-mean AUROC {est_html(c.get('macro_auroc'))}</strong> over {esc(c.get('macro_over', ''))}; "
        f"<strong>accuracy {est_html(c.get('accuracy'))}</strong>: {esc(c.get('accuracy_definition', ''))}. "
        f"Intervals: {esc(count(boot.get('n')))} bootstrap resamples of images, {esc(pct(boot.get('level'), 0))} "
        "percentile. The discrimination, calibration and decision-curve sections below pool every (image, class) "
        "pair (the micro-average).</p>"
        + table(
            head,
            rows,
            "classes",
            "Each class against all the others: is this class more probable in the "
            "images that show it? Calibration slope 1 and intercept 0 are ideal.",
        )
    )
    if multiclass and c.get("confusion"):
        names = [esc(n) for n in c.get("classes", [])]
        cm_head: list[Cell] = ["True \\ predicted", *[(n, "num") for n in names]]
        cm_rows: list[list[Cell] | Row] = [
            [names[k], *[(esc(count(v)), "num") for v in row]] for k, row in enumerate(c["confusion"])
        ]
        out += table(cm_head, cm_rows, "confusion", "Rows: the true class; columns: the most probable class.")
    return out


def external(i: ReportInputs) -> str:
    head: list[Cell] = ["Data"] + [
        (h, "num")
        for h in (
            "n",
            "Events",
            "AUROC",
            "AUPRC",
            "Brier",
            "Scaled Brier",
            "Calibration slope",
            "Calibration intercept",
            "ICI",
        )
    ]
    rows: list[list[Cell] | Row] = []
    for k, ev in enumerate([i.evaluation, *i.external]):
        d, c = ev.get("discrimination", {}), ev.get("calibration", {})
        name = esc(ev.get("dataset") or "site")
        if k == 0:
            name += ' <span class="badge note">development</span>'
        if ev.get("population"):
            name += f'<span class="group-note">{esc(ev["population"])}</span>'
        rows.append(
            Row(
                [
                    name,
                    (esc(count(ev.get("n"))), "num"),
                    (f"{esc(count(ev.get('n_events')))} ({esc(pct(ev.get('prevalence')))})", "num"),
                    (est_html(d.get("auroc")), "num"),
                    (est_html(d.get("auprc")), "num"),
                    (est_html(c.get("brier")), "num"),
                    (est_html(c.get("scaled_brier")), "num"),
                    (est_html(c.get("slope")), "num"),
                    (est_html(c.get("intercept")), "num"),
                    (esc(num(c.get("ici"))), "num"),
                ],
                "reference" if k == 0 else "",
            )
        )
    return (
        "<p>The same measures on data from other sites or periods; the first row is the development "
        "evaluation for comparison.</p>" + table(head, rows, "external stack")
    )


def _value_text(v: Any, unit: str) -> str:
    x = value_of(v) if not isinstance(v, str) else None
    if x is not None:
        text = f"{x:.0f}" if float(x).is_integer() else f"{x:.{measure_digits(x)}f}"
    else:
        text = "missing" if v is None else str(v)
    return f"{text} {unit}" if unit and text != "missing" else text


def _patient(p: Mapping[str, Any]) -> str:
    factors = p.get("factors") or []
    scale = max((abs(value_of(f.get("contribution")) or 0.0) for f in factors), default=0.0) or 1.0
    rows: list[list[Cell] | Row] = []
    for f in factors:
        c = value_of(f.get("contribution")) or 0.0
        side = "up" if c > 0 else "down"
        direction = f.get("direction") or ("raises risk" if c > 0 else "lowers risk")
        arrow = "↑" if c > 0 else "↓"
        bar = f'<span class="bar {side}" style="width:{max(2.0, 60 * abs(c) / scale):.0f}px"></span>'
        rows.append(
            [
                esc(f.get("label")),
                esc(_value_text(f.get("value"), str(f.get("unit") or ""))),
                f'<span class="{side}">{arrow} {esc(direction)}</span>',
                (f"{bar}{c:+.3f}", "num"),
            ]
        )
    body = (
        table(["Factor", "Value", "Effect", ("Contribution", "num")], rows)
        if rows
        else '<p class="unavailable">No factors recorded.</p>'
    )
    return (
        f'<div class="patient"><h3>Patient {esc(p.get("id"))} · predicted risk {esc(pct(p.get("risk")))}'
        f"</h3>{body}</div>"
    )


def explanations(i: ReportInputs) -> str:
    parts = []
    if i.importance:
        svg = plots.importance_plot(i.importance)
        parts.append(
            figure(
                svg,
                "Mean absolute contribution of each input to the predicted log-odds over the "
                "evaluation patients (the 15 largest). Importance is not causation.",
                "Global feature importance",
            )
        )
    if i.examples:
        parts.append(
            "<h3>Example patients: top factors behind their risk</h3>"
            '<p class="muted">Contributions on the log-odds scale: positive raises the predicted risk, '
            "negative lowers it.</p>"
        )
        parts.append('<div class="patients">' + "".join(_patient(p) for p in i.examples) + "</div>")
    if i.saliency:
        parts.append(_saliency(i.saliency, i.target))
    return "".join(parts)


_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def _saliency(s: Mapping[str, Any], target: str) -> str:
    """Heat maps over test images the model got right and wrong, and the deletion check of their faithfulness."""
    grid = str(s.get("grid_png") or "")
    img = (
        f'<img class="saliency" src="data:image/png;base64,{grid}" alt="Test images with their heat maps">'
        if grid and _BASE64.fullmatch(grid)
        else None
    )
    parts = [
        "<h3>Where the network looked</h3>",
        figure(
            img,
            f"{esc(s.get('method') or 'Grad-CAM')} heat maps over held-out test images (red: the regions "
            f"that raised the predicted class's score most), correct and incorrect at a probability of "
            f"{esc(num(s.get('threshold'), 2))} for {esc(target)}. Each caption gives the true label and the "
            "predicted probability. A heat map shows where the network looked, not why: check it against the "
            "anatomy.",
            "Saliency grid",
        ),
    ]
    d = s.get("deletion") or {}
    if d:
        sal, rnd = value_of(d.get("auc_saliency")), value_of(d.get("auc_random"))
        parts.append(
            figure(
                plots.deletion_plot(d),
                "Pixels are deleted (set to the image's mean) in steps, the "
                "most salient first or in random order, and the predicted class's score is read after "
                "each step. A faithful map lowers the score faster than random order.",
                "Deletion curve",
            )
        )
        rows = [
            ["Images", esc(count(d.get("n_images")))],
            ["Area under the deletion curve, most salient first (lower = more faithful)", esc(num(sal, 3))],
            [
                f"Area under the deletion curve, random order (mean of {esc(count(d.get('n_random')))})",
                esc(num(rnd, 3)),
            ],
            ["Images whose score fell faster than with random order", esc(pct(d.get("share_faster_than_random")))],
        ]
        verdict = (
            "The heat maps are more faithful than random order."
            if sal is not None and rnd is not None and sal < rnd
            else "The heat maps are not more faithful than random order: do not rely on them."
        )
        parts.append(table(["Faithfulness (deletion check)", ("Value", "num")], rows, caption=esc(verdict)))
    return "".join(parts)


def _item_cell(e: Mapping[str, str]) -> str:
    return f'{esc(e["section"].title())} · {esc(e["topic"])}<span class="item-text">{esc(e["text"])}</span>'


def model_card_section(i: ReportInputs) -> str:
    card = model_card(i)
    done = [e for e in card if e["status"] == ANSWERED]
    todo = [e for e in card if e["status"] != ANSWERED]
    checklist = load_checklist()
    source = (
        f'<p class="alert">Checklist: {esc(checklist.source)}.</p>'
        if checklist.embedded
        else f'<p class="muted small">Checklist: TRIPOD+AI 2024 ({esc(checklist.source)}).</p>'
    )
    intro = (
        f'<p>TRIPOD+AI reporting items: <span class="badge ok">{len(done)} answered</span> from the '
        f'platform\'s records, <span class="badge todo">{len(todo)} for the deployer</span> to write '
        "before the model is used or published.</p>"
    )
    answered = table(
        ["Item", "Checklist item", "Answer from the platform"],
        [[esc(e["item"]), _item_cell(e), esc(e["answer"])] for e in done],
        "card-answered",
    )
    to_do = table(
        ["", "Item", "Checklist item", "To write"],
        [
            [
                ('<span class="box">☐</span>', ""),
                esc(e["item"]),
                _item_cell(e),
                esc(e["answer"].removeprefix("To be written by the deployer: ")),
            ]
            for e in todo
        ],
        "card-todo",
    )
    return f"{intro}{source}<h3>Answered by the platform</h3>{answered}<h3>To-do list for the deployer</h3>{to_do}"
