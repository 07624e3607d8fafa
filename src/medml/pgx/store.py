"""The PGx results store: one `medml pgx call --format json` document per patient, read by the order services.

A folder of ``<patient id>.json`` files (``MEDML_HOME/service/pgx`` by default), each written atomically.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medml.errors import ConfigError, quote
from medml.pgx.pipeline import phenotypes_from_dict, read_results

#: a FHIR id (letters, digits, '-', '.'), '_' allowed too; first character alphanumeric: never a hidden or temp file
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


# ---- the results store --------------------------------------------------------------------------------------------


def results_path(store: Path, patient_id: str) -> Path:
    """Where a patient's results live in ``store``; ConfigError for an id that is not safe as a file name."""
    if not SAFE_ID.fullmatch(patient_id):
        raise ConfigError(
            f"patient id {quote(patient_id)} is not a safe id",
            "use 1-64 letters, digits, '-', '.' or '_', starting with a letter or digit (a FHIR id)",
        )
    return store / f"{patient_id}.json"


def save_results(store: Path, patient_id: str, document: Mapping[str, Any]) -> Path:
    """Store a `medml pgx call --format json` document for ``patient_id`` atomically (temp file, then rename)."""
    path = results_path(store, patient_id)
    phenotypes_from_dict(document)  # refuse anything that is not a PGx result before writing
    store.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=store)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(document, fh, ensure_ascii=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_results(store: Path, patient_id: str) -> dict[str, Any] | None:
    """The stored document for ``patient_id``, or None when there is none."""
    path = results_path(store, patient_id)
    try:
        return read_results(path, "save them again with `medml pgx call VCF --format json --patient ID`")
    except FileNotFoundError:
        return None


__all__ = ["SAFE_ID", "load_results", "results_path", "save_results"]
