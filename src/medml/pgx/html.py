"""A pharmacogenomic result as one self-contained HTML page a clinician can read offline.

No script, no network: inline CSS and a Content-Security-Policy that forbids everything else. Every text from the
data (allele names, guideline text, messages, the sample id) is escaped. The page leads with what changes a
prescription, then the genes, every drug's CPIC recommendation, warfarin, what was not tested, and the limits.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

from medml.pgx.alerts import changes_prescription
from medml.pgx.cpic import Recommendation
from medml.pgx.pipeline import INTENDED_USE, LIMITS, DrugResult, PgxResult

__all__ = ["CSP", "render_html"]

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1f24;margin:0;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:24px 28px 60px;background:#fff}
h1{font-size:1.6em;margin:0 0 4px}
h2{font-size:1.25em;margin:32px 0 10px;border-bottom:2px solid #dde1e6;padding-bottom:4px}
h3{font-size:1.05em;margin:18px 0 6px}
.use{background:#fff4e5;border-left:5px solid #e8a33d;padding:10px 14px;margin:14px 0}
.meta{color:#555;font-size:.9em}
table{border-collapse:collapse;width:100%;margin:6px 0 12px;table-layout:auto}
th,td{border:1px solid #dde1e6;padding:6px 8px;text-align:left;vertical-align:top;overflow-wrap:anywhere}
th{background:#eef1f4;font-weight:600}
.action{border-left:5px solid #c62828;background:#fdecea;padding:8px 12px;margin:8px 0}
.routine{color:#2e7d32}
.tag{display:inline-block;border-radius:3px;padding:0 6px;font-size:.85em;font-weight:600;background:#e3e7eb}
.tag.Strong{background:#c8e6c9}.tag.Moderate{background:#fff3c4}.tag.Optional{background:#e1e5ea}
.warn{color:#8a4b00}
details{margin:4px 0 10px}summary{cursor:pointer;font-weight:600}
ul{margin:4px 0 8px 20px;padding:0}
.rec-text{white-space:pre-line}
footer{margin-top:36px;font-size:.85em;color:#555}
"""


def _e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def _list(items: Iterable[str], cls: str = "") -> str:
    items = list(items)
    if not items:
        return ""
    attr = f' class="{cls}"' if cls else ""
    return f"<ul{attr}>" + "".join(f"<li>{_e(i)}</li>" for i in items) + "</ul>"


def _strength(classification: str | None) -> str:
    c = classification or "n/a"
    return f'<span class="tag {_e(c.split()[0])}">{_e(c)}</span>'


def _recommendation(r: Recommendation, drug: DrugResult) -> str:
    found = ", ".join(f"{g}: {v}" for g, v in r.phenotypes)
    alt = "yes: see the text" if r.alternate_drug else "no"
    return (
        f"<tr><td>{_e(r.population or 'general')}</td><td>{_strength(r.classification)}</td>"
        f'<td>{_e(found)}</td><td class="rec-text">{_e(r.text)}</td><td>{_list(r.implications)}</td>'
        f"<td>{_e(alt)}</td></tr>"
    )


def _drug(d: DrugResult) -> str:
    head = (
        f'<h3 id="drug-{_e(d.drug.replace(" ", "-"))}">{_e(d.drug)}</h3><p class="meta">'
        f"{_e(d.guideline)} ({_e(', '.join(d.genes))}); {_e(d.version)}"
        f"{'; RxNorm ' + _e(d.rxnorm.removeprefix('RxNorm:')) if d.rxnorm else ''}</p>"
    )
    if not d.recommendations:
        body = "<p>No CPIC recommendation row matches these results.</p>"
    else:
        body = (
            "<table><thead><tr><th>population</th><th>strength</th><th>matched on</th><th>recommendation</th>"
            "<th>implications</th><th>alternative drug</th></tr></thead><tbody>"
            + "".join(_recommendation(r, d) for r in d.recommendations)
            + "</tbody></table>"
        )
    notes = _list((m.text for m in d.messages), "warn")
    return head + body + notes


