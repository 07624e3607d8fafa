"""Output folders written whole or not at all: Spark writes into a hidden sibling, renamed into place at the end."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from medml.errors import ConfigError


def check_new_folder(out: Path) -> None:
    """Refuse an output folder (or file) that exists: medml never writes into or over one."""
    if out.exists():
        raise ConfigError(f"{out} already exists", "give a new folder for --out, or remove the old one first")


@contextmanager
def folder_written_whole(out: Path) -> Iterator[Path]:
    """A temporary folder beside ``out`` to write into; renamed to ``out`` on success, removed on any failure."""
    check_new_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        check_new_folder(out)  # someone else may have written it meanwhile
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
