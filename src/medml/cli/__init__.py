"""The `medml` command line: ``medml.cli.main`` assembles the command groups, one module each."""

from medml.cli.main import app, main

__all__ = ["app", "main"]
