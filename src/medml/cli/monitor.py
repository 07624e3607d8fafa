"""`medml monitor ...`: the models in production: outcomes, alarms and reports from the monitoring store."""

from __future__ import annotations

import typer

monitor_app = typer.Typer(
    no_args_is_help=True,
    help="Watch deployed models: load outcomes, check drift and performance, write reports.",
)
