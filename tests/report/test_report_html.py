"""The HTML report: sections in order, inline plots, nothing external, user text escaped, atomic writes."""

from __future__ import annotations

import dataclasses
import html
import re
from html.parser import HTMLParser

import pytest
from report_factory import SCRIPT_LABEL

from medml.errors import DataError
from medml.report import ReportInputs, render_report, write_report
from medml.report._format import est
from medml.report.sections import useful_range

HEADINGS = [
    "Summary",
    "Cohort characteristics",
    "Discrimination",
    "Calibration",
    "Clinical utility: decision curve",
    "Operating thresholds",
    "Performance by subgroup",
    "External validation",
    "Explanations",
    "Model card (TRIPOD+AI)",
]


class _Page(HTMLParser):
    """Collects h2 texts, tags, and every attribute that makes a browser fetch something."""

    def __init__(self) -> None:
        super().__init__()
        self.h2: list[str] = []
        self.tags: list[str] = []
        self.fetching: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in_h2 = tag == "h2"
        if self._in_h2:
            self.h2.append("")
        for k, v in attrs:
            if k in ("src", "href", "xlink:href", "action", "srcset", "poster", "data") and v:
                self.fetching.append(v)

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_h2 = False

    def handle_data(self, data):
        if self._in_h2:
            self.h2[-1] += data


@pytest.fixture(scope="module")
def page(inputs) -> str:
    return render_report(inputs)


@pytest.fixture(scope="module")
def parsed(page) -> _Page:
    p = _Page()
    p.feed(page)
    return p


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def test_every_section_heading_in_order(parsed):
    assert parsed.h2 == HEADINGS


def test_header_names_model_dataset_task_and_the_notice(page):
    head = page[: page.index('<nav class="toc">')]
    for text in (
        "sepsis-risk@1.2.0",
        "mimic-demo",
        "sepsis_within(hours=48)",
        "Decision support, not a diagnosis",
        "Flag adult inpatients at high risk of sepsis",
    ):
        assert text in html.unescape(head)


def test_one_inline_svg_per_plot(page, parsed):
    # ROC, precision-recall, calibration, decision curve, importance
    assert parsed.tags.count("svg") == 5
    assert page.count('<svg class="plot"') == 5
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))


def test_nothing_is_fetched_from_anywhere(page, parsed):
    assert "http://" not in page and "https://" not in page
    assert all(v.startswith("#") for v in parsed.fetching), parsed.fetching  # in-page anchors and glyph refs only
    assert "script" not in parsed.tags and "link" not in parsed.tags and "img" not in parsed.tags
    assert "@import" not in page and "url(" not in page.replace("url(#", "")
    assert "default-src 'none'" in page  # the browser itself refuses any fetch


def test_user_text_is_escaped(page):
    assert "<script" not in page
    assert html.escape(SCRIPT_LABEL, quote=True) in page  # in Table 1 and the model card


def test_headline_numbers_with_intervals(page, inputs):
    ev = inputs.evaluation
    text = _text(page)
    auroc = ev["discrimination"]["auroc"]
    assert re.fullmatch(r"0\.\d{3} \(0\.\d{3}-0\.\d{3}\)", est(auroc))
    assert est(auroc) in text
    assert est(ev["calibration"]["slope"]) in text
    assert f"{ev['n']:,}" in text and f"{ev['n_events']:,} events" in text


def test_thresholds_table_rows(page, inputs):
    section = page[page.index('id="thresholds"') : page.index('id="subgroups"')]
    assert section.count("<tr>") == 1 + len(inputs.evaluation["thresholds"])
    t = inputs.evaluation["thresholds"][1]
    assert f"{t['sensitivity']:.3f}" in section and f"{100 * t['flagged_fraction']:.1f}%" in section


