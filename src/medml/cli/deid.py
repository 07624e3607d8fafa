"""`medml deid ...`: de-identify FHIR with an anonymizer configuration, check a configuration engine against a case
file, and verify an output against its original (residual identifiers, k-anonymity, references)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from medml.cli._console import err, out, progress_bar
from medml.deid import BUILT_IN_CONFIGS, Anonymizer, built_in_config, load_config
from medml.deid._config import KEY_VARIABLES
from medml.deid._conformance import run_cases
from medml.deid._io import atomic_file, deidentify_path
from medml.deid._parallel import usable_cpus
from medml.deid._verify import Residual, VerificationReport, verify
from medml.deid.dicom import KEY_VARIABLE, deidentify_dicom, dicom_key
from medml.errors import InputFileError

deid_app = typer.Typer(
    no_args_is_help=True,
    help="De-identification of FHIR R4 with Microsoft FHIR Tools for Anonymization configurations.",
)
RUN_HELP = (
    "De-identify IN (a resource or Bundle as .json, NDJSON as .ndjson, either gzipped as .gz, or a Bulk Data folder "
    "of them) into OUT, in the same format, with CONFIG: an anonymizer configuration file, or safe-harbor for medml's "
    "own. NDJSON is read and written a line at a time. OUT appears only when complete.\n\n"
    "Keys the configuration leaves empty come from the environment: "
    + ", ".join(f"{v} ({k})" for k, v in KEY_VARIABLES.items())
    + ". A configuration that uses cryptoHash or encrypt without its key is refused; without a dateShiftKey a random "
    "one is used (dates then shift differently on every run)."
)
VERIFY_HELP = (
    "Search DEIDENTIFIED for every identifying value of ORIGINAL (names, addresses, ZIP codes, phone numbers and "
    "emails, SSN, MRN and other identifiers, birth and death dates, resource ids, DICOM UIDs) and report each one "
    "found, with where; report k-anonymity over birth year, sex, 3-digit ZIP, race and ethnicity with the smallest "
    "groups, and references that resolve to nothing. Folders of the same files are compared file by file. Exit "
    "code 1 when residual identifiers are found."
)


def _config_path(config: str) -> Path:
    if config in BUILT_IN_CONFIGS:
        return built_in_config(config)
    path = Path(config)
    if not path.is_file():
        raise InputFileError(
            f"the configuration {config} is not a file",
            f"give an anonymizer configuration (.json) or one of: {', '.join(BUILT_IN_CONFIGS)}",
        )
    return path


@deid_app.command("run", help=RUN_HELP)
def run_cmd(
    config: Annotated[str, typer.Argument(help="anonymizer configuration (.json), or safe-harbor")],
    source: Annotated[Path, typer.Argument(metavar="IN", help="FHIR R4 .json/.ndjson (.gz) file, or a folder")],
    target: Annotated[Path, typer.Argument(metavar="OUT", help="output file (same format) or new folder")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace OUT if it exists")] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="processes to use (default: the CPUs available; inputs under 2 MB use one); the output is the same",
        ),
    ] = None,
) -> None:
    cfg = load_config(_config_path(config))
    anonymizer = Anonymizer(cfg)
    with progress_bar("de-identifying") as update:
        summary = deidentify_path(
            anonymizer,
            source,
            target,
            overwrite=overwrite,
            on_file=lambda path, i, n: update(path.name, i / n),
            workers=workers or usable_cpus(),
        )
    for key in cfg.generated_keys:
        err.print(
            f"warning: no {key} given: a random one was used, so dates shift differently on every run; "
            f"set {KEY_VARIABLES[key]} to repeat them",
            highlight=False,
            markup=False,
        )
    rate = summary.resources / summary.seconds if summary.seconds > 0 else 0.0
    emptied = f"; {summary.emptied:,} emptied by processingErrors skip" if summary.emptied else ""
    out.print(
        f"de-identified {summary.resources:,} resources in {summary.files:,} file(s) in {summary.seconds:.1f} s "
        f"({rate:,.0f}/s){emptied} -> {escape(str(summary.output))}",
        highlight=False,
    )


@deid_app.command("conformance")
def conformance_cmd(
    cases: Annotated[Path, typer.Argument(help="a case file in the format of anonymizer-tests/cases.json")],
) -> None:
    """Run a case file (configuration, input, expected output or error) and print `N passed, M failed` with the
    reason for each failure; exit code 1 if any failed."""
    results = run_cases(cases)
    failed = [r for r in results if not r.passed]
    for r in failed:
        out.print(f"FAILED {escape(r.name)}: {escape(r.reason)}", highlight=False)
    out.print(f"{len(results) - len(failed)} passed, {len(failed)} failed", highlight=False)
    if failed:
        raise typer.Exit(1)


DICOM_HELP = (
    "De-identify the headers of DICOM files by the PS3.15 Basic Application Level Confidentiality Profile: IN a "
    "DICOM file or a folder of them (every file under it must be DICOM), OUT a new file or folder of the same "
    f"layout, which appears only when complete. UIDs are replaced by keyed ones ({KEY_VARIABLE}), the same in every "
    "file and run, so a study stays consistent; Patient ID becomes the keyed pseudonym FHIR cryptoHash gives. The "
    "pixel data is copied unchanged: burned-in text is out of scope and not examined, and the files that may "
    "carry it (Burned In Annotation YES or not given) are counted."
)


@deid_app.command("dicom", help=DICOM_HELP)
def dicom_cmd(
    source: Annotated[Path, typer.Argument(metavar="IN", help="a DICOM file, or a folder of DICOM files")],
    target: Annotated[Path, typer.Argument(metavar="OUT", help="the output file or new folder")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace OUT if it exists")] = False,
) -> None:
    key = dicom_key()
    with progress_bar("de-identifying DICOM") as update:
        summary = deidentify_dicom(source, target, key, overwrite=overwrite, tick=lambda p: update(p.name, 0.0))
    out.print(
        f"de-identified {summary.files:,} DICOM file(s) of {summary.studies:,} study(ies) by the PS3.15 Basic "
        f"Application Level Confidentiality Profile -> {escape(str(summary.output))}",
        highlight=False,
    )
    err.print(
        "warning: pixel data is copied unchanged: burned-in text is out of scope and was not examined; "
        f"{summary.burned_in_unknown:,} file(s) say Burned In Annotation YES or do not say. Review their pixels "
        "before sharing them.",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


def mask(value: str) -> str:
    """An identifying value shown without revealing it: its first and last character."""
    return value[0] + "*" * (len(value) - 2) + value[-1] if len(value) > 3 else "*" * len(value)


def _residual_row(r: Residual, show: bool) -> dict[str, str]:
    return {
        "category": r.category,
        "value": r.value if show else mask(r.value),
        "found_at": r.found_at,
        "origin": r.origin,
    }


def report_json(report: VerificationReport, show: bool) -> dict[str, Any]:
    """The report as plain data (values masked unless ``show``)."""

    def k(kanon: Any) -> dict[str, Any]:
        return {
            "quasi_identifiers": list(kanon.quasi_identifiers),
            "patients": kanon.patients,
            "k": kanon.k,
            "groups": kanon.groups,
            "smallest_groups": [{"values": list(g), "patients": n} for g, n in kanon.smallest],
        }

    def refs(check: Any) -> dict[str, Any]:
        return {"references": check.references, "unresolved": check.unresolved, "examples": list(check.examples)}

    return {
        "residuals": [_residual_row(r, show) for r in report.residuals],
        "residuals_by_category": dict(report.by_category),
        "values_searched": report.values_searched,
        "values_too_short_to_search": report.values_skipped,
        "resources": {"original": report.resources_original, "deidentified": report.resources_output},
        "files_compared_one_to_one": report.paired_files,
        "k_anonymity": {"deidentified": k(report.k_anonymity), "original": k(report.k_anonymity_original)},
        "references": {"deidentified": refs(report.references), "original": refs(report.references_original)},
    }


@deid_app.command("verify", help=VERIFY_HELP)
def verify_cmd(
    original: Annotated[Path, typer.Argument(help="the original FHIR data (file or folder)")],
    deidentified: Annotated[Path, typer.Argument(help="its de-identified output (file or folder)")],
    show_values: Annotated[
        bool, typer.Option("--show-values", help="print residual values in full (they are identifiers)")
    ] = False,
    limit: Annotated[int, typer.Option("--max", help="residuals to list (all are counted)")] = 20,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write the full report here (JSON)")] = None,
) -> None:
    report = verify(original, deidentified)
    searched = (
        f"{report.values_searched:,} identifying values of {report.resources_original:,} original resources "
        f"searched in {report.resources_output:,} de-identified ones"
        + (f", {report.paired_files} files compared one to one" if report.paired_files else "")
        + (f" ({report.values_skipped} too short to search)" if report.values_skipped else "")
    )
    out.print(searched, highlight=False)
    out.print(f"residual identifiers: {len(report.residuals):,}", highlight=False)
    if report.residuals:
        t = Table("category", "count", header_style="bold")
        for category, n in report.by_category:
            t.add_row(category, f"{n:,}")
        out.print(t)
        t = Table("category", "value", "found at", header_style="bold", title=f"first {limit}")
        for r in report.residuals[:limit]:
            row = _residual_row(r, show_values)
            t.add_row(row["category"], escape(row["value"]), escape(row["found_at"]))
        out.print(t)
    for label, kanon in (("de-identified", report.k_anonymity), ("original", report.k_anonymity_original)):
        t = Table(
            *kanon.quasi_identifiers,
            "patients",
            header_style="bold",
            title=f"{label}: k = {kanon.k} over {kanon.patients} patients in {kanon.groups} groups; smallest",
        )
        for values, n in kanon.smallest:
            t.add_row(*values, str(n))
        out.print(t)
    for label, check in (("de-identified", report.references), ("original", report.references_original)):
        out.print(
            f"{label}: {check.unresolved:,} of {check.references:,} references resolve to nothing", highlight=False
        )
        for example in check.examples[:3]:
            out.print(f"  {escape(example)}", highlight=False)
    if json_out is not None:
        if not json_out.parent.is_dir():
            raise InputFileError(f"the folder of {json_out} does not exist", "create it, or write the report elsewhere")
        with atomic_file(json_out) as handle:
            handle.write(orjson.dumps(report_json(report, show_values), option=orjson.OPT_INDENT_2))
    if report.residuals:
        raise typer.Exit(1)


__all__ = ["deid_app", "mask", "report_json"]
