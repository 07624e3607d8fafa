"""Checkers for the phenotype and recommendation expectations of PharmCAT's test suite (``pharmcat-tests``).

Signature, for the conformance runner::

    CHECKS[expectation["type"]](case_calls, expectation) -> (passed, reason)

``case_calls`` is ``{gene: GeneCall}`` for one case (VCF calls and outside calls together; outside calls win, as in
PharmCAT); ``expectation`` is one entry of the case's ``expect`` list. ``reason`` says what was found. Only CPIC is
in scope: an expectation about DPWG, FDA or ``ALL`` sources is answered ``(False, "skipped: ...")``;
:func:`applies` tells the runner which ones to count. Types: ``recommended_phenotype``,
``source_phenotype_contains``, ``lookup_activity_score``, ``matched_annotation_count``, ``has_match_from_source``,
``no_match_from_source``.

:func:`case_calls_from_expectations` builds ``case_calls`` from a case's own expectations (``recommended_diplotype``,
``source_diplotypes``, ``print_calls``) and outside-call files, so these checks can run without the VCF matcher.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from medml.errors import NotFoundError
from medml.pgx.calls import Diplotype, GeneCall
from medml.pgx.cpic import recommendations_for
from medml.pgx.outside import read_outside_calls
from medml.pgx.phenotype import GenePhenotype, pgx_data_root, phenotypes

__all__ = ["CHECKS", "applies", "case_calls_from_expectations", "example_calls"]

Check = Callable[[Mapping[str, GeneCall], Mapping[str, Any]], tuple[bool, str]]
_SOURCE = "CPIC_GUIDELINE"


def applies(expectation: Mapping[str, Any]) -> bool:
    """Whether an expectation is one these checks answer (a phenotype one, or a CPIC-source one)."""
    if expectation.get("type") not in CHECKS:
        return False
    return expectation.get("source", _SOURCE) == _SOURCE


def _phenotypes(case_calls: Mapping[str, GeneCall]) -> dict[str, GenePhenotype]:
    return phenotypes(case_calls.values())


def _gene_values(case_calls: Mapping[str, GeneCall], gene: str) -> tuple[list[str], GenePhenotype | None]:
    p = _phenotypes(case_calls).get(gene)
    if p is None:
        return [], None
    values = [v for r in p.results for v in (r.phenotype, r.activity_score, *r.lookup_keys) if v]
    return values, p


def _recommended_phenotype(case_calls: Mapping[str, GeneCall], e: Mapping[str, Any]) -> tuple[bool, str]:
    _, p = _gene_values(case_calls, e["gene"])
    got = list(p.phenotypes) if p else []
    return e["value"] in got, f"{e['gene']} phenotypes {got}"


def _source_phenotype_contains(case_calls: Mapping[str, GeneCall], e: Mapping[str, Any]) -> tuple[bool, str]:
    values, _ = _gene_values(case_calls, e["gene"])
    return e["value"] in values, f"{e['gene']} phenotypes/lookup keys {values}"


def _lookup_activity_score(case_calls: Mapping[str, GeneCall], e: Mapping[str, Any]) -> tuple[bool, str]:
    _, p = _gene_values(case_calls, e["gene"])
    keys = [k for r in p.results for k in r.lookup_keys] if p else []
    return e["value"] in keys, f"{e['gene']} lookup keys {keys}"


def _skip(e: Mapping[str, Any]) -> tuple[bool, str] | None:
    if e.get("source", _SOURCE) != _SOURCE:
        return False, f"skipped: source {e.get('source')} is not CPIC (DPWG/FDA recommendations are not implemented)"
    return None


def _matched(case_calls: Mapping[str, GeneCall], drug: str) -> list[str]:
    try:
        recs = recommendations_for(drug, _phenotypes(case_calls))
    except NotFoundError:  # no CPIC guideline for this drug (e.g. flucloxacillin): nothing can match
        return []
    return [f"{r.population}: {r.classification} {dict(r.lookup_key)}" for r in recs]


def _matched_annotation_count(case_calls: Mapping[str, GeneCall], e: Mapping[str, Any]) -> tuple[bool, str]:
    if (skip := _skip(e)) is not None:
        return skip
    got = _matched(case_calls, e["drug"])
    return len(got) == e["count"], f"{e['drug']}: {len(got)} matched (expected {e['count']}) {got}"


def _has_match(case_calls: Mapping[str, GeneCall], e: Mapping[str, Any]) -> tuple[bool, str]:
    if (skip := _skip(e)) is not None:
        return skip
    got = _matched(case_calls, e["drug"])
    return bool(got), f"{e['drug']}: {got or 'no match'}"


def _no_match(case_calls: Mapping[str, GeneCall], e: Mapping[str, Any]) -> tuple[bool, str]:
    if (skip := _skip(e)) is not None:
        return skip
    got = _matched(case_calls, e["drug"])
    real = [g for g in got if ": No recommendation " not in g]
    return not real, f"{e['drug']}: {got or 'no match'}"


CHECKS: dict[str, Check] = {
    "recommended_phenotype": _recommended_phenotype,
    "source_phenotype_contains": _source_phenotype_contains,
    "lookup_activity_score": _lookup_activity_score,
    "matched_annotation_count": _matched_annotation_count,
    "has_match_from_source": _has_match,
    "no_match_from_source": _no_match,
}


def _diplotype(text: str) -> Diplotype | None:
    if "/" not in text or text.startswith("Unknown") or ("(" in text.split("/")[0] and "reference" not in text):
        return None
    return Diplotype(tuple(text.split("/")))


def _reference_call(gene: str, root: Path) -> GeneCall | None:
    """An all-0/0 gene (the test builder wrote no edit for it): the definition's reference allele, twice."""
    path = root / "pharmcat-3.1.1" / "definition" / "alleles" / f"{gene}_translation.json"
    if not path.is_file():
        return None
    ref = json.loads(path.read_text())["namedAlleles"][0]["name"]
    return GeneCall(
        gene=gene,
        source="vcf",
        diplotypes=(Diplotype((ref, ref)),),
        warnings=("inferred: no VCF edit for this gene, so reference/reference",),
    )