def _genes(result: PgxResult) -> str:
    rows = []
    for gene, p in sorted(result.phenotypes.items()):
        call = result.calls.get(gene)
        dips = [d.label for d in call.diplotypes] if call else []
        if call and call.variants and not dips:
            dips = list(call.variants)
        results = [r for r in p.results if p.called]
        pheno = " or ".join(dict.fromkeys(r.phenotype or ", ".join(r.lookup_keys) for r in results)) or "-"
        score = " or ".join(dict.fromkeys(r.activity_score for r in results if r.activity_score)) or "-"
        functions = "; ".join(dict.fromkeys(" / ".join(r.functions) for r in results if r.functions)) or "-"
        source = "outside call" if p.source == "outside" else "VCF"
        notes = [*p.warnings, *(m.text for m in result.gene_messages.get(gene, ()) if m.kind != "footnote")]
        call_text = " or ".join(dips) if p.called else "not called"
        rows.append(
            f"<tr><td><b>{_e(gene)}</b></td><td>{_e(call_text)}</td><td>{_e(pheno)}</td><td>{_e(score)}</td>"
            f"<td>{_e(functions)}</td><td>{_e(source)}</td><td>{_list(notes, 'warn')}</td></tr>"
        )
    return (
        "<table><thead><tr><th>gene</th><th>diplotype</th><th>phenotype</th><th>activity score</th>"
        "<th>allele function</th><th>source</th><th>notes</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _actions(result: PgxResult) -> str:
    items = []
    for d in result.drugs:
        for r in d.recommendations:
            if changes_prescription(r):
                first = r.text.split("\n", 1)[0]
                found = ", ".join(f"{g} {v}" for g, v in r.phenotypes)
                items.append(
                    f'<div class="action"><b>{_e(d.drug)}</b> ({_e(r.population or "general")}) '
                    f'{_strength(r.classification)}: {_e(first)} <span class="meta">[{_e(found)}]</span>'
                    "</div>"
                )
    if not items:
        return '<p class="routine">No CPIC recommendation changes the usual prescription for these results.</p>'
    return "".join(items)


def _warfarin(result: PgxResult) -> str:
    w = result.warfarin
    if w is None:
        return "<p>CYP2C9, VKORC1 and CYP4F2 were not tested.</p>"

    def show(v: object) -> str:
        return "not tested" if v is None else str(v)

    rows = [
        ("CYP2C9", show(w.cyp2c9)),
        ("VKORC1 -1639 (rs9923231)", show(w.vkorc1)),
        ("CYP4F2*3 (rs2108622 T) copies", show(w.cyp4f2_star3_copies)),
        ("rs12777823 A copies", show(w.rs12777823_a_copies)),
        ("CYP2C9 *5, *6, *8, *11 tested", "yes" if w.cyp2c9_african_alleles_tested else "no"),
    ]
    table = (
        "<table><tbody>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows) + "</tbody></table>"
    )
    return table + _list(w.notes)


def _not_tested(result: PgxResult) -> str:
    if not result.not_tested:
        return "<p>Every gene was tested.</p>"
    rows = "".join(
        f"<tr><td><b>{_e(n.gene)}</b></td><td>{_e(n.status)}</td><td>{_e(n.reason)}</td></tr>"
        for n in result.not_tested
    )
    return "<table><thead><tr><th>gene</th><th>status</th><th>why</th></tr></thead><tbody>" + rows + "</tbody></table>"


def _versions(result: PgxResult) -> str:
    v = dict(result.versions)
    tables = v.pop("phenotype_tables", {})
    rows = "".join(
        f"<tr><th>{_e(k)}</th><td>{_e(', '.join(x) if isinstance(x, list) else x)}</td></tr>" for k, x in v.items()
    )
    rows += f"<tr><th>phenotype tables</th><td>{_e(', '.join(f'{g} {t}' for g, t in tables.items()))}</td></tr>"
    return f"<table><tbody>{rows}</tbody></table>"


def render_html(result: PgxResult) -> str:
    """The whole report as one HTML document (UTF-8 text)."""
    footnotes = [m.text for ms in result.gene_messages.values() for m in ms if m.kind == "footnote"]
    actionable = sorted(d.drug for d in result.drugs if d.actionable)
    routine = [d for d in result.drugs if not d.actionable]
    drugs = "".join(_drug(d) for d in result.drugs if d.actionable)
    routine_html = "".join(_drug(d) for d in routine)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Pharmacogenomic report: {_e(result.sample)}</title>
<style>{_CSS}</style></head>
<body><main>
<h1>Pharmacogenomic report</h1>
<p class="meta">Sample <b>{_e(result.sample)}</b>{" from " + _e(result.source) if result.source else ""};
generated {_e(result.generated)}; CPIC guideline data 2024-03.</p>
<div class="use"><b>Intended use.</b> {_e(INTENDED_USE)}</div>
<h2>What changes a prescription</h2>
{_actions(result)}
<h2>Genes</h2>
{_genes(result)}
<h2>Drugs whose recommendation changes the prescription</h2>
{drugs or "<p>None.</p>"}
<h2>Drugs at standard prescribing</h2>
<p class="meta">{len(routine)} drugs whose CPIC recommendation for these results is the usual prescription, or which
have no matching recommendation ({len(actionable)} above need attention).</p>
<details><summary>Show the {len(routine)} drugs</summary>{routine_html}</details>
<h2>Warfarin</h2>
{_warfarin(result)}
<h2>Not tested</h2>
{_not_tested(result)}
<h2>Limits</h2>
{_list(LIMITS)}
{("<h3>Notes on strand</h3>" + _list(dict.fromkeys(footnotes))) if footnotes else ""}
<h2>Versions</h2>
{_versions(result)}
<footer>Allele definitions and phenotypes: PharmCAT 3.1.1 data (MPL-2.0; CPIC/ClinPGx, CC BY-SA 4.0).
Recommendations: CPIC (CC0), cpicpgx.org. {_e(INTENDED_USE)}</footer>
</main></body></html>
"""
