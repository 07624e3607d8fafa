"""The HTML report: what a clinician must read is there, every text is escaped, and it renders offline in Chromium
with no console error and no network request."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from medml.config import get_settings
from medml.pgx.html import CSP, render_html
from medml.pgx.pipeline import analyse_vcf

EXAMPLES = get_settings().data_root / "pgx" / "pharmcat-tests" / "examples"
pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="the shared PGx data is not here (set MEDML_DATA)")


@pytest.fixture(scope="module")
def result():
    return analyse_vcf(EXAMPLES / "pharmcat.example2.vcf")


def test_content_a_clinician_needs(result) -> None:
    page = render_html(result)
    assert f'content="{CSP}"' in page and "default-src 'none'" in page
    assert "<script" not in page and " src=" not in page and " href=" not in page  # nothing to fetch or follow
    for text in (
        "Sample_2",
        "CYP2C19",
        "*2/*2",
        "Poor Metabolizer",
        "clopidogrel",
        "Avoid clopidogrel",
        "Strong",
        "CPIC guideline annotation 2024-03-25-16-13",
        "CYP2D6 needs an outside call",
        "not a diagnosis",
        "laboratory",
        "2024-03",
        "Warfarin",
        "VKORC1 -1639 (rs9923231)",
    ):
        assert text in page, text
    # the prescription-changing section comes before the gene table
    assert page.index("What changes a prescription") < page.index("<h2>Genes</h2>")
    assert page.index("Avoid clopidogrel") < page.index("<h2>Genes</h2>")


def test_every_text_is_escaped(result) -> None:
    evil = "<script>alert(1)</script>&\"'"
    page = render_html(replace(result, sample=evil, source="x<img src=x onerror=alert(1)>.vcf"))
    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;&#x27;" in page


@pytest.mark.browser
def test_renders_offline_in_chromium(result, tmp_path: Path, open_offline) -> None:
    path = tmp_path / "pgx.html"
    path.write_text(render_html(result), encoding="utf-8")
    seen = open_offline(path, console=("error", "warning"))
    page = seen.page
    assert page.get_by_role("heading", level=1).is_visible()
    for heading in ("What changes a prescription", "Genes", "Warfarin", "Not tested", "Limits", "Versions"):
        assert page.get_by_role("heading", level=2, name=heading, exact=True).is_visible(), heading
    assert page.get_by_text("Avoid clopidogrel").first.is_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    assert seen.errors == [] and seen.external == []
