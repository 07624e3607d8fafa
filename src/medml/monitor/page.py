"""The monitoring page of one deployed model version: drift over time, estimated and realised AUROC and calibration,
realised performance by subgroup (overall and per window), and the alarms, as one self-contained HTML page
(``medml monitor report``) or a fragment the service shows at ``/monitor``.

The numbers come from the monitoring store and the bundle's reference profile through the same functions as
``medml monitor check`` (:func:`medml.monitor.check.check_models` for the windows and the alarms;
:mod:`medml.monitor.drift` and :mod:`medml.monitor.estimate` for the series drawn). The charts are inline SVG
styled by attributes only: no script, no style attribute, nothing fetched, so the page passes the service's
content security policy and opens offline.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from medml.errors import DataError, clip

if TYPE_CHECKING:
    from medml.config import Settings
    from medml.monitor.check import CheckResult
    from medml.monitor.store import MonitorStore
    from medml.registry import BundleMetadata

__all__ = ["MonitorView", "monitor_view", "recorded_models", "render_body", "render_document"]

DISCLAIMER = "Decision support, not a diagnosis."
ALARM_ROW = ' class="alarm"'
#: colours of the series (colour-blind safe: Okabe and Ito)
BLUE, ORANGE, GREEN, RED, GREY = "#0072B2", "#E69F00", "#009E73", "#D55E00", "#777777"


@dataclass(frozen=True)
class MonitorView:
    """Everything the page shows for one model version: its metadata, the per-window table (drift, estimated and
    realised performance and calibration) and the alarms."""

    ref: str
    metadata: BundleMetadata
    check: CheckResult
    windows: pd.DataFrame
    window_rule: str
    generated: str


def recorded_models(store: MonitorStore) -> list[str]:
    """``name@version`` of every model version (not shadow) with predictions in the store, newest version first."""
    if not store.path.exists():
        return []
    m = store.models()
    m = m[~m["shadow"]].sort_values(["model", "version"], ascending=[True, False])
    return [f"{model}@{int(version)}" for model, version in zip(m["model"], m["version"], strict=True)]


def _version_of(store: MonitorStore, name: str, version: int | None) -> int:
    if version is not None:
        return version
    for ref in recorded_models(store):
        model, _, v = ref.rpartition("@")
        if model == name:
            return int(v)
    raise DataError(
        f"the monitoring store {store.path} has no predictions of {clip(name)}",
        "deploy the model and let the service score patients (or score with `medml predict`) first",
    )


def monitor_view(
    store: MonitorStore, settings: Settings, model: str, *, window: int | str = 200, outcome: str | None = None
) -> MonitorView:
    """The page's numbers for ``model`` (``name@version``; a bare name: its newest version in the store). A model
    without a reference profile is a MonitorError before the store is read; one never scored, a DataError."""
    from medml.monitor.check import check_models
    from medml.monitor.drift import AlarmRule, drift
    from medml.monitor.estimate import estimate, realised
    from medml.monitor.profile import profile_of
    from medml.registry import BundleMetadata, show_model
    from medml.registry.store import parse_ref

    name, version = parse_ref(model)
    if version is None:
        version = _version_of(store, name, None)
    ref = f"{name}@{version}"
    metadata = BundleMetadata.from_dict(show_model(ref, settings)["metadata"], f"{ref} metadata")
    profile = profile_of(metadata)  # the clear message for a bundle without a reference profile comes first
    if not store.path.exists():
        raise DataError(f"no monitoring store at {store.path}", "the service creates it with the first prediction")
    [check] = check_models(store, settings, name, version, window=window, outcome=outcome)
    frame = store.joined(name, version, outcome=outcome, features=list(profile.features))
    scores = frame["score"].to_numpy(dtype=float)
    recorded = frame["threshold"].dropna()
    threshold = float(recorded.iloc[-1]) if len(recorded) else profile.threshold
    times = frame["time"].to_numpy() if isinstance(window, str) else None
    d = drift(profile, frame, scores, window=window, times=times, rule=AlarmRule())
    est = estimate(scores, threshold=threshold, windows=d.windows).to_frame()
    y = frame["outcome"].to_numpy(dtype=float)
    real = realised(y, scores, threshold=threshold, windows=d.windows, n_boot=200).frame
    table = check.windows.copy()
    tests = d.tests
    for kind, column in (("distribution", "max_psi"), ("score", "score_psi")):
        psi = tests[tests["test"] == kind].groupby("window")["psi"].max()
        table[column] = [float(psi.get(w, np.nan)) for w in table["window"]]
    top = (
        tests[tests["test"] == "distribution"].sort_values("psi", ascending=False).groupby("window")["feature"].first()
    )
    table["top_feature"] = [str(top.get(w, "")) for w in table["window"]]
    for name_, source in (("estimated", est), ("realised", real)):
        for col in ("brier", "prevalence"):
            table[f"{name_}_{col}"] = source[col].to_numpy()
    table["mean_risk"] = [float(scores[d.windows.rows(w)].mean()) for w in range(len(d.windows))]
    rule = f"windows of {window} predictions" if isinstance(window, int) else f"windows of {window}"
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    return MonitorView(ref, metadata, check, table, rule, generated)


# --- rendering ---------------------------------------------------------------------------------------------------


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(v: Any, digits: int = 3) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{float(v):.{digits}f}"


def _interval(row: Mapping[Any, Any], name: str) -> str:
    v, lo, hi = row.get(name), row.get(f"{name}_low"), row.get(f"{name}_high")
    if v is None or not math.isfinite(float(v)):
        return "-"
    if lo is None or hi is None or not (math.isfinite(float(lo)) and math.isfinite(float(hi))):
        return _num(v)
    return f"{_num(v)} ({_num(lo)}–{_num(hi)})"


@dataclass(frozen=True)
class Series:
    label: str
    values: Sequence[float]
    colour: str
    low: Sequence[float] | None = None
    high: Sequence[float] | None = None
    dashed: bool = False


def chart(
    title: str,
    series: Sequence[Series],
    n_windows: int,
    *,
    alarms: Sequence[int] = (),
    reference: tuple[str, float] | None = None,
    y_range: tuple[float, float] | None = None,
    y_label: str = "",
) -> str:
    """A line chart over windows as inline SVG: each series a line with dots (and its interval as a band), alarmed
    windows shaded red, an optional horizontal reference line. Text alternatives: the title and a table below."""
    width, height, left, right, top, bottom = 720, 240, 56, 150, 28, 34
    values = [v for s in series for v in (*s.values, *(s.low or ()), *(s.high or ())) if _finite(v)]
    if reference is not None:
        values.append(reference[1])
    lo, hi = y_range or ((min(values), max(values)) if values else (0.0, 1.0))
    if hi - lo < 1e-9:
        lo, hi = lo - 0.05, hi + 0.05
    pad = (hi - lo) * 0.08
    lo, hi = (lo, hi) if y_range else (lo - pad, hi + pad)
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(i: float) -> float:
        return left + (plot_w * (i + 0.5) / max(n_windows, 1))

    def y(v: float) -> float:
        return top + plot_h * (1 - (v - lo) / (hi - lo))

    out = [
        f'<svg class="monitor-chart" role="img" aria-label="{esc(title)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg" font-family="system-ui,sans-serif" '
        'font-size="11">',
        f"<title>{esc(title)}</title>",
        f'<text x="{left}" y="16" font-size="13" font-weight="600" fill="#222">{esc(title)}</text>',
    ]
    step = plot_w / max(n_windows, 1)
    for w in alarms:
        out.append(
            f'<rect x="{x(w) - step / 2:.1f}" y="{top}" width="{step:.1f}" height="{plot_h}" fill="{RED}" '
            'fill-opacity="0.12"><title>alarm in window ' + str(w) + "</title></rect>"
        )
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        out.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd" stroke-width="1"/>'
            f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end" fill="#444">{v:.2f}</text>'
        )
    out.append(
        f'<text x="14" y="{top + plot_h / 2:.1f}" transform="rotate(-90 14 {top + plot_h / 2:.1f})" '
        f'text-anchor="middle" fill="#444">{esc(y_label)}</text>'
    )
    ticks = sorted({0, n_windows - 1, *range(0, n_windows, max(1, n_windows // 8))})
    for i in ticks:
        if i >= 0:
            out.append(f'<text x="{x(i):.1f}" y="{height - 16}" text-anchor="middle" fill="#444">{i}</text>')
    out.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 2}" text-anchor="middle" fill="#444">window</text>')
    if reference is not None:
        label, v = reference
        out.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="{GREY}" '
            f'stroke-dasharray="2 3" stroke-width="1.5"/>'
            f'<text x="{left + plot_w + 6}" y="{y(v) + 4:.1f}" fill="{GREY}">{esc(label)}</text>'
        )
    for k, s in enumerate(series):
        if s.low is not None and s.high is not None:
            pts = [(i, lo_, hi_) for i, (lo_, hi_) in enumerate(zip(s.low, s.high, strict=True)) if _finite(lo_, hi_)]
            if pts:
                upper = " ".join(f"{x(i):.1f},{y(h):.1f}" for i, _, h in pts)
                lower = " ".join(f"{x(i):.1f},{y(lo_):.1f}" for i, lo_, _ in reversed(pts))
                out.append(f'<polygon points="{upper} {lower}" fill="{s.colour}" fill-opacity="0.15"/>')
        pts2 = [(i, v) for i, v in enumerate(s.values) if _finite(v)]
        if len(pts2) > 1:
            dash = ' stroke-dasharray="6 4"' if s.dashed else ""
            line = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in pts2)
            out.append(f'<polyline points="{line}" fill="none" stroke="{s.colour}" stroke-width="2"{dash}/>')
        for i, v in pts2:
            out.append(
                f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{s.colour}"><title>{esc(s.label)}, window '
                f"{i}: {v:.3f}</title></circle>"
            )
        out.append(
            f'<line x1="{left + plot_w + 6}" x2="{left + plot_w + 22}" y1="{top + 8 + 16 * k}" '
            f'y2="{top + 8 + 16 * k}" stroke="{s.colour}" stroke-width="2"'
            + (' stroke-dasharray="6 4"' if s.dashed else "")
            + f'/><text x="{left + plot_w + 26}" y="{top + 12 + 16 * k}" fill="#222">{esc(s.label)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def _finite(*values: Any) -> bool:
    return all(v is not None and isinstance(v, int | float) and math.isfinite(v) for v in values)


def render_body(view: MonitorView, *, links: bool = False) -> str:
    """The page's content (no ``<html>``, no style): headings, the alarms, three charts and the window table.
    ``links``: name the service's model card page (``/models/NAME/VERSION``)."""
    md, check, t = view.metadata, view.check, view.windows
    n = len(t)
    rows = t.to_dict("records")
    alarmed = [int(r["window"]) for r in rows if r["alarm"]]
    name, _, version = view.ref.rpartition("@")
    card = f' · <a href="/models/{esc(name)}/{esc(version)}">model card</a>' if links else ""
    dev = check.dev_auroc
    out = [
        f'<h1>Monitoring: {esc(view.ref)}</h1><p class="monitor-intro">{esc(md.task)} · '
        f"{esc(md.model_kind)} on {esc(md.dataset)}{card}</p>",
        f'<p class="monitor-use"><b>Intended use.</b> {esc(md.intended_use)}</p>',
        f"<p>{check.n:,} predictions recorded, {check.outcomes:,} with their outcome; {esc(view.window_rule)}. "
        f"Estimated performance (CBPE) assumes the model is calibrated on the patients it scores: it cannot see a "
        f"change in how the features relate to the outcome; realised performance can, once outcomes arrive. "
        f"Intervals are 95%. Generated {esc(view.generated)}.</p>",
        "<h2>Alarms</h2>",
    ]
    if check.findings:
        out.append('<ul class="monitor-alarms">')
        out += [f"<li><b>{esc(f.kind)}</b>: {esc(f.message)}</li>" for f in check.findings]
        out.append("</ul>")
    else:
        out.append('<p class="monitor-ok">No alarm in any window.</p>')
    out.append(
        f'<p class="muted">Alarm rule: {esc(check.rule)}; performance alarms when a window\'s realised AUROC '
        "interval lies below the development AUROC's.</p>"
    )
    out += [f'<p class="muted">Alarm rule: {esc(x)}.</p>' for x in (check.estimated_rule, check.subgroup_rule) if x]
    out += [
        "<h2>Drift</h2>",
        chart(
            "Largest feature PSI and score PSI per window",
            [
                Series("largest feature PSI", [r["max_psi"] for r in rows], BLUE),
                Series("score PSI", [r["score_psi"] for r in rows], ORANGE, dashed=True),
            ],
            n,
            alarms=alarmed,
            reference=("PSI 0.1", 0.1),
            y_label="PSI",
        ),
        "<h2>Discrimination</h2>",
        chart(
            "AUROC per window: estimated (CBPE) and realised",
            [
                Series(
                    "estimated",
                    [r["estimated_auroc"] for r in rows],
                    BLUE,
                    [r["estimated_auroc_low"] for r in rows],
                    [r["estimated_auroc_high"] for r in rows],
                    dashed=True,
                ),
                Series(
                    "realised",
                    [r["realised_auroc"] for r in rows],
                    GREEN,
                    [r["realised_auroc_low"] for r in rows],
                    [r["realised_auroc_high"] for r in rows],
                ),
                Series("estimate alarms under", [r.get("estimated_floor", math.nan) for r in rows], RED, dashed=True),
            ],
            n,
            alarms=alarmed,
            reference=("development" if dev else "", dev[0]) if dev else None,
            y_label="AUROC",
        ),
        "<h2>Calibration</h2>",
        chart(
            "Mean predicted risk and observed event rate per window",
            [
                Series("mean predicted risk", [r["mean_risk"] for r in rows], BLUE, dashed=True),
                Series("observed rate", [r["realised_prevalence"] for r in rows], GREEN),
            ],
            n,
            alarms=alarmed,
            y_label="risk",
        ),
        chart(
            "Brier score per window: expected (if calibrated) and realised",
            [
                Series(
                    "expected",
                    [r["estimated_brier"] for r in rows],
                    BLUE,
                    dashed=True,
                ),
                Series("realised", [r["realised_brier"] for r in rows], GREEN),
            ],
            n,
            alarms=alarmed,
            y_label="Brier",
        ),
        "<h2>Windows</h2>",
        '<table class="monitor-windows"><thead><tr><th>window</th><th>from</th><th>to</th><th class="num">n</th>'
        '<th>drift</th><th>features named</th><th class="num">largest PSI</th><th>estimated AUROC</th>'
        '<th>realised AUROC</th><th class="num">mean risk</th><th class="num">observed</th>'
        '<th class="num">outcomes</th><th class="num">estimate alarms under</th><th>calibration slope</th>'
        "</tr></thead><tbody>",
    ]
    for r in rows:
        out.append(
            f"<tr{ALARM_ROW if r['alarm'] else ''}><td>{int(r['window'])}</td><td>{esc(r['start'])}</td>"
            f'<td>{esc(r["end"])}</td><td class="num">{int(r["n"]):,}</td>'
            f"<td>{'ALARM' if r['alarm'] else 'ok'}</td><td>{esc(clip(str(r['features']), 80))}</td>"
            f'<td class="num">{_num(r["max_psi"])}</td><td>{esc(_interval(r, "estimated_auroc"))}</td>'
            f'<td>{esc(_interval(r, "realised_auroc"))}</td><td class="num">{_num(r["mean_risk"])}</td>'
            f'<td class="num">{_num(r["realised_prevalence"])}</td><td class="num">{int(r["n_outcomes"]):,}</td>'
            f'<td class="num">{_num(r.get("estimated_floor"))}</td>'
            f"<td>{esc(_interval(r, 'realised_calibration_slope'))}</td></tr>"
        )
    out.append("</tbody></table>")
    out += _subgroup_section(check)
    if dev:
        out.append(f"<p>Development AUROC (held-out test split): {_num(dev[0])} ({_num(dev[1])}–{_num(dev[2])}).</p>")
    out.append(
        f'<p class="muted">{DISCLAIMER} The risks are calibrated probabilities from {esc(md.dataset)}; '
        "a window's alarm says the inputs or the performance changed, not why.</p>"
    )
    return "".join(out)


