"""The report of a survival model: concordance, the time-dependent AUC, Kaplan-Meier curves by predicted risk
group, calibration at each horizon (predicted against Kaplan-Meier observed risk, the smoothed curve, the ICI),
D-calibration, explanations on the log hazard scale and the model card. ReportInputs -> HTML, text escaped."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from medml.report import plots
from medml.report import sections as perf
from medml.report import sections_context as ctx
from medml.report._facts import interval_method
from medml.report._format import clinical_name, count, esc, floats, num, pct, value_of
from medml.report._html import Cell, est_html, figure, table
from medml.report.inputs import ReportInputs
from medml.report.model_card import ANSWERED, model_card

Section = tuple[str, str, Callable[[ReportInputs], str]]
_GROUP_COLOURS = ("#2e8b57", plots.MODEL, plots.TREAT_ALL)


def is_survival(inputs: ReportInputs) -> bool:
    """Whether the evaluation is a survival model's (it carries Harrell's C)."""
    return "harrell_c" in (inputs.evaluation.get("discrimination") or {})


def survival_sections(inputs: ReportInputs) -> list[Section]:
    out: list[Section] = [
        ("summary", "Summary", summary),
        ("cohort", "Cohort characteristics", cohort),
        ("discrimination", "Discrimination", discrimination),
        ("calibration", "Calibration at each horizon", calibration),
        ("d-calibration", "D-calibration", d_calibration),
        ("subgroups", "Performance by subgroup", subgroups),
    ]
    if inputs.importance or inputs.examples:
        out.append(("explanations", "Explanations", explanations))
    out.append(("model-card", "Model card (TRIPOD+AI)", model_card_section))
    return out


def cohort(i: ReportInputs) -> str:
    """Table 1 by whether the event was observed during follow-up (not by the horizon)."""
    outcome = (i.model.get("survival") or {}).get("outcome") or i.target
    return perf.cohort(replace(i, dataset={**i.dataset, "target": f"{outcome} during follow-up"}))


def _horizons(i: ReportInputs) -> list[Mapping[str, Any]]:
    return list((i.evaluation.get("calibration") or {}).get("horizons") or [])


def _unit(i: ReportInputs) -> str:
    return str((i.model.get("survival") or {}).get("time_unit") or "days")


def summary(i: ReportInputs) -> str:
    ev = i.evaluation
    d, c = ev.get("discrimination", {}), ev.get("calibration", {})
    dcal = c.get("d_calibration") or {}
    first = (_horizons(i) or [{}])[0]
    h = f"{value_of(first.get('horizon')) or 0:g} {_unit(i)}"
    cards = [
        perf._card("Harrell's C", d.get("harrell_c"), "concordance; 0.5 = chance"),
        perf._card("Uno's C", d.get("uno_c"), f"IPCW, up to {num(d.get('uno_tau'), 0)} {_unit(i)}"),
        perf._card(f"AUC at {h}", d.get("auroc"), "time-dependent (cumulative/dynamic)"),
        perf._card("Integrated Brier", c.get("ibs"), "lower is better"),
        perf._card(f"Brier at {h}", c.get("brier"), "lower is better"),
        perf._card(f"ICI at {h}", c.get("ici"), "mean |observed - predicted|"),
        perf._card("D-calibration p", dcal.get("p_value"), "above 0.05: not rejected"),
        f'<div class="card"><div class="label">Patients</div><div class="value">{esc(count(ev.get("n")))}</div>'
        f'<div class="hint">{esc(count(ev.get("n_events")))} events observed ({esc(pct(ev.get("prevalence")))})'
        "</div></div>",
    ]
    where = " · ".join(esc(x) for x in (ev.get("dataset"), f"{ev.get('split')} split", ev.get("population")) if x)
    intro = f'<p class="muted">Evaluated on {where}. {esc(interval_method(ev))}</p>'
    return f'{intro}<div class="cards">{"".join(cards)}</div>'


def km_plot(groups: Sequence[Mapping[str, Any]], unit: str) -> str | None:
    """Kaplan-Meier curves of the patients in each group of predicted risk."""
    if not groups:
        return None
    with plots._style("km"):
        fig = plots._figure(6.4, 3.8)
        ax = fig.add_subplot()
        for k, g in enumerate(groups):
            t, s = floats(g.get("time")), floats(g.get("survival"))
            if t.size < 2 or t.size != s.size:
                continue
            colour = _GROUP_COLOURS[k % len(_GROUP_COLOURS)]
            ax.step(t, s, where="post", color=colour, linewidth=1.8, label=f"{g.get('group')} risk (n={g.get('n')})")
        ax.set_ylim(0, 1.02)
        ax.set_xlim(left=0)
        ax.set_xlabel(f"Time ({unit})")
        ax.set_ylabel("Kaplan-Meier survival")
        ax.set_title("Survival by predicted risk group")
        ax.legend(loc="lower left")
        return plots.figure_svg(fig, "km", "Kaplan-Meier curves by predicted risk group")


def discrimination(i: ReportInputs) -> str:
    d = i.evaluation.get("discrimination", {})
    unit = _unit(i)
    rows: list[list[Cell]] = [
        ["Harrell's C", (est_html(d.get("harrell_c")), "num"), "pairs ordered correctly among those comparable"],
        [
            "Uno's C",
            (est_html(d.get("uno_c")), "num"),
            f"weighted for censoring (IPCW), events up to {num(d.get('uno_tau'), 0)} {unit}",
        ],
    ]
    for a in d.get("td_auc") or []:
        rows.append(
            [
                f"AUC at {value_of(a.get('horizon')) or 0:g} {esc(unit)}",
                (est_html(a.get("auc")), "num"),
                "events by the horizon against patients still event-free after it",
            ]
        )
    numbers = table(["Measure", ("Value", "num"), "Reading"], rows)
    svg = km_plot(d.get("km_by_risk_group") or [], unit)
    return numbers + figure(
        svg,
        "Test patients split into thirds of predicted risk; curves far apart mean the model separates "
        "patients who die early from those who live long.",
        "Kaplan-Meier curves by predicted risk group",
    )


def horizon_plot(h: Mapping[str, Any], unit: str, index: int) -> str | None:
    """Predicted against Kaplan-Meier observed risk by the horizon, per group of predicted risk (95% intervals),
    with the smoothed calibration curve and the diagonal."""
    groups = h.get("groups") or {}
    pred, obs = floats(groups.get("predicted")), floats(groups.get("observed"))
    low, high = floats(groups.get("low")), floats(groups.get("high"))
    smooth = h.get("smooth") or {}
    sp, so = floats(smooth.get("predicted")), floats(smooth.get("observed"))
    if pred.size == 0:
        return None
    top = float(np.nanmax(np.concatenate([pred, high if high.size else obs, so, [0.05]])))
    lim = min(1.0, max(0.1, np.ceil(top * 11) / 10))
    prefix = f"cal{index}"
    with plots._style(prefix):
        fig = plots._figure(4.2, 4.0)
        ax = fig.add_subplot()
        ax.plot([0, lim], [0, lim], color=plots.REFERENCE, linestyle="--", linewidth=1)
        if sp.size >= 2 and sp.size == so.size:
            ax.plot(sp, so, color=plots.MODEL, linewidth=1.5, label="smoothed (Austin 2020)")
        if low.size == pred.size and high.size == pred.size:
            err = np.vstack([np.clip(obs - low, 0, None), np.clip(high - obs, 0, None)])
            ax.errorbar(
                pred,
                obs,
                yerr=err,
                fmt="o",
                color=plots.MODEL,
                ecolor=plots.MODEL_LIGHT,
                markersize=4.5,
                elinewidth=1.2,
                capsize=0,
                label="risk groups, Kaplan-Meier (95% CI)",
            )
        else:
            ax.plot(pred, obs, "o", color=plots.MODEL, markersize=4.5, label="risk groups")
        ax.set_xlim(0, lim)
        ax.set_ylim(0, lim)
        ax.set_aspect("equal")
        when = f"{value_of(h.get('horizon')) or 0:g} {unit}"
        ax.set_xlabel(f"Predicted risk by {when}")
        ax.set_ylabel(f"Observed risk by {when}")
        ax.set_title(f"Calibration at {when}")
        ax.legend(loc="upper left")
        return plots.figure_svg(fig, prefix, f"Calibration at {when}")


def calibration(i: ReportInputs) -> str:
    unit = _unit(i)
    c = i.evaluation.get("calibration", {})
    rows: list[list[Cell]] = []
    figures = []
    for k, h in enumerate(_horizons(i)):
        when = f"{value_of(h.get('horizon')) or 0:g} {unit}"
        rows.append(
            [
                esc(when),
                (esc(num(h.get("mean_predicted"))), "num"),
                (esc(num(h.get("observed"))), "num"),
                (est_html(h.get("brier")), "num"),
                (esc(num(h.get("ici"))), "num"),
                (esc(num(h.get("e50"))), "num"),
                (esc(num(h.get("e90"))), "num"),
            ]
        )
        figures.append(
            figure(
                horizon_plot(h, unit, k),
                f"Points: mean predicted risk against the Kaplan-Meier risk by {esc(when)} in each tenth of "
                "predicted risk; line: smoothed calibration; dashed: perfect calibration.",
                f"Calibration at {when}",
            )
        )
    head: list[Cell] = [
        "Horizon",
        ("Mean predicted risk", "num"),
        ("Observed (Kaplan-Meier)", "num"),
        ("Brier", "num"),
        ("ICI", "num"),
        ("E50", "num"),
        ("E90", "num"),
    ]
    caption = (
        "Observed: 1 - the Kaplan-Meier survival of all test patients at the horizon. Brier: the IPCW Brier score. "
        "ICI, E50, E90: mean, median and 90th percentile of |smoothed observed - predicted| over the patients "
        f"(Austin, Harrell and van Klaveren 2020). Integrated Brier score {est_html(c.get('ibs'))} over "
        f"{esc(num(_first(c.get('ibs_grid')), 0))}-{esc(num(_last(c.get('ibs_grid')), 0))} {esc(unit)}."
    )
    return table(head, rows, "", caption) + '<div class="plots">' + "".join(figures) + "</div>"


def _first(v: Any) -> Any:
    return v[0] if v else None


def _last(v: Any) -> Any:
    return v[-1] if v else None


def d_calibration(i: ReportInputs) -> str:
    dcal = (i.evaluation.get("calibration") or {}).get("d_calibration") or {}
    counts = floats(dcal.get("counts"))
    if counts.size == 0:
        return '<p class="unavailable">D-calibration was not computed.</p>'
    p = value_of(dcal.get("p_value"))
    verdict = (
        "not rejected: the predicted curves are calibrated as distributions"
        if p is not None and p > 0.05
        else "rejected: the predicted curves are not calibrated as distributions"
    )
    share = counts / counts.sum()
    rows: list[list[Cell]] = [
        [f"{k / counts.size:.1f}-{(k + 1) / counts.size:.1f}", (f"{counts[k]:.1f}", "num"), (pct(share[k]), "num")]
        for k in range(counts.size)
    ]
    return (
        f"<p>Haider et al. (2020): if the curves are right, each patient's predicted survival at their own time "
        f"is uniform, so each tenth should hold {pct(1 / counts.size)} of the patients (censored patients spread over "
        f"the tenths below theirs). Chi-square {esc(num(dcal.get('statistic'), 2))}, p = {esc(num(p))}: "
        f"{esc(verdict)}.</p>" + table(["Predicted survival at own time", ("Patients", "num"), ("Share", "num")], rows)
    )


def subgroups(i: ReportInputs) -> str:
    attributes = i.evaluation.get("subgroups") or []
    if not attributes:
        return '<p class="unavailable">No sensitive attributes were supplied, so no subgroup analysis was run.</p>'
    parts = ["<p>Harrell's C within each group of each sensitive attribute, with 95% bootstrap intervals.</p>"]
    for a in attributes:
        rows: list[list[Cell]] = [
            [
                esc(g.get("group")) + (f' <span class="muted">({esc(g["note"])})</span>' if g.get("note") else ""),
                (esc(count(g.get("n"))), "num"),
                (esc(count(g.get("n_events"))), "num"),
                (est_html(g.get("harrell_c")), "num"),
            ]
            for g in a.get("groups") or []
        ]
        gap = (a.get("gaps") or {}).get("harrell_c")
        caption = f"Gap (largest minus smallest C): {est_html(gap)}." if gap else ""
        parts.append(f"<h3>{esc(a.get('attribute'))}</h3>")
        parts.append(
            table(["Group", ("Patients", "num"), ("Events", "num"), ("Harrell's C", "num")], rows, "", caption)
        )
    return "".join(parts)


def _importance_plot(
    importance: Sequence[Mapping[str, Any]], top: int = 15, scale: str = "log hazard ratio"
) -> str | None:
    rows = sorted(
        (r for r in importance if value_of(r.get("importance")) is not None),
        key=lambda r: -(value_of(r.get("importance")) or 0.0),
    )[:top]
    if not rows:
        return None
    labels = [clinical_name(str(r.get("label") or r.get("feature")), str(r.get("unit") or ""))[:42] for r in rows]
    values = [value_of(r.get("importance")) or 0.0 for r in rows]
    with plots._style("simp"):
        fig = plots._figure(6.4, 0.9 + 0.28 * len(rows))
        ax = fig.add_subplot()
        y = np.arange(len(rows))[::-1]
        ax.barh(y, values, color=plots.MODEL, height=0.65)
        ax.set_yticks(y, labels)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel(f"Mean |contribution| to the {scale}")
        ax.set_title("Global feature importance")
        return plots.figure_svg(fig, "simp", "Global feature importance")


def explanations(i: ReportInputs) -> str:
    parts = []
    # the Cox kinds explain the log hazard ratio; the forest's occlusion, the risk by the first horizon
    scale = str(i.model.get("contribution_scale") or "log hazard ratio")
    if i.importance:
        parts.append(
            figure(
                _importance_plot(i.importance, scale=scale),
                f"Mean absolute contribution of each input to the predicted {esc(scale)} over the test patients "
                f"({esc(i.model.get('explanation_method') or '')}). Importance is not causation.",
                "Global feature importance",
            )
        )
    if i.examples:
        explained = (
            "Contributions on the log hazard ratio scale, relative to the average patient: positive raises the "
            "hazard, negative lowers it."
            if scale == "log hazard ratio"
            else f"Contributions on the {esc(scale)} scale, relative to a reference patient (training medians and "
            "most frequent levels): positive raises the risk, negative lowers it."
        )
        parts.append(
            "<h3>Example patients: top factors behind their risk</h3>"
            f'<p class="muted">{explained} Risk: by the first horizon.</p>'
        )
        parts.append('<div class="patients">' + "".join(ctx._patient(p) for p in i.examples) + "</div>")
    return "".join(parts)


def _survival_answers(i: ReportInputs) -> dict[str, str]:
    ev = i.evaluation
    d, c = ev.get("discrimination", {}), ev.get("calibration", {})
    unit = _unit(i)
    hs = ", ".join(f"{value_of(h.get('horizon')) or 0:g}" for h in _horizons(i))
    per = "; ".join(
        f"at {value_of(h.get('horizon')) or 0:g} {unit}: AUC {est_html(h.get('auc'))}, ICI {num(h.get('ici'))}"
        for h in _horizons(i)
    )
    return {
        "12e": (
            "Discrimination: Harrell's C and Uno's C (IPCW), the time-dependent (cumulative/dynamic) AUC at "
            f"{hs} {unit}; calibration at each horizon: IPCW Brier score, Kaplan-Meier observed against predicted "
            "risk by tenth of predicted risk, smoothed calibration with ICI, E50 and E90 (Austin et al. 2020); the "
            f"integrated Brier score; D-calibration (Haider et al. 2020). {interval_method(ev)}"
        ),
        "23a": (
            f"On {count(ev.get('n'))} test patients ({count(ev.get('n_events'))} events): Harrell's C "
            f"{est_html(d.get('harrell_c'))}, Uno's C {est_html(d.get('uno_c'))}, integrated Brier "
            f"{est_html(c.get('ibs'))}; {per}; D-calibration p = {num((c.get('d_calibration') or {}).get('p_value'))}."
        ),
    }


def model_card_section(i: ReportInputs) -> str:
    """The TRIPOD+AI card, its evaluation items answered in survival terms."""
    answers = _survival_answers(i)
    card = [
        e | {"answer": answers[e["item"]], "status": ANSWERED} if e["item"] in answers else e for e in model_card(i)
    ]
    done = [e for e in card if e["status"] == ANSWERED]
    todo = [e for e in card if e["status"] != ANSWERED]
    rows_done = [
        [
            esc(e["item"]),
            f"{esc(e['section'].title())} · {esc(e['topic'])}",
            e["answer"] if e["item"] in answers else esc(e["answer"]),
        ]
        for e in done
    ]
    rows_todo = [[esc(e["item"]), f"{esc(e['section'].title())} · {esc(e['topic'])}", esc(e["answer"])] for e in todo]
    return (
        f'<p>TRIPOD+AI reporting items: <span class="badge ok">{len(done)} answered</span> from the platform\'s '
        f'records, <span class="badge todo">{len(todo)} for the deployer</span>.</p>'
        "<h3>Answered by the platform</h3>"
        + table(["Item", "Checklist item", "Answer from the platform"], rows_done, "card-answered")
        + "<h3>To-do list for the deployer</h3>"
        + table(["Item", "Checklist item", "To write"], rows_todo, "card-todo")
    )
