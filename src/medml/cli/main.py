"""The `medml` command: a thin layer over the public API. Errors print one line and exit with code 2.

One module per command group (``models``, ``fhir``, ``image``, ``pgx``, ``service``, ``audit``, ``demo``), one
console (:mod:`medml.cli._console`); this module only assembles them and maps errors to exit codes.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

import click
import typer
from rich.markup import escape

from medml.cli import demo as demo_cmd
from medml.cli import models, service
from medml.cli import promote as promotion
from medml.cli._console import err
from medml.cli.audit import audit_app
from medml.cli.deid import deid_app
from medml.cli.fhir import fhir_app
from medml.cli.image import image_app
from medml.cli.monitor import monitor_app
from medml.cli.pgx import pgx_app
from medml.cli.survival import survival_app
from medml.cli.vitals import vitals_app
from medml.config import get_settings, private_files
from medml.errors import MedmlError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="medml: validated, explained, fair clinical risk models, from data to a registered model.",
)
TOP_COMMANDS: tuple[Callable[..., None], ...] = (
    models.datasets,
    models.train,
    models.evaluate,
    models.report,
    models.predict,
    promotion.promote,
    promotion.retrain,
)
SERVICE_COMMANDS: tuple[Callable[..., None], ...] = (
    service.serve,
    service.deploy,
    service.undeploy,
    service.deployments,
)
for command in TOP_COMMANDS:
    app.command()(command)
app.add_typer(models.models_app, name="models")
app.add_typer(fhir_app, name="fhir")
app.add_typer(pgx_app, name="pgx")
app.add_typer(image_app, name="image")
app.add_typer(audit_app, name="audit")
app.add_typer(vitals_app, name="vitals")
app.add_typer(deid_app, name="deid")
app.add_typer(survival_app, name="survival")
app.add_typer(monitor_app, name="monitor")
app.command()(demo_cmd.demo)
# The CDS Hooks service: after the training commands in `medml --help`.
for command in SERVICE_COMMANDS:
    app.command()(command)


# typer 0.29 raises the exceptions of its own copy of click; catch both kinds of usage error.
USAGE_ERRORS: tuple[type[Exception], ...] = (
    click.exceptions.UsageError,
    *(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"),
)


def run_command(args: list[str]) -> None:
    """Parse ``args`` and run the command, letting Ctrl-C and errors reach :func:`main`.

    Not ``app(standalone_mode=False)``: typer's wrapper turns Ctrl-C into a silent exit 130, and an EOFError from
    anywhere (an empty file, say) into "aborted", before this module could say what happened.
    """
    command = typer.main.get_command(app)
    with command.make_context("medml", args) as ctx:
        command.invoke(ctx)


def main() -> None:
    """Entry point: one clear line and exit code 2 for any error a user can fix, never a traceback."""
    start = time.perf_counter()
    private_files()
    settings = get_settings()
    if settings.home.is_dir():
        settings.ensure_home()
    try:
        run_command(sys.argv[1:])
    except MedmlError as e:
        err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
    except USAGE_ERRORS as e:
        usage: Any = e
        if not usage.format_message():  # `medml` (or a group) with no command: click printed the help already
            raise SystemExit(2) from None
        err.print(f"[bold red]error:[/] {escape(usage.format_message())}", highlight=False, soft_wrap=True)
        if usage.ctx is not None:
            err.print(f"see `{usage.ctx.command_path} --help`", highlight=False)
        raise SystemExit(2) from None
    except (click.exceptions.Exit, typer.Exit) as e:
        raise SystemExit(getattr(e, "exit_code", e.args[0] if e.args else 0)) from None
    except (click.exceptions.Abort, typer.Abort):
        err.print("aborted")
        raise SystemExit(130) from None
    except KeyboardInterrupt:
        err.print(f"interrupted after {time.perf_counter() - start:.0f} s{_registry_state()}", highlight=False)
        raise SystemExit(130) from None
    except Exception as e:
        err.print(f"[bold red]internal error:[/] {type(e).__name__}: {escape(str(e))}", highlight=False, soft_wrap=True)
        err.print(
            "this is a bug in medml, not in your input: please report it with the command you ran "
            "(set MEDML_DEBUG=1 for the traceback)"
        )
        if os.environ.get("MEDML_DEBUG"):
            raise
        raise SystemExit(1) from None


def _registry_state() -> str:
    """``: <what this process left in the registry>`` for a command that registers models; else nothing."""
    tracking = sys.modules.get("medml.registry.tracking")  # imported by every command that can register
    return f": {escape(tracking.registry_state())}" if tracking is not None else ""
