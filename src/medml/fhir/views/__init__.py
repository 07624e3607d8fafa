"""A small library of SQL-on-FHIR v2 ViewDefinitions for machine learning.

``patient_demographics``, ``observations`` (vital signs and labs by LOINC, UCUM units, blood-pressure components
as rows), ``conditions``, ``medications`` and ``encounters``. They are plain JSON files beside this module, so they
can be read, copied and run by any conformant engine.
"""

from __future__ import annotations

import copy
from functools import cache
from importlib import resources
from typing import Any

import orjson

from medml.errors import NotFoundError

__all__ = ["get_view", "view_names"]


@cache
def _views() -> dict[str, dict[str, Any]]:
    out = {}
    for entry in resources.files(__package__).iterdir():
        if entry.name.endswith(".json"):
            view = orjson.loads(entry.read_bytes())
            out[view["name"]] = view
    return dict(sorted(out.items()))


def view_names() -> list[str]:
    """The names of the built-in views."""
    return list(_views())


def get_view(name: str) -> dict[str, Any]:
    """A built-in ViewDefinition (a copy: change it freely)."""
    views = _views()
    if name not in views:
        raise NotFoundError(f"no built-in view {name!r}", f"built-in views: {', '.join(views)}")
    return copy.deepcopy(views[name])
