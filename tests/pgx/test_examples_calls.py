"""PharmCAT's two worked examples, gene by gene, at the call level.

The references are PharmCAT v3.1.0's own outputs bundled with the examples: the matcher JSON
(``<name>.match.json``: diplotypes and match scores) and ``expected_summary.json`` (source and recommendation
lookup diplotypes per gene). Outside calls (CYP2D6 here) are not the matcher's and are left out.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from medml.config import get_settings
from medml.pgx.calls import GeneCall
from medml.pgx.matcher import LOWEST_FUNCTION_GENES, call_genes
from medml.pgx.vcf import read_vcf_sample

EXAMPLES = get_settings().data_root / "pgx" / "pharmcat-tests" / "examples"
pytestmark = pytest.mark.skipif(not (EXAMPLES / "expected_summary.json").exists(), reason="examples not staged")
NAMES = ("pharmcat.example", "pharmcat.example2")


def _summary() -> dict[str, Any]:
    return dict(json.loads((EXAMPLES / "expected_summary.json").read_text(encoding="utf-8"))["examples"])


@pytest.fixture(scope="module")
def calls() -> dict[str, dict[str, GeneCall]]:
    summary = _summary()
    return {name: call_genes(read_vcf_sample(EXAMPLES.parent / summary[name]["vcf"])) for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_matcher_json_diplotypes_and_scores(name: str, calls: dict[str, dict[str, GeneCall]]) -> None:
    results = json.loads((EXAMPLES / f"{name}.match.json").read_text(encoding="utf-8"))["results"]
    assert {r["gene"] for r in results} == set(calls[name])
    for result in results:
        call = calls[name][result["gene"]]
        assert [d.label for d in call.diplotypes] == [d["name"] for d in result["diplotypes"]], result["gene"]
        assert list(call.variants) == [h["name"] for h in result["haplotypeMatches"]], result["gene"]
        if result["gene"] not in LOWEST_FUNCTION_GENES:  # we do not score variant-by-variant calls
            assert [d.score for d in call.diplotypes] == [d["score"] for d in result["diplotypes"]], result["gene"]


@pytest.mark.parametrize("name", NAMES)
def test_summary_source_and_lookup_diplotypes(name: str, calls: dict[str, dict[str, GeneCall]]) -> None:
    rows = [r for r in _summary()[name]["gene_calls"] if r["Outside Call"] == "no"]
    assert len(rows) == 19
    for row in rows:
        call = calls[name][row["Gene"]]
        assert call.diplotypes[0].label == row["Source Diplotype"], row["Gene"]
        assert call.lookup_diplotypes[0].label == row["Recommendation Lookup Diplotype"], row["Gene"]