def _subgroup_row(r: Mapping[Any, Any], *, window: bool, alarm: bool) -> str:
    first = f'<td class="num">{int(r["window"])}</td>' if window else ""
    reference = f'<td class="num">{_num(r.get("reference"))}</td>' if window else ""
    return (
        f"<tr{ALARM_ROW if alarm else ''}>{first}<td>{esc(r['attribute'])}</td><td>{esc(r['group'])}</td>"
        f'<td class="num">{int(r["n"]):,}</td><td class="num">{int(r["n_outcomes"]):,}</td>'
        f'<td class="num">{int(r["events"]):,}</td><td>{esc(_interval(r, "auroc"))}</td>{reference}'
        f"<td>{esc(_interval(r, 'calibration_slope'))}</td><td>{esc(_interval(r, 'calibration_intercept'))}</td>"
        f'<td class="num">{_num(r.get("expected"))}</td><td class="num">{_num(r.get("prevalence"))}</td></tr>'
    )


def _subgroup_section(check: CheckResult) -> list[str]:
    """Realised performance per subgroup over all windows and in each window (cells with outcomes), with the
    subgroup rule's alarms marked, and the attributes that cannot be watched."""
    out = ["<h2>Subgroups</h2>"]
    out += [f"<p>{esc(name)} is not watched: {esc(why)}.</p>" for name, why in check.unwatched.items()]
    if check.subgroups.empty or not check.outcomes:
        out.append("<p>No subgroup has outcomes yet.</p>")
        return out
    cells = check.subgroup_windows
    hit = cells[cells["alarm"]] if not cells.empty else cells
    alarmed = set(zip(hit["attribute"], hit["group"], strict=True)) if not hit.empty else set()
    head = (
        '<th>attribute</th><th>group</th><th class="num">n</th><th class="num">outcomes</th><th class="num">events'
        "</th><th>realised AUROC</th>"
    )
    tail = (
        '<th>calibration slope</th><th>calibration intercept</th><th class="num">expected</th>'
        '<th class="num">observed</th></tr></thead><tbody>'
    )
    out.append(
        "<p>Realised performance of each group with 95% bootstrap intervals; expected is the mean predicted risk "
        "of the patients with outcomes, observed their event rate. AUROC and calibration need 10 events and 10 "
        "non-events in the group.</p>"
    )
    out.append(f'<table class="monitor-subgroups"><thead><tr>{head}{tail}')
    for r in check.subgroups.to_dict("records"):
        out.append(_subgroup_row(r, window=False, alarm=(r["attribute"], r["group"]) in alarmed))
    out.append("</tbody></table>")
    shown = cells[cells["n_outcomes"] > 0] if not cells.empty else cells
    if not shown.empty:
        out.append(
            '<h3>By window</h3><table class="monitor-subgroup-windows"><thead><tr><th class="num">window</th>'
            f'{head}<th class="num">reference</th>{tail}'
        )
        for r in shown.to_dict("records"):
            out.append(_subgroup_row(r, window=True, alarm=bool(r["alarm"])))
        out.append("</tbody></table>")
    return out


_CSS = (
    "body{font:14px/1.45 system-ui,sans-serif;color:#222;margin:0 auto;max-width:1000px;padding:1rem 1.5rem}"
    "h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:1.6rem;border-bottom:1px solid #ddd}"
    "table{border-collapse:collapse;font-size:12px}th,td{border-bottom:1px solid #eee;padding:.25rem .4rem;"
    "text-align:left;vertical-align:top}td.num,th.num{text-align:right}tr.alarm td{background:#fbe9e1}"
    ".muted{color:#666}.monitor-alarms li{margin:.2rem 0}.monitor-ok{color:#00704f}"
    "svg.monitor-chart{max-width:100%;height:auto;display:block;margin:.5rem 0}"
)


def render_document(view: MonitorView) -> str:
    """A self-contained HTML page (inline CSS and SVG, no script, nothing fetched)."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        'img-src data:">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Monitoring {esc(view.ref)} · medml</title><style>{_CSS}</style></head><body>"
        f"{render_body(view)}</body></html>\n"
    )
