"""The report's plots as inline SVG strings, drawn on matplotlib ``Figure`` objects (no pyplot, no global state).

Each plot's element ids carry a prefix of its own so that several plots on one page never collide, text is
drawn as paths (the page needs no font), and the SVG metadata is dropped (no URLs, no dates: same input,
same bytes).
"""

from __future__ import annotations

import html
import io
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from medml.report._format import clinical_name, floats, value_of

MODEL = "#1f5fa8"
MODEL_LIGHT = "#9dbbe0"
REFERENCE = "#8a8f98"
TREAT_ALL = "#c96a1b"

_RC: dict[str, Any] = {
    "svg.fonttype": "path",
    "text.parse_math": False,  # a "$" in a clinical label is text, not mathtext
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.labelsize": 9,
    "axes.edgecolor": "#555b63",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e3e6ea",
    "grid.linewidth": 0.6,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
}
_NO_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}
_MAX_LABEL = 42


@contextmanager
def _style(prefix: str) -> Iterator[None]:
    rc: Any = {**_RC, "svg.hashsalt": prefix}  # matplotlib types the keys as literals
    with mpl.rc_context(rc):
        yield


def figure_svg(fig: Figure, prefix: str, title: str) -> str:
    """``fig`` as an ``<svg>`` element for inline HTML: no XML prolog, no namespace URLs, ids prefixed."""
    buf = io.StringIO()
    with _style(prefix):
        fig.savefig(buf, format="svg", metadata=_NO_METADATA)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]
    # the HTML parser knows the SVG and xlink namespaces; declarations would only add URLs to the page
    svg = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", svg, count=2)
    svg = _prefix_ids(svg, prefix)
    attrs = f'<svg class="plot" role="img" aria-label="{html.escape(title, quote=True)}"'
    return svg.replace("<svg", attrs, 1)


def _prefix_ids(svg: str, prefix: str) -> str:
    ids = set(re.findall(r'\bid="([^"]+)"', svg))

    def ref(template: str) -> Callable[[re.Match[str]], str]:
        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            return template.format(f"{prefix}-{name}") if name in ids else m.group(0)

        return sub

    svg = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}-{m.group(1)}"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", ref("url(#{})"), svg)
    return re.sub(r'href="#([^"]+)"', ref('href="#{}"'), svg)


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained", facecolor="white")


def _unit_square(ax: Axes, lim: float = 1.0, square: bool = True) -> None:
    ax.plot([0, lim], [0, lim], color=REFERENCE, linestyle="--", linewidth=1)
    ax.set_xlim(0, lim)
    ax.set_ylim(0, lim)
    if square:
        ax.set_aspect("equal")


def _nice_upper(x: float) -> float:
    """The next tenth (or twentieth below 0.3) above ``x``, at most 1."""
    step = 0.05 if x < 0.3 else 0.1
    return float(min(1.0, math.ceil(x / step - 1e-9) * step)) if x > 0 else 1.0


def roc_plot(
    roc: Mapping[str, Sequence[Any]], auroc: Any = None, thresholds: Sequence[Mapping[str, Any]] = ()
) -> str | None:
    """ROC curve with the chance diagonal and the reported operating thresholds marked."""
    fpr, tpr = floats(roc.get("fpr")), floats(roc.get("tpr"))
    if fpr.size < 2 or fpr.size != tpr.size:
        return None
    with _style("roc"):
        fig = _figure(4.2, 4.0)
        ax = fig.add_subplot()
        _unit_square(ax)
        v = value_of(auroc)
        ax.plot(fpr, tpr, color=MODEL, linewidth=1.8, label="model" + (f" (AUROC {v:.3f})" if v is not None else ""))
        spec = floats([t.get("specificity") for t in thresholds])
        sens = floats([t.get("sensitivity") for t in thresholds])
        shown = np.isfinite(spec) & np.isfinite(sens)
        if shown.any():
            ax.plot(1 - spec[shown], sens[shown], "o", color=TREAT_ALL, markersize=4.5, label="operating thresholds")
        ax.set_xlabel("1 - specificity (false positive rate)")
        ax.set_ylabel("Sensitivity (true positive rate)")
        ax.set_title("ROC curve")
        ax.legend(loc="lower right")
        return figure_svg(fig, "roc", "ROC curve")


