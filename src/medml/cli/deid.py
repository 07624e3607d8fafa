"""`medml deid ...`: de-identify FHIR with an anonymizer configuration, and check the engine against a case file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from medml.cli._console import err, out, progress_bar
from medml.deid import Anonymizer, load_config
from medml.deid._config import KEY_VARIABLES
from medml.deid._conformance import run_cases
from medml.deid._io import deidentify_path
from medml.errors import InputFileError

deid_app = typer.Typer(
    no_args_is_help=True,
    help="De-identification of FHIR R4 with Microsoft FHIR Tools for Anonymization configurations.",
)
RUN_HELP = (
    "De-identify IN (a resource or Bundle as .json, NDJSON as .ndjson, either gzipped as .gz, or a Bulk Data folder "
    "of them) into OUT, in the same format, with CONFIG, an anonymizer configuration file. NDJSON is read and "
    "written a line at a time. OUT appears only when complete.\n\n"
    "Keys the configuration leaves empty come from the environment: "
    + ", ".join(f"{v} ({k})" for k, v in KEY_VARIABLES.items())
    + ". A configuration that uses cryptoHash or encrypt without its key is refused; without a dateShiftKey a random "
    "one is used (dates then shift differently on every run)."
)


def _config_path(config: str) -> Path:
    path = Path(config)
    if not path.is_file():
        raise InputFileError(f"the configuration {config} is not a file", "give an anonymizer configuration (.json)")
    return path


@deid_app.command("run", help=RUN_HELP)
def run_cmd(
    config: Annotated[str, typer.Argument(help="anonymizer configuration (.json)")],
    source: Annotated[Path, typer.Argument(metavar="IN", help="FHIR R4 .json/.ndjson (.gz) file, or a folder")],
    target: Annotated[Path, typer.Argument(metavar="OUT", help="output file (same format) or new folder")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace OUT if it exists")] = False,
) -> None:
    cfg = load_config(_config_path(config))
    anonymizer = Anonymizer(cfg)
    with progress_bar("de-identifying") as update:
        summary = deidentify_path(
            anonymizer, source, target, overwrite=overwrite, on_file=lambda path, i, n: update(path.name, i / n)
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


__all__ = ["deid_app"]
