"""The section that shows a model beside the established scores measured on the same test patients (e.g. the
learned early-warning model beside NEWS2): from ``model["comparators"]`` of the report inputs, when a pipeline
wrote them into the bundle."""

from __future__ import annotations

from typing import Any

from medml.report._format import count, esc, est
from medml.report._html import est_html, table
from medml.report.inputs import ReportInputs


def has_comparators(i: ReportInputs) -> bool:
    return bool((i.model.get("comparators") or {}).get("rows"))


def section(i: ReportInputs) -> str:
    """A table: the model's AUROC on its test split, then each comparator's on the same test patients."""
    comp: dict[str, Any] = i.model["comparators"]
    auroc = (i.evaluation.get("discrimination") or {}).get("auroc")
    rows = [
        [
            esc(i.model_id),
            "test split rows",
            count(i.evaluation.get("n")),
            count(i.evaluation.get("n_events")),
            est_html(auroc),
        ]
    ]
    for r in comp["rows"]:
        rows.append([esc(r["name"]), esc(r["unit"]), count(r["n"]), count(r["n_events"]), est_html(r["auroc"])])
    return (
        table(["score", "per", "n", "events", "AUROC (95% CI)"], rows, caption=str(comp.get("title", "")))
        + f"<p>{esc(comp.get('note', ''))}</p>"
    )


def summary_line(i: ReportInputs) -> str:
    """One sentence for the model card: each comparator's AUROC on the same test patients."""
    comp = i.model.get("comparators") or {}
    parts = [f"{r['name']} {est(r['auroc'])} (per {r['unit']}, n={r['n']})" for r in comp.get("rows", [])]
    return "Beside it on the same test patients, AUROC: " + "; ".join(parts) + "." if parts else ""
