"""Internal validation (repeated cross-validation or bootstrap optimism correction) and Riley et al.'s minimum
sample size in words and tables, for the report, the model card and the CLI.

Reads the plain dicts training stores in a bundle's ``metadata.extra`` (``internal_validation``, ``sample_size``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medml.report._format import esc
from medml.report._html import Row, table
from medml.report.inputs import ReportInputs

LABELS = {"auroc": "AUROC", "brier": "Brier", "slope": "calibration slope", "intercept": "calibration intercept"}


def summary_lines(summary: Mapping[str, Any]) -> list[str]:
    """The internal validation in a few sentences: pooled and spread (CV) or apparent, optimism and corrected."""
    lines = [f"Internal validation: {summary['description']}; the whole search-calibrate-fit pipeline re-run in each."]
    apparent = summary["apparent"]
    if summary["method"] == "cv":
        pooled, folds = summary["pooled"], summary["fold_spread"]
        for m, label in LABELS.items():
            lines.append(
                f"{label}: pooled out-of-fold {pooled[m]['mean']:.3f}"
                + (f" (SD {pooled[m]['sd']:.3f} over repeats)" if summary.get("repeats", 1) > 1 else "")
                + f"; per fold mean {folds[m]['mean']:.3f}, SD {folds[m]['sd']:.3f}, range "
                f"{folds[m]['min']:.3f} to {folds[m]['max']:.3f}; apparent {apparent[m]:.3f} "
                f"(optimism {summary['optimism'][m]:+.3f})"
            )
    else:
        corrected, optimism = summary["corrected"], summary["optimism"]
        for m, label in LABELS.items():
            lines.append(
                f"{label}: apparent {apparent[m]:.3f}, optimism {optimism[m]:+.3f} "
                f"(SD {summary['optimism_spread'][m]['sd']:.3f} over samples), optimism-corrected {corrected[m]:.3f}"
            )
    lines.append(f"Final model: {summary['final_model']}.")
    return lines


def sample_size_lines(size: Mapping[str, Any]) -> list[str]:
    """Riley et al.'s minimum sample size beside the actual one, each assumption said."""
    lines = []
    for row in size["criteria"]:
        lines.append(
            f"Minimum sample size (Riley et al. 2020) {row['required']:,} ({row['events']:.0f} events, "
            f"{row['events_per_parameter']:.1f} per parameter) for {row['parameters']} candidate parameters at "
            f"prevalence {row['prevalence']:.3f}, anticipated Cox-Snell R2 {row['r2_cs']:.3f} ({row['r2_source']}): "
            f"shrinkage criterion {row['n_shrinkage']:,}, R2 optimism criterion {row['n_optimism']:,}, "
            f"overall risk precision criterion {row['n_intercept']:,}."
        )
    lines.append(f"Actual: {size['n']:,} rows ({size['n_events']:,} events, {size['patients']:,} patients).")
    if size.get("warning"):
        lines.append(f"Warning: {size['warning']}")
    return lines


def has_validation(i: ReportInputs) -> bool:
    return bool(i.model.get("internal_validation") or i.model.get("sample_size"))


def section(i: ReportInputs) -> str:
    """The report section: the validation's per-fold (or per-measure) table and its sentences, then sample size."""
    parts = []
    summary = i.model.get("internal_validation")
    if summary:
        parts.append(_validation_table(summary))
        parts.append("".join(f"<p>{esc(line)}</p>" for line in summary_lines(summary)))
    else:
        parts.append(
            '<p class="muted">Validated on one held-out patient split; `medml train --cv 5 --repeats N` or '
            "`--validation bootstrap` validates on all the data.</p>"
        )
    size = i.model.get("sample_size")
    if size:
        parts.append("<h3>Sample size</h3>" + _size_table(size))
        parts.append("".join(f"<p>{esc(line)}</p>" for line in sample_size_lines(size)))
    return "".join(parts)


def _validation_table(summary: Mapping[str, Any]) -> str:
    measures = list(LABELS)
    head = [esc(x) for x in ("", *(LABELS[m] for m in measures))]
    apparent = summary["apparent"]
    rows: list[Row] = []
    if summary["method"] == "cv":
        pooled, spread = summary["pooled"], summary["fold_spread"]
        rows.append(Row([esc("pooled out-of-fold"), *(f"{pooled[m]['mean']:.3f}" for m in measures)], "var"))
        rows.append(Row([esc("per fold: mean (SD)"), *_mean_sd(spread, measures)]))
        rows.append(
            Row([esc("per fold: range"), *(f"{spread[m]['min']:.3f} to {spread[m]['max']:.3f}" for m in measures)])
        )
        rows += [
            Row(
                [esc(f"repeat {f['repeat']}, fold {f['fold']} (n {f['n']}, {f['n_events']} events)")]
                + [f"{f[m]:.3f}" for m in measures]
            )
            for f in summary["per_fold"]
        ]
    rows.append(Row([esc("apparent (final model, all data)"), *(f"{apparent[m]:.3f}" for m in measures)]))
    rows.append(Row([esc("optimism"), *(f"{summary['optimism'][m]:+.3f}" for m in measures)]))
    if summary["method"] == "bootstrap":
        rows.append(Row([esc("optimism-corrected"), *(f"{summary['corrected'][m]:.3f}" for m in measures)], "var"))
    caption = (
        esc(summary["description"])
        + ". Optimism: apparent minus "
        + (
            "pooled out-of-fold."
            if summary["method"] == "cv"
            else "the mean over bootstrap samples of (on the sample minus on the original data)."
        )
    )
    return table(head, rows, caption=caption)


def _mean_sd(spread: Mapping[str, Any], measures: list[str]) -> list[str]:
    return [f"{spread[m]['mean']:.3f} ({spread[m]['sd']:.3f})" for m in measures]


def _size_table(size: Mapping[str, Any]) -> str:
    head = [
        esc(x) for x in ("anticipated R2 (Cox-Snell)", "shrinkage", "R2 optimism", "overall risk", "required", "actual")
    ]
    rows = [
        Row(
            [
                esc(f"{r['r2_cs']:.3f}: {r['r2_source']}"),
                f"{r['n_shrinkage']:,}",
                f"{r['n_optimism']:,}",
                f"{r['n_intercept']:,}",
                f"{r['required']:,}",
                (f"{size['n']:,}", "flag") if size["n"] < r["required"] else f"{size['n']:,}",
            ]
        )
        for r in size["criteria"]
    ]
    caption = esc(
        f"Riley et al. (BMJ 2020) criteria for a binary outcome: {size['parameters']} candidate parameters "
        f"({size['parameters_note']}); shrinkage 0.9, R2 optimism at most 0.05, overall risk within 0.05."
    )
    return table(head, rows, caption=caption)