def test_flagged_gaps_and_noted_groups_are_visible(page, inputs):
    section = page[page.index('id="subgroups"') : page.index('id="external"')]
    blocks = dict(zip(re.findall(r"<h3>([^<]+)", section), section.split("<h3>")[1:], strict=True))
    attrs = inputs.evaluation["subgroups"]
    assert any(sg["flagged"] for sg in attrs) and not all(sg["flagged"] for sg in attrs)  # the test sees both
    for sg in attrs:
        block = blocks[sg["attribute"] + " "]
        if sg["flagged"]:
            assert f'<span class="badge flag">flagged: {", ".join(sg["flagged"])}</span>' in block
            assert block.count('title="large gap"') == len(sg["flagged"])
            assert 'class="num flag"' in block
        else:
            assert "no large gap" in block and "num flag" not in block
        for g in sg["groups"]:
            if g["note"]:
                assert html.escape(g["note"], quote=True) in block
    noted = [g for sg in attrs for g in sg["groups"] if g["note"]]
    assert noted and section.count('<tr class="noted">') == len(noted)
    assert "Large performance gap between groups" in page[: page.index('id="cohort"')]


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ([0.09, 0.06, 0.03, 0.01, 0.0], "from 0.10 to 0.40."),
        ([0.09, 0.06, -0.01, 0.01, 0.0], "from 0.10 to 0.20, and intermittently above."),
        ([0.04, -0.1, -0.1, -0.1, -0.1], "does not exceed"),
    ],
)
def test_decision_curve_says_where_the_model_helps(model, expected):
    dc = {"threshold": [0.1, 0.2, 0.3, 0.4, 0.5], "model": model, "treat_all": [0.05, -0.05, -0.2, -0.4, -0.7]}
    assert expected in useful_range(dc)


def test_external_sites_in_their_own_table(page, inputs):
    section = _text(page[page.index('id="external"') : page.index('id="explanations"')])
    site = inputs.external[0]
    assert "site-B (2023)" in section and est(site["discrimination"]["auroc"]) in section


def test_examples_show_each_patient_and_factor(page):
    section = _text(page[page.index('id="explanations"') : page.index('id="model-card"')])
    assert "Patient P-0001" in section and "41.0%" in section
    assert "4.20 mmol/L" in section and "+0.610" in section and "-0.280" in section
    assert "missing" in section  # a factor without a value


def test_optional_sections_left_out_when_absent(inputs):
    bare = dataclasses.replace(inputs, external=[], importance=[], examples=[])
    p = _Page()
    p.feed(render_report(bare))
    assert p.h2 == [h for h in HEADINGS if h not in ("External validation", "Explanations")]


def test_minimal_inputs_render_with_gaps_marked():
    page = render_report(ReportInputs(evaluation={"model": "m", "n": 10, "n_events": 2}))
    assert "not computed" in page and "Table 1 was not computed" in page
    assert "<svg" not in page


def test_inputs_are_checked():
    with pytest.raises(DataError, match="no n, n_events"):
        ReportInputs(evaluation={"discrimination": {}})
    with pytest.raises(DataError, match="external evaluation 0"):
        ReportInputs(evaluation={"n": 1, "n_events": 0}, external=[{"auroc": 0.7}])


def test_write_report_is_atomic_and_replaces(tmp_path, inputs):
    target = tmp_path / "reports" / "sepsis.html"
    assert write_report(inputs, target) == target
    first = target.read_text(encoding="utf-8")
    assert first == render_report(inputs)
    write_report(dataclasses.replace(inputs, external=[], importance=[], examples=[]), target)
    assert target.read_text(encoding="utf-8") != first
    assert [p.name for p in target.parent.iterdir()] == ["sepsis.html"]  # no temporary file left behind


def test_write_report_leaves_the_old_file_when_the_write_fails(tmp_path, inputs, monkeypatch):
    target = tmp_path / "r.html"
    write_report(inputs, target)
    before = target.read_bytes()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("medml.report.html.os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_report(inputs, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]
