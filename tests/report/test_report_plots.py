"""The SVG plots: well-formed inline SVG, ids unique per plot, deterministic, sensible axes."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from medml.report import plots


def _all_plots(ev: dict, importance: list[dict]) -> dict[str, str | None]:
    d = ev["discrimination"]
    return {
        "roc": plots.roc_plot(ev["roc_curve"], d["auroc"], ev["thresholds"]),
        "pr": plots.pr_plot(ev["pr_curve"], d["auprc"], ev["prevalence"]),
        "cal": plots.calibration_plot(ev["calibration"]),
        "dca": plots.decision_curve_plot(ev["decision_curve"], ev["prevalence"]),
        "imp": plots.importance_plot(importance),
    }


def test_each_plot_is_one_parseable_svg_without_prolog_or_urls(inputs):
    for name, svg in _all_plots(inputs.evaluation, inputs.importance).items():
        assert svg is not None, name
        assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
        assert "<?xml" not in svg and "<!DOCTYPE" not in svg and "http" not in svg
        root = ET.fromstring(svg.replace("xlink:href", "href"))  # namespaces are implicit in HTML
        assert root.tag == "svg"
        assert len(root.findall(".//path")) > 5, name


def test_ids_are_unique_across_plots_and_references_resolve(inputs):
    svgs = [s for s in _all_plots(inputs.evaluation, inputs.importance).values() if s]
    ids = [i for s in svgs for i in re.findall(r'\bid="([^"]+)"', s)]
    assert len(ids) == len(set(ids))
    for s in svgs:
        own = set(re.findall(r'\bid="([^"]+)"', s))
        refs = re.findall(r'href="#([^"]+)"', s) + re.findall(r"url\(#([^)]+)\)", s)
        assert refs and set(refs) <= own


def test_same_input_same_bytes(inputs):
    ev = inputs.evaluation
    assert plots.roc_plot(ev["roc_curve"], ev["discrimination"]["auroc"]) == plots.roc_plot(
        ev["roc_curve"], ev["discrimination"]["auroc"]
    )


def test_missing_data_gives_no_plot():
    assert plots.roc_plot({}) is None
    assert plots.pr_plot({"recall": [0.1], "precision": [0.5]}) is None
    assert plots.calibration_plot({}) is None
    assert plots.decision_curve_plot({"threshold": [0.1, 0.2], "model": [0.1]}) is None
    assert plots.importance_plot([]) is None


def test_decision_curve_axis_is_clipped_near_the_prevalence():
    dc = {
        "threshold": [0.05, 0.2, 0.5, 0.8],
        "model": [0.09, 0.05, 0.01, 0.0],
        "treat_all": [0.05, -0.12, -0.8, -3.6],
        "treat_none": [0, 0, 0, 0],
    }
    low, high = plots.decision_curve_limits(dc, 0.1)
    assert high == pytest.approx(0.1 * 1.15)
    assert low == pytest.approx(-0.25 * high)  # treat-all's plunge to -3.6 does not squash the plot


def test_dollar_in_a_label_is_text_not_mathtext():
    svg = plots.importance_plot([{"feature": "cost", "label": "Cost $ per $ day", "unit": "", "importance": 1.0}])
    assert svg is not None and "<!-- Cost $ per $ day -->" in svg
    assert "Oblique" not in svg  # mathtext would set " per " in italic glyphs