def case_calls_from_expectations(
    case: Mapping[str, Any], tests_dir: Path, data_root: Path | None = None
) -> dict[str, GeneCall]:
    """The calls a case states itself: outside-call files, then recommended/source/printed diplotypes.

    Genes of the case that no expectation names and the test builder left untouched are taken as reference (the
    README's fidelity note: untouched positions are written ``0/0``); other genes are left out (``No Result``).
    """
    root = pgx_data_root(data_root)
    lookups: dict[str, list[Diplotype]] = {}
    sources: dict[str, list[Diplotype]] = {}
    for e in case["expect"]:
        gene = e.get("gene")
        if e["type"] == "recommended_diplotype" and e["haplotypes"] != ["Unknown", "Unknown"]:
            lookups.setdefault(gene, []).append(Diplotype(tuple(e["haplotypes"])))
        elif e["type"] in ("source_diplotypes", "print_calls") and gene not in sources:
            dips = [d for v in e["value"] if (d := _diplotype(v)) is not None]
            if dips:
                sources[gene] = dips
    calls: dict[str, GeneCall] = {}
    for gene in {*lookups, *sources}:
        lookup = tuple(lookups[gene]) if gene in lookups else None
        calls[gene] = GeneCall(
            gene=gene, source="vcf", diplotypes=tuple(sources.get(gene) or lookups[gene]), lookup=lookup
        )
    edits = (case.get("vcf_generation") or {}).get("edits") or {}
    skip = set() if (case.get("options") or {}).get("callCyp2d6") else {"CYP2D6"}  # CYP2D6 needs an outside call
    for gene in case.get("genes", ()):
        if gene in calls or gene in edits or gene in skip:
            continue
        if (ref := _reference_call(gene, root)) is not None:
            calls[gene] = ref
    if case.get("outside_calls"):
        for oc in read_outside_calls([tests_dir / p for p in case["outside_calls"]], data_root):
            calls[oc.gene] = oc
    return calls


def example_calls(example: Mapping[str, Any], tests_dir: Path, data_root: Path | None = None) -> list[GeneCall]:
    """The calls of one ``examples/expected_summary.json`` entry: each VCF gene's source and lookup diplotype as
    PharmCAT's report lists them, plus the example's outside-call file."""
    calls = []
    for g in example["gene_calls"]:
        if g["Outside Call"] == "yes":
            continue
        source = Diplotype(tuple(g["Source Diplotype"].split("/")))
        lookup = Diplotype(tuple(g["Recommendation Lookup Diplotype"].split("/")))
        calls.append(GeneCall(g["Gene"], "vcf", (source,), lookup=None if lookup == source else (lookup,)))
    if example["outside_calls"]:
        calls += read_outside_calls(tests_dir / example["outside_calls"], data_root)
    return calls
