"""`medml pgx ...`: call a VCF, check a drug order against a result, run PharmCAT's test suite."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from medml.cli._console import err, out
from medml.errors import ConfigError, InputFileError

pgx_app = typer.Typer(
    no_args_is_help=True, help="Pharmacogenomics: a VCF -> star alleles -> phenotypes -> CPIC drug recommendations."
)


class OutputFormat(StrEnum):
    json = "json"
    html = "html"
    fhir = "fhir"


def check_output(path: Path, option: str = "--out", example: str = "result.json") -> None:
    """Refuse, before any work, an output path that cannot become a file: a folder, or under a file."""
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder", f"give a file path, e.g. {option} {path / example}")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ConfigError(f"{option} {path}: {parent} is a file, not a folder", "give a path inside a folder")


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it: never a half-written file."""
    check_output(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _render(result: Any, fmt: OutputFormat) -> str:
    if fmt is OutputFormat.html:
        from medml.pgx.html import render_html

        return render_html(result)
    if fmt is OutputFormat.fhir:
        from medml.pgx.fhir import to_fhir_bundle

        return json.dumps(to_fhir_bundle(result), indent=2, ensure_ascii=False) + "\n"
    return str(result.to_json()) + "\n"


def _summary(result: Any) -> None:
    table = Table("gene", "diplotype", "phenotype", "source", title=f"sample {result.sample}", header_style="bold")
    for g in result.to_dict()["genes"]:
        table.add_row(
            g["gene"], " or ".join(g["diplotypes"]) if g["called"] else "not called", g["phenotype"] or "-", g["source"]
        )
    out.print(table)
    actions = [(d.drug, r) for d in result.drugs for r in d.actionable]
    out.print(
        f"{len(actions)} recommendations change a prescription, for "
        f"{len({d for d, _ in actions})} drugs: {', '.join(sorted({d for d, _ in actions})) or 'none'}",
        highlight=False,
    )
    for n in result.not_tested:
        out.print(f"not tested: {n.gene} ({n.status})", highlight=False)
    out.print("Decision support, not a diagnosis: a laboratory must confirm these genotypes.", highlight=False)


@pgx_app.command("call")
def call_cmd(
    vcf: Annotated[Path, typer.Argument(help="GRCh38 VCF (plain or bgzipped)")],
    outside_calls: Annotated[
        list[Path] | None,
        typer.Option(
            "--outside-calls",
            help="outside-call TSV (gene, diplotype, phenotype, activity score), e.g. CYP2D6 from StellarPGx",
        ),
    ] = None,
    sample: Annotated[str | None, typer.Option("--sample", help="sample ID (needed for a multi-sample VCF)")] = None,
    fmt: Annotated[OutputFormat, typer.Option("--format", help="json, html or fhir (R4 Bundle)")] = OutputFormat.json,
    output: Annotated[Path | None, typer.Option("--out", help="write here (atomically) [default: stdout]")] = None,
    patient: Annotated[
        str | None,
        typer.Option(
            "--patient",
            help="with --format json: also save the results as "
            "this patient's (a FHIR Patient id) for the CDS service's PGx drug-order alerts",
        ),
    ] = None,
) -> None:
    """Call one sample's genes, phenotype them and match CPIC recommendations; write JSON, HTML or FHIR."""
    from medml.pgx.pipeline import analyse_vcf

    if output is not None:
        check_output(output)
    store = None
    if patient is not None:
        from medml.config import get_settings
        from medml.pgx.store import results_path
        from medml.service.config import service_home

        if fmt is not OutputFormat.json:
            raise ConfigError(
                f"--patient saves the JSON results, but --format is {fmt.value}", "use --format json with --patient"
            )
        store = service_home(get_settings()) / "pgx"
        results_path(store, patient)  # refuse an unsafe id before any work or any file
    result = analyse_vcf(vcf, outside_calls=outside_calls or None, sample=sample)
    text = _render(result, fmt)
    if output is None:
        sys.stdout.write(text)
    else:
        write_atomically(output, text)
    if store is not None and patient is not None:
        from medml.pgx.store import save_results

        saved = save_results(store, patient, json.loads(text))
        (out if output is not None else err).print(
            f"saved the results of patient {patient} to {saved}", highlight=False
        )
    if output is not None:
        _summary(result)
        out.print(f"wrote {fmt.value} to {output}", highlight=False)


def _warfarin(document: dict[str, Any], path: Path) -> dict[str, Any]:
    """The result's warfarin section ({} when it has none), each field of the type `medml pgx call` writes."""
    w = document.get("warfarin") or {}
    texts = ("cyp2c9", "vkorc1")
    ok = (
        isinstance(w, dict)
        and all(isinstance(w.get(k), str | None) for k in texts)
        and isinstance(w.get("cyp4f2_star3_copies"), int | None)
        and isinstance(w.get("notes") or [], list)
        and all(isinstance(n, str) for n in w.get("notes") or [])
    )
    if not ok:
        raise InputFileError(
            f"the warfarin section of {path} is malformed (cyp2c9 and vkorc1 must be text, "
            "cyp4f2_star3_copies a number, notes a list of text)",
            "regenerate it with `medml pgx call SAMPLE.vcf --format json`",
        )
    return w


def _read_results(path: Path) -> dict[str, Any]:
    from medml.pgx.pipeline import read_results

    try:
        return read_results(path)
    except FileNotFoundError as e:
        raise InputFileError(f"results file {path} not found", "give the JSON of `medml pgx call --format json`") from e


@pgx_app.command("drug")
def drug_cmd(
    drug: Annotated[str, typer.Argument(help="drug name or RxNorm code (e.g. clopidogrel, RxNorm:32968)")],
    results: Annotated[Path, typer.Option("--results", help="the JSON `medml pgx call` wrote")],
) -> None:
    """What the prescriber must see when ordering DRUG for this patient, or that genotype changes nothing."""
    from medml.pgx.alerts import order_alerts
    from medml.pgx.cpic import find_guideline
    from medml.pgx.pipeline import phenotypes_from_dict

    guideline = find_guideline(drug)
    document = _read_results(results)
    pheno = phenotypes_from_dict(document)
    w = _warfarin(document, results)  # checked before anything is printed
    tested = [g for g in guideline.genes if g in pheno and pheno[g].called]
    header = f"{guideline.drug} ({guideline.rxnorm or 'no RxNorm code'}): {guideline.name}, {guideline.version}"
    out.print(header, highlight=False)
    if guideline.drug == "warfarin":
        out.print(
            f"genotype: CYP2C9 {w.get('cyp2c9') or 'not tested'}, VKORC1 -1639 {w.get('vkorc1') or 'not tested'}"
            f", CYP4F2*3 copies {w.get('cyp4f2_star3_copies', 'not tested')}",
            highlight=False,
        )
        for note in w.get("notes") or ["CPIC's warfarin guideline is a dosing algorithm: it needs clinical inputs."]:
            out.print(note, highlight=False)
        return
    if not tested:
        out.print(
            f"no result for {', '.join(guideline.genes)} in {results}: genotype cannot guide {guideline.drug}; "
            "prescribe as usual, or test first",
            highlight=False,
        )
        return
    alerts = order_alerts(guideline.drug, pheno)
    if not alerts:
        from medml.pgx.cpic import recommendations_for

        found = ", ".join(f"{g} {' or '.join(pheno[g].phenotypes) or 'called'}" for g in tested)
        out.print(
            f"the CPIC guideline does not change the prescription of {guideline.drug} for this patient ({found})",
            highlight=False,
        )
        for r in recommendations_for(guideline.drug, pheno):  # the guidance itself, for information
            out.print(
                f"guidance, {r.classification or 'n/a'} ({r.population or 'general'}): {r.text}",
                highlight=False,
                soft_wrap=True,
            )
        return
    for a in alerts:
        found = ", ".join(f"{g}: {v}" for g, v in a.phenotypes)
        out.print(f"[bold]{a.strength or 'n/a'}[/] ({a.population or 'general'}) [{found}]")
        out.print(a.recommendation, highlight=False)
        for imp in a.implications:
            out.print(f"  implication: {imp}", highlight=False)
    out.print("Decision support, not a diagnosis: a laboratory must confirm the genotypes.", highlight=False)


@pgx_app.command("conformance")
def conformance_cmd(
    expected: Annotated[Path, typer.Argument(help="a PharmCAT-style expected.json (pgx/pharmcat-tests)")],
    show: Annotated[int, typer.Option(help="failures to list")] = 30,
) -> None:
    """Run a PharmCAT test suite against our matcher: passed/failed per expectation type and gene; exit 1 on any
    failure."""
    from medml.pgx.conformance import run_suite

    if not expected.is_file():
        raise InputFileError(f"{expected} not found", "give the path of a PharmCAT-style expected.json")
    try:
        report = run_suite(expected)
    except (ValueError, KeyError, TypeError) as e:
        raise InputFileError(
            f"{expected} is not a PharmCAT-style test suite ({type(e).__name__}: {e})",
            "give a JSON file with a 'cases' list (pgx/pharmcat-tests/expected.json)",
        ) from e
    exp, _ = report.totals()
    by_type = Table("expectation type", "passed", "failed", "not checked", header_style="bold")
    for kind, counts in sorted(report.by_type().items()):
        by_type.add_row(kind, str(counts["passed"]), str(counts["failed"]), str(counts["not checked"]))
    out.print(by_type)
    by_gene = Table("gene", "cases passed", "cases failed", "not checked", header_style="bold")
    for gene, counts in sorted(report.by_gene().items()):
        by_gene.add_row(gene, str(counts["passed"]), str(counts["failed"]), str(counts["not checked"]))
    out.print(by_gene)
    failures = report.failures()
    for case_id, kind, reason in failures[:show]:
        out.print(f"FAIL {case_id} [{kind}]: {reason}", highlight=False, soft_wrap=True)
    if len(failures) > show:
        out.print(f"... and {len(failures) - show} more (--show N)")
    out.print(f"{exp['passed']} passed, {exp['failed']} failed ({exp['not checked']} not checked)", highlight=False)
    if exp["failed"] or failures:
        raise typer.Exit(1)
