"""The list of required FHIR elements that medml's de-identifier keeps present (as a data-absent-reason) when a
rule empties them: it must be what the fhir.resources models (an outside reference) require.

``python tests/deid/test_deid_required_elements.py`` rewrites ``src/medml/deid/r4_required.json``.
"""

from __future__ import annotations

import json
import sys
import typing
from pathlib import Path
from typing import Any

import pytest

REQUIRED_FILE = Path(__file__).resolve().parents[2] / "src" / "medml" / "deid" / "r4_required.json"
ELEMENTS_FILE = Path(__file__).resolve().parents[2] / "src" / "medml" / "fhir" / "view" / "fhir_r4_elements.json"


def _optional(annotation: Any) -> bool:
    return type(None) in typing.get_args(annotation)


def _inner(annotation: Any) -> Any:
    while typing.get_args(annotation):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = args[0]
    return annotation


def _model(context: str) -> Any:
    from fhir.resources.R4B import get_fhir_model_class

    root, *steps = context.split(".")
    try:
        klass = get_fhir_model_class(root)
    except (KeyError, ValueError):
        return None
    for step in steps:
        fields = {f.alias: f for f in klass.model_fields.values()}
        field = fields.get(step)
        inner = _inner(field.annotation) if field is not None else None
        getter = getattr(inner, "get_model_klass", None)
        if getter is None:
            return None
        klass = getter()
    return klass


def required_elements() -> list[str]:
    """Every ``context.key`` of the R4 element map that the fhir.resources R4B models require."""
    pytest.importorskip("fhir.resources")
    elements: dict[str, str] = json.loads(ELEMENTS_FILE.read_text())["elements"]
    contexts = sorted({k.rsplit(".", 1)[0] for k in elements})
    out: list[str] = []
    for context in contexts:
        klass = _model(context)
        if klass is None:
            continue
        fields = {f.alias: f for f in klass.model_fields.values()}
        for path in (k for k in elements if k.rsplit(".", 1)[0] == context):
            field = fields.get(path.rsplit(".", 1)[1])
            if field is None:
                continue
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            if extra.get("element_required") or extra.get("one_of_many_required") or not _optional(field.annotation):
                out.append(path)
    return sorted(out)


def test_the_shipped_list_is_what_fhir_resources_requires() -> None:
    assert json.loads(REQUIRED_FILE.read_text()) == required_elements()


def test_the_list_holds_the_elements_synthea_needs() -> None:
    """Spot checks against the FHIR R4 specification's cardinalities (1..1 or 1..*)."""
    required = set(json.loads(REQUIRED_FILE.read_text()))
    for path in (
        "Claim.created",
        "ExplanationOfBenefit.created",
        "Bundle.type",
        "Bundle.entry.request.url",
        "Immunization.occurrenceDateTime",
        "Claim.insurance.coverage",
        "Goal.description",
    ):
        assert path in required, path
    for path in ("Patient.birthDate", "Claim.billablePeriod", "Encounter.period", "HumanName.family"):
        assert path not in required, path


if __name__ == "__main__":
    REQUIRED_FILE.write_text(json.dumps(required_elements(), indent=0) + "\n")
    print(f"wrote {REQUIRED_FILE}", file=sys.stderr)
