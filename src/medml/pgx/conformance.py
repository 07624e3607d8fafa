"""Run a PharmCAT-style test suite (``pharmcat-tests/expected.json``) against our matcher and count agreement.

Each case names a VCF (and optionally a single definition file and options); each expectation is judged by the
checker registered for its type in :data:`CHECKS`. Types we cannot judge at the matcher level (reporter,
recommendation and phenotype assertions) are counted as "not checked", never as passed.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from medml.errors import MedmlError
from medml.pgx.calls import GeneCall
from medml.pgx.checks_interpretation import CHECKS as INTERPRETATION_CHECKS
from medml.pgx.checks_interpretation import applies as interpretation_applies
from medml.pgx.definitions import (
    DEFAULT_GENES,
    Exemption,
    GeneDefinition,
    load_definition_file,
    load_definitions,
    load_exemptions,
)
from medml.pgx.display import diplotype_labels, print_calls, reportable
from medml.pgx.lowest_function import HAPB3
from medml.pgx.matcher import call_genes
from medml.pgx.naming import name_key, star_allele
from medml.pgx.outside import read_outside_calls
from medml.pgx.vcf import read_vcf_sample

_MATCHER_MESSAGES = ("pcat-dpyd-hapB3-",)
#: the extracted tests name some alleles by a Java constant
_CONSTANTS = {"Opaque(DpydHapB3Matcher.HAPB3_ALLELE)": HAPB3}


@dataclass
class CaseContext:
    """What a checker sees: the case, the matcher's calls per gene, and the case's outside calls."""

    case: dict[str, Any]
    calls: dict[str, GeneCall]
    #: genes named in the case's outside-call files, and medml's reading of those files
    outside_genes: frozenset[str] = frozenset()
    outside: dict[str, GeneCall] = field(default_factory=dict)
    #: why the outside-call files could not be read (their genes are then failed, not skipped)
    outside_error: str | None = None
    #: genes with at least one of their positions in the VCF (PharmCAT reports a gene call only for those)
    genes_with_data: frozenset[str] = frozenset()

    def reported(self, gene: str) -> GeneCall | None:
        """The call the report uses: an outside call replaces the matcher's (as in PharmCAT and medml's pipeline)."""
        if gene in self.outside_genes and self.outside_error is not None:
            raise KeyError(f"outside calls unreadable: {self.outside_error}")
        return self.outside.get(gene) or self.calls.get(gene)

    def judged(self, gene: str) -> bool:
        """Whether medml gives this gene a call at all: from an outside call, or from the VCF by default."""
        return gene in self.outside_genes or gene in self.calls or gene in DEFAULT_GENES

    def gene(self, expectation: Mapping[str, Any]) -> str:
        gene = expectation.get("gene")
        if gene:
            return str(gene)
        if len(self.calls) == 1:
            return next(iter(self.calls))
        if len(self.genes_with_data) == 1:
            return next(iter(self.genes_with_data))
        raise KeyError("expectation names no gene and the case calls several")


Verdict = tuple[bool | None, str]  # (passed, or None when not judged; reason)
Check = Callable[[CaseContext, Mapping[str, Any]], Verdict]


def _labels(ctx: CaseContext, e: Mapping[str, Any]) -> list[str]:
    call = ctx.calls.get(ctx.gene(e))
    return [d.label for d in call.diplotypes] if call else []


def _haplotypes(ctx: CaseContext, e: Mapping[str, Any]) -> list[str]:
    """The distinct haplotypes of the called diplotypes, in name order (PharmCAT's GeneCall.getHaplotypes)."""
    call = ctx.calls.get(ctx.gene(e))
    if call is None:
        return []
    return sorted({h for d in call.diplotypes for h in d.haplotypes}, key=name_key)


def _haplotype_matches(ctx: CaseContext, e: Mapping[str, Any]) -> list[str]:
    """The unphased variant list of a lowest-function gene (PharmCAT's GeneCall.getHaplotypeMatches)."""
    call = ctx.calls.get(ctx.gene(e))
    return list(call.variants) if call is not None else []


def _same(expected: Any, got: Any) -> Verdict:
    return (expected == got, "" if expected == got else f"expected {expected!r}, got {got!r}")


def _check_called(ctx: CaseContext, e: Mapping[str, Any]) -> Verdict:
    """The matcher called each gene (an outside gene is the outside call's, so it is not asked of the matcher)."""
    genes = [g for g in e["genes"] if g not in ctx.outside_genes]
    if not genes:
        return None, "outside call: nothing asked of the matcher"
    bad = [g for g in genes if not (ctx.calls.get(g) and ctx.calls[g].called)]
    return (not bad, f"not called: {bad}" if bad else "")


def _check_not_called(ctx: CaseContext, e: Mapping[str, Any]) -> Verdict:
    """No gene is reported from a matcher call (an outside call replaces the matcher's, or the matcher made none)."""
    bad = [g for g in e["genes"] if (c := ctx.reported(g)) is not None and c.source == "vcf" and c.called]
    return (not bad, f"called: {[diplotype_labels(ctx.calls[g]) for g in bad]}" if bad else "")


def _check_reportable(ctx: CaseContext, e: Mapping[str, Any]) -> Verdict:
    bad = [g for g in e["genes"] if not reportable(ctx.reported(g))]
    return (not bad, f"not reportable: {bad}" if bad else "")


def _gene_display(ctx: CaseContext, e: Mapping[str, Any], show: Callable[[GeneCall | None], list[str]]) -> Verdict:
    gene = ctx.gene(e)
    if not ctx.judged(gene):
        return None, f"{gene} is not called from VCF and has no outside call"
    return _same(list(e["value"]), show(ctx.reported(gene)))


def _check_recommended(ctx: CaseContext, e: Mapping[str, Any]) -> Verdict:
    gene = ctx.gene(e)
    if not ctx.judged(gene):
        return None, f"{gene} is not called from VCF and has no outside call"
    call = ctx.reported(gene)
    want = [_CONSTANTS.get(h, h) for h in e["haplotypes"]]
    if call is None or not (call.called or call.lookup):
        return _same(want, ["Unknown/Unknown"])
    # compared as multisets: which haplotype is printed first is the reporter's choice
    options = [sorted(star_allele(h) for h in d.haplotypes) for d in call.lookup_diplotypes]
    ok = sorted(want) in options
    return (ok, "" if ok else f"expected {want}, lookup diplotypes {options}")


def _check_messages(ctx: CaseContext, e: Mapping[str, Any]) -> Verdict:
    names = [n for n in e["message_names"] if n.startswith(_MATCHER_MESSAGES)]
    if not names:
        return None, "reporter message"
    call = ctx.calls.get(ctx.gene(e))
    got = list(call.messages) if call else []
    missing = [n for n in names if n not in got]
    return (not missing, f"missing messages {missing}, got {got}" if missing else "")


CHECKS: dict[str, Check] = {
    "matcher_diplotypes": lambda c, e: _same(list(e["value"]), _labels(c, e)),
    "matcher_phased_output": lambda c, e: _same(list(e["value"]), _labels(c, e)),
    "matcher_first_diplotype": lambda c, e: _same(e["value"], next(iter(_labels(c, e)), None)),
    "matcher_num_diplotypes": lambda c, e: _same(e["value"], len(_labels(c, e))),
    "matcher_haplotypes": lambda c, e: _same(list(e["value"]), _haplotypes(c, e)),
    "matcher_haplotype_matches": lambda c, e: _same(list(e["value"]), _haplotype_matches(c, e)),
    "matcher_num_haplotypes": lambda c, e: _same(e["value"], len(_haplotypes(c, e))),
    "matcher_num_haplotype_matches": lambda c, e: _same(e["value"], len(_haplotype_matches(c, e))),
    "matcher_num_gene_calls": lambda c, e: _same(e["value"], len(c.genes_with_data)),
    "matcher_gene": lambda c, e: _same(e["value"], c.gene(e)),
    "matcher_num_missing_positions": lambda c, e: _same(
        e["value"], len(c.calls[c.gene(e)].missing_positions) if c.gene(e) in c.calls else None
    ),
    "called_by_matcher": _check_called,
    "reportable": _check_reportable,
    "not_called_by_matcher": _check_not_called,
    "source_diplotypes": lambda c, e: _gene_display(c, e, diplotype_labels),
    "print_calls": lambda c, e: _gene_display(c, e, print_calls),
    "recommended_diplotype": _check_recommended,
    "gene_has_messages": _check_messages,
}


@dataclass
class CaseResult:
    """One case: per expectation (type, verdict, reason); ``error`` when the case could not run."""

    case_id: str
    genes: tuple[str, ...]
    verdicts: list[tuple[str, bool | None, str]] = field(default_factory=list)
    error: str | None = None

    @property
    def passed(self) -> bool | None:
        judged = [v for _, v, _ in self.verdicts if v is not None]
        if self.error:
            return False
        return all(judged) if judged else None


@dataclass
class ConformanceReport:
    """Pass counts per expectation type, per gene and per case, with every failure's reason."""

    cases: list[CaseResult]

    def by_type(self) -> dict[str, Counter[str]]:
        out: dict[str, Counter[str]] = defaultdict(Counter)
        for case in self.cases:
            for kind, verdict, _ in case.verdicts:
                out[kind][_word(verdict)] += 1
        return dict(out)

    def by_gene(self) -> dict[str, Counter[str]]:
        out: dict[str, Counter[str]] = defaultdict(Counter)
        for case in self.cases:
            for gene in case.genes:
                out[gene][_word(case.passed)] += 1
        return dict(out)

    def totals(self) -> tuple[Counter[str], Counter[str]]:
        """(expectation-level, case-level) counts of passed / failed / not checked."""
        expectations: Counter[str] = Counter()
        for counts in self.by_type().values():
            expectations.update(counts)
        return expectations, Counter(_word(c.passed) for c in self.cases)

    def failures(self) -> list[tuple[str, str, str]]:
        out = [(c.case_id, "error", c.error) for c in self.cases if c.error]
        out += [(c.case_id, kind, reason) for c in self.cases for kind, v, reason in c.verdicts if v is False]
        return out

    def summary(self) -> str:
        exp, cases = self.totals()
        return (
            f"expectations: {exp['passed']} passed, {exp['failed']} failed, {exp['not checked']} not checked; "
            f"cases: {cases['passed']} passed, {cases['failed']} failed, {cases['not checked']} not checked"
        )


def _word(verdict: bool | None) -> str:
    return "not checked" if verdict is None else ("passed" if verdict else "failed")


def _outside_genes(base: Path, files: list[str]) -> frozenset[str]:
    genes = set()
    for name in files:
        path = base / name
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip() and not line.startswith("#"):
                    genes.add(line.split("\t")[0].strip())
    return frozenset(genes)


def _outside_calls(base: Path, files: list[str]) -> dict[str, GeneCall]:
    paths = [base / name for name in files if (base / name).exists()]
    return {c.gene: c for c in read_outside_calls(paths)} if paths else {}


def _definitions(base: Path, options: Mapping[str, Any]) -> dict[str, GeneDefinition]:
    """The case's definitions; ``withExemptions: false`` (a matcher given no exemptions file) drops every
    exemption rule but PharmCAT's unphased-priority mode, which its matcher reads from the default exemptions."""
    if options.get("definitionFile"):
        found = [load_definition_file((base / options["definitionFile"]).resolve())]
    else:
        found = list(load_definitions(DEFAULT_GENES + (("CYP2D6",) if options.get("callCyp2d6") else ())).values())
    if options.get("withExemptions", True) is False:
        defaults = load_exemptions()
        found = [replace(d, exemption=defaults.get(d.gene, Exemption()).without_rules()) for d in found]
    return {d.gene: d for d in found}


def _called_definitions(base: Path, options: Mapping[str, Any]) -> dict[str, GeneDefinition]:
    """The case's definitions, less CYP2D6 unless the case asks for it (PharmCAT skips it by default)."""
    return {g: d for g, d in _definitions(base, options).items() if g != "CYP2D6" or options.get("callCyp2d6")}


def run_case(case: dict[str, Any], base: Path) -> CaseResult:
    """Call the case's VCF with its options and judge each expectation."""
    options = case.get("options", {})
    result = CaseResult(case["id"], tuple(case.get("genes", ())))
    try:
        definitions = _called_definitions(base, options)
        positions = frozenset((p.chromosome, p.position) for d in definitions.values() for p in d.positions)
        sample = read_vcf_sample(base / case["vcf"], positions=positions)
        calls = call_genes(
            sample,
            definitions=definitions,
            genes=list(definitions),
            top_candidate_only=bool(options.get("topCandidateOnly", True)),
            find_combinations=bool(options.get("findCombinations", False)),
        )
    except MedmlError as err:
        result.error = str(err)
        return result
    with_data = frozenset(
        g for g, d in definitions.items() if any((p.chromosome, p.position) in sample.genotypes for p in d.positions)
    )
    files = case.get("outside_calls", [])
    outside: dict[str, GeneCall] = {}
    outside_error = None
    try:
        outside = _outside_calls(base, files)
    except MedmlError as err:
        outside_error = str(err)
    ctx = CaseContext(case, calls, _outside_genes(base, files), outside, outside_error, with_data)
    interpreted = {**calls, **outside}  # end to end: our calls, outside calls winning, as the pipeline does
    for e in case["expect"]:
        check = CHECKS.get(e["type"])
        if check is None:
            if e["type"] not in INTERPRETATION_CHECKS:
                result.verdicts.append((e["type"], None, "not judged: report layout or a Java object"))
            elif not interpretation_applies(e):
                result.verdicts.append((e["type"], None, "out of scope: a DPWG, FDA or all-source count"))
            else:  # end to end: our own calls (outside calls win) -> our phenotypes -> our CPIC matches
                try:
                    if outside_error is not None:
                        raise MedmlError(f"outside calls unreadable: {outside_error}", "fix the outside-call file")
                    passed, why = INTERPRETATION_CHECKS[e["type"]](interpreted, e)
                except (KeyError, MedmlError) as err:
                    passed, why = False, f"cannot judge: {err}"
                result.verdicts.append((e["type"], passed, why))
            continue
        try:
            verdict, reason = check(ctx, e)
        except KeyError as err:
            verdict, reason = False, f"cannot judge: {err}"
        result.verdicts.append((e["type"], verdict, reason))
    return result


def run_suite(expected: str | Path) -> ConformanceReport:
    """Run every case of an expected.json-format file (paths are relative to it)."""
    path = Path(expected)
    cases = json.loads(path.read_text(encoding="utf-8"))["cases"]
    return ConformanceReport([run_case(c, path.parent) for c in cases])
