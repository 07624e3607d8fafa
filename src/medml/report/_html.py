"""Small HTML building blocks for the report: tables, figures, sections, estimates with their interval."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from medml.report._format import esc, est

Cell = str | tuple[str, str]
"""A table cell: escaped HTML, or ``(escaped HTML, css class)``."""


@dataclass(frozen=True)
class Row:
    """A table row with a css class."""

    cells: Sequence[Cell]
    cls: str = ""


def est_html(x: Any, digits: int = 3) -> str:
    """``0.812 (0.790-0.833)`` with the interval in a muted span (the text reads the same)."""
    text = est(x, digits)
    if " (" not in text:
        return esc(text)
    value, ci = text.split(" (", 1)
    return f'{esc(value)} <span class="ci">({esc(ci)}</span>'


def _cell(tag: str, c: Cell) -> str:
    body, cls = (c, "") if isinstance(c, str) else c
    return f'<{tag} class="{cls}">{body}</{tag}>' if cls else f"<{tag}>{body}</{tag}>"


def table(head: Sequence[Cell], rows: Sequence[Sequence[Cell] | Row], cls: str = "", caption: str = "") -> str:
    """An HTML table in a horizontally scrollable wrapper, with a note below it (``caption``, escaped HTML)
    that wraps at the page's width however wide the table is."""
    out = [f'<div class="table-wrap"><table class="{cls}">' if cls else '<div class="table-wrap"><table>']
    out.append("<thead><tr>" + "".join(_cell("th", h) for h in head) + "</tr></thead><tbody>")
    for row in rows:
        r = row if isinstance(row, Row) else Row(row)
        tr = f'<tr class="{r.cls}">' if r.cls else "<tr>"
        out.append(tr + "".join(_cell("td", c) for c in r.cells) + "</tr>")
    out.append("</tbody></table></div>")
    if caption:
        out.append(f'<p class="caption">{caption}</p>')
    return "".join(out)


def figure(svg: str | None, caption: str, what: str) -> str:
    """A plot with its caption (escaped HTML), or a line saying it was not computed."""
    if svg is None:
        return f'<figure><p class="unavailable">{esc(what)}: not computed.</p></figure>'
    return f"<figure>{svg}<figcaption>{caption}</figcaption></figure>"


def section(anchor: str, title: str, body: str) -> str:
    """A titled report section that the table of contents links to."""
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{body}</section>'
