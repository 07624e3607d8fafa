"""Generate ``src/medml/fhir/view/fhir_r4_elements.json``: every FHIR R4 element path, its type and whether it repeats.

The view compiler reads this map to turn a FHIRPath navigation into one JSON path (``$.name[*].family``) and to know
which values are booleans or numbers. Types come from fhirpathpy's R4 model (``path2Type.json``,
``choiceTypePaths.json``, ``pathsDefinedElsewhere.json``); whether an element repeats comes from the annotations of
the ``fhir.resources`` R4B pydantic models (``List[...]``). Run with the dev environment:
``python tools/gen_fhir_elements.py``.
"""

from __future__ import annotations

import json
import os
import typing
from pathlib import Path

import fhirpathpy
from fhir.resources.R4B import get_fhir_model_class

OUT = Path(__file__).resolve().parents[1] / "src/medml/fhir/view/fhir_r4_elements.json"
MODELS = Path(os.path.dirname(fhirpathpy.__file__)) / "models/r4"


def _unwrap(annotation: typing.Any) -> tuple[typing.Any, bool]:
    """The element class or type inside an Optional/List annotation, and whether it is a list."""
    is_list = False
    while True:
        origin = typing.get_origin(annotation)
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if origin in (list, typing.List):  # noqa: UP006
            is_list = True
            annotation = args[0]
        elif origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
            lists = [a for a in args if typing.get_origin(a) in (list, typing.List)]  # noqa: UP006
            annotation = lists[0] if lists else args[0]
        else:
            return annotation, is_list


def _walk(klass: typing.Any, prefix: str, out: dict[str, bool], depth: int = 0) -> None:
    """Record list-ness of each field of ``klass`` under ``prefix``, recursing into backbone elements."""
    if depth > 8:
        return
    for field in klass.model_fields.values():
        name = field.alias
        if not name or name.startswith("_") or name == "fhir_comments":
            continue
        inner, is_list = _unwrap(field.annotation)
        path = f"{prefix}.{name}"
        out[path] = is_list
        model = getattr(inner, "get_model_klass", None)
        if model is not None:
            sub = model()
            backbone = "BackboneElement" in [b.__name__ for b in sub.__mro__[1:]]
            if (backbone or sub.__name__.startswith(prefix.split(".")[0])) and sub.__name__ != "Extension":
                _walk(sub, path, out, depth + 1)


def main() -> None:
    path2type: dict[str, str] = json.loads((MODELS / "path2Type.json").read_text())
    choices: dict[str, list[str]] = json.loads((MODELS / "choiceTypePaths.json").read_text())
    elsewhere: dict[str, str] = json.loads((MODELS / "pathsDefinedElsewhere.json").read_text())
    roots = sorted({p.split(".")[0] for p in path2type})
    repeats: dict[str, bool] = {}
    for root in roots:
        try:
            klass = get_fhir_model_class(root)
        except (KeyError, ValueError):
            continue
        _walk(klass, root, repeats)
    elements: dict[str, str] = {}
    parents = {p.rsplit(".", 1)[0] for p in path2type if "." in p}
    for path in sorted(set(path2type) | {p for p in parents if "." in p}):
        ftype = path2type.get(path, "")
        ftype = "string" if ftype == "System.String" else ftype
        star = "*" if repeats.get(path, path.endswith((".extension", ".modifierExtension", ".contained"))) else ""
        elements[path] = ftype + star
    for path, target in elsewhere.items():
        star = "*" if repeats.get(path, True) else ""
        elements[path] = "=" + target + star
    data = {
        "source": "fhirpathpy models/r4 + fhir.resources R4B list annotations",
        "elements": elements,
        "choices": {
            p: [t[0].lower() + t[1:] if t[0].isupper() and t in _PRIMS else t for t in ts] for p, ts in choices.items()
        },
    }
    OUT.write_text(json.dumps(data, separators=(",", ":"), sort_keys=True))
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KB, {len(elements)} elements)")


_PRIMS = {
    "Boolean",
    "Integer",
    "String",
    "Decimal",
    "Uri",
    "Url",
    "Canonical",
    "Base64Binary",
    "Instant",
    "Date",
    "DateTime",
    "Time",
    "Code",
    "Oid",
    "Id",
    "Markdown",
    "UnsignedInt",
    "PositiveInt",
    "Uuid",
    "Integer64",
}

if __name__ == "__main__":
    main()