def pr_plot(pr: Mapping[str, Sequence[Any]], auprc: Any = None, prevalence: Any = None) -> str | None:
    """Precision-recall curve with the prevalence (a model without skill) as baseline."""
    recall, precision = floats(pr.get("recall")), floats(pr.get("precision"))
    if recall.size < 2 or recall.size != precision.size:
        return None
    with _style("pr"):
        fig = _figure(4.2, 4.0)
        ax = fig.add_subplot()
        v = value_of(auprc)
        ax.plot(
            recall,
            precision,
            color=MODEL,
            linewidth=1.8,
            label="model" + (f" (AUPRC {v:.3f})" if v is not None else ""),
            drawstyle="steps-post",
        )
        p = value_of(prevalence)
        if p is not None:
            ax.axhline(p, color=REFERENCE, linestyle="--", linewidth=1, label=f"prevalence ({p:.3f})")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_aspect("equal")
        ax.set_xlabel("Recall (sensitivity)")
        ax.set_ylabel("Precision (PPV)")
        ax.set_title("Precision-recall curve")
        ax.legend(loc="upper right")
        return figure_svg(fig, "pr", "Precision-recall curve")


def _wilson(p: np.ndarray, n: np.ndarray, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def _bin_spans(centres: np.ndarray, lim: float) -> tuple[np.ndarray, np.ndarray]:
    """Left edges and widths of bins around sorted ``centres``: edges halfway between neighbours."""
    c = centres
    if c.size == 1:
        return c - lim / 40, np.array([lim / 20])
    mid = (c[1:] + c[:-1]) / 2
    edges = np.concatenate([[max(0.0, c[0] - (mid[0] - c[0]))], mid, [min(lim, c[-1] + (c[-1] - mid[-1]))]])
    return edges[:-1], np.maximum(np.diff(edges), 1e-6)


def calibration_plot(calibration: Mapping[str, Any]) -> str | None:
    """Observed against predicted risk: binned points (95% Wilson intervals), the smoothed curve, the
    diagonal of perfect calibration, and below it the number of patients in each bin."""
    curve = calibration.get("curve") or {}
    smooth = calibration.get("smooth") or {}
    pred, obs, cnt = floats(curve.get("predicted")), floats(curve.get("observed")), floats(curve.get("count"))
    s_pred, s_obs = floats(smooth.get("predicted")), floats(smooth.get("observed"))
    if pred.size == 0 and s_pred.size < 2:
        return None
    top = np.nanmax(np.concatenate([pred, obs, s_pred, s_obs, [0.0]]))
    lim = _nice_upper(float(top) * 1.1)
    with _style("cal"):
        fig = _figure(4.6, 5.0)
        grid = fig.add_gridspec(2, 1, height_ratios=(4, 1))
        ax = fig.add_subplot(grid[0])
        _unit_square(ax, lim, square=False)  # the histogram below must line up with it
        if s_pred.size >= 2 and s_pred.size == s_obs.size:
            order = np.argsort(s_pred)
            ax.plot(s_pred[order], s_obs[order], color=MODEL, linewidth=1.6, label="smoothed (loess)")
        if pred.size and pred.size == obs.size:
            if cnt.size == pred.size:
                low, high = _wilson(obs, cnt)
                err = np.vstack([np.clip(obs - low, 0, None), np.clip(high - obs, 0, None)])
                ax.errorbar(
                    pred,
                    obs,
                    yerr=err,
                    fmt="o",
                    color=MODEL,
                    ecolor=MODEL_LIGHT,
                    markersize=4.5,
                    elinewidth=1.2,
                    capsize=0,
                    label="binned (95% CI)",
                )
            else:
                ax.plot(pred, obs, "o", color=MODEL, markersize=4.5, label="binned")
        ax.set_ylabel("Observed proportion")
        ax.set_title("Calibration")
        ax.legend(loc="upper left")
        ax.tick_params(labelbottom=False)
        hist = fig.add_subplot(grid[1], sharex=ax)
        if cnt.size and cnt.size == pred.size:
            by_risk = np.argsort(pred)
            left, width = _bin_spans(pred[by_risk], lim)
            # patients per percentage point of risk, so that wide (sparse) bins look sparse
            hist.bar(
                left,
                cnt[by_risk] / (100 * width),
                width=width,
                align="edge",
                color=MODEL_LIGHT,
                edgecolor=MODEL,
                linewidth=0.6,
            )
        hist.set_xlim(0, lim)
        hist.set_ylabel("Patients per\n1% of risk", fontsize=7.5)
        hist.set_xlabel("Predicted risk")
        hist.grid(axis="x", visible=False)
        return figure_svg(fig, "cal", "Calibration plot")


def decision_curve_limits(dc: Mapping[str, Sequence[Any]], prevalence: Any = None) -> tuple[float, float]:
    """Y-axis range for net benefit: up to a little above the best of model, treat-all and the prevalence
    (the most any strategy can gain), down to a quarter of that below zero, where treat-all soon plunges."""
    candidates = [value_of(prevalence) or 0.0]
    for key in ("model", "treat_all"):
        vals = floats(dc.get(key))
        if vals.size and np.isfinite(vals).any():
            candidates.append(float(np.nanmax(vals)))
    top = max(max(candidates), 0.01) * 1.15
    return -0.25 * top, top


def decision_curve_plot(dc: Mapping[str, Sequence[Any]], prevalence: Any = None) -> str | None:
    """Net benefit of the model against treating everyone and no one, over threshold probabilities."""
    t = floats(dc.get("threshold"))
    model = floats(dc.get("model"))
    if t.size < 2 or model.size != t.size:
        return None
    low, high = decision_curve_limits(dc, prevalence)
    with _style("dca"):
        fig = _figure(6.4, 3.8)
        ax = fig.add_subplot()
        treat_all = floats(dc.get("treat_all"))
        if treat_all.size == t.size:
            ax.plot(t, treat_all, color=TREAT_ALL, linewidth=1.3, label="treat all")
        none = floats(dc.get("treat_none"))
        ax.plot(
            t,
            none if none.size == t.size else np.zeros_like(t),
            color=REFERENCE,
            linewidth=1.3,
            linestyle="--",
            label="treat none",
        )
        ax.plot(t, model, color=MODEL, linewidth=1.9, label="model")
        ax.set_ylim(low, high)
        ax.set_xlim(float(np.nanmin(t)), float(np.nanmax(t)))
        ax.axhline(0, color="#555b63", linewidth=0.6)
        ax.set_xlabel("Threshold probability")
        ax.set_ylabel("Net benefit")
        ax.set_title("Decision curve")
        ax.legend(loc="upper right")
        return figure_svg(fig, "dca", "Decision curve")


def _short(text: str) -> str:
    return text if len(text) <= _MAX_LABEL else text[: _MAX_LABEL - 1] + "…"


def importance_plot(importance: Sequence[Mapping[str, Any]], top: int = 15) -> str | None:
    """Horizontal bars of global importance (mean |contribution|, log-odds), the largest on top."""
    rows = [r for r in importance if value_of(r.get("importance")) is not None]
    rows = sorted(rows, key=lambda r: -(value_of(r.get("importance")) or 0.0))[:top]
    if not rows:
        return None
    labels = [
        _short(clinical_name(str(r.get("label") or r.get("feature") or ""), str(r.get("unit") or ""))) for r in rows
    ]
    values = [value_of(r.get("importance")) or 0.0 for r in rows]
    with _style("imp"):
        fig = _figure(6.4, 0.9 + 0.28 * len(rows))
        ax = fig.add_subplot()
        ypos = np.arange(len(rows))[::-1]
        ax.barh(ypos, values, color=MODEL, height=0.65)
        ax.set_yticks(ypos, labels)
        ax.tick_params(axis="y", length=0)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel("Mean |contribution| to the log-odds of the outcome")
        ax.set_title("Global feature importance")
        ax.set_xlim(0, max(values) * 1.08 if max(values) > 0 else 1)
        return figure_svg(fig, "imp", "Global feature importance")


def deletion_plot(deletion: Mapping[str, Any]) -> str | None:
    """The deletion curve: the predicted class's mean score as pixels are deleted, most salient first against
    random order (a faithful saliency map drops faster)."""
    f = floats(deletion.get("fractions"))
    salient, random = floats(deletion.get("curve_saliency")), floats(deletion.get("curve_random"))
    if f.size < 2 or salient.size != f.size or random.size != f.size:
        return None
    with _style("del"):
        fig = _figure(4.6, 3.4)
        ax = fig.add_subplot()
        ax.plot(f, random, color=REFERENCE, linewidth=1.4, linestyle="--", label="random order")
        ax.plot(f, salient, color=MODEL, linewidth=1.9, label="most salient first")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("Fraction of pixels deleted")
        ax.set_ylabel("Mean score of the predicted class")
        ax.set_title("Deletion curve")
        ax.legend(loc="upper right")
        return figure_svg(fig, "del", "Deletion curve")
