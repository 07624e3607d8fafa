"""Checking a de-identified dataset against its original: residual identifiers, k-anonymity, references.

Every identifying value of the original (names, addresses, ZIP codes, phone numbers and emails, SSNs, MRNs and
other identifiers, birth and death dates, resource ids, DICOM UIDs) is searched for in every string of the output,
as a sequence of words (case and punctuation ignored: ``(555) 186-2275`` finds ``555-186-2275``), and each hit is
reported with where it was found. Quasi-identifiers (birth year, sex, 3-digit ZIP, US Core race and ethnicity)
give the dataset's k-anonymity and its smallest groups.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medml.deid._fhirpath import InvalidElementError, Item, children, resource_item
from medml.deid._io import input_files, iter_resources
from medml.errors import InputFileError

PERSON_TYPES = frozenset({"Patient", "RelatedPerson", "Person"})
#: resources about the health system, not the patient: their own ids, names and addresses are not the patient's
DIRECTORY_TYPES = frozenset(
    {
        "Organization",
        "Location",
        "HealthcareService",
        "Endpoint",
        "PractitionerRole",
        "Medication",
        "Substance",
        "OrganizationAffiliation",
        "InsurancePlan",
    }
)
MIN_CHARACTERS = 4  # shorter values (and numbers of fewer than 5 digits) match by chance: counted, not searched
MIN_DIGITS = 5
QUASI_IDENTIFIERS = ("birth year", "sex", "ZIP3", "race", "ethnicity")
_WORD = re.compile(r"[^\W_]+")
_DATETIME_JOIN = re.compile(r"^(\d+)t(\d+)$")
_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
_ETHNICITY = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
_IDENTIFIER_KINDS = {"SS": "SSN", "MR": "MRN", "DL": "driver's licence", "PPN": "passport number"}


@dataclass(frozen=True)
class Residual:
    """An identifying value of the original found in the output: what kind, the value, and where."""

    category: str
    value: str
    found_at: str
    origin: str


@dataclass(frozen=True)
class KAnonymity:
    """k: the size of the smallest group of patients sharing all quasi-identifiers; the smallest groups."""

    quasi_identifiers: tuple[str, ...]
    patients: int
    k: int
    groups: int
    smallest: tuple[tuple[tuple[str, ...], int], ...]


@dataclass(frozen=True)
class ReferenceCheck:
    """Literal references in a dataset and those that resolve to no resource in it."""

    references: int
    unresolved: int
    examples: tuple[str, ...]


@dataclass(frozen=True)
class VerificationReport:
    """The verifier's findings (``values_skipped``: identifying values too short to search without false alarms)."""

    residuals: tuple[Residual, ...]
    values_searched: int
    values_skipped: int
    by_category: tuple[tuple[str, int], ...]
    resources_original: int
    resources_output: int
    k_anonymity: KAnonymity
    k_anonymity_original: KAnonymity
    references: ReferenceCheck
    references_original: ReferenceCheck
    paired_files: int = 0  # files compared one to one (0: every value searched for everywhere)


def words(text: str) -> tuple[str, ...]:
    """A string as lower-case words and numbers (``1949-11-29T00:00`` -> 1949, 11, 29, 00, 00)."""
    out: list[str] = []
    for w in _WORD.findall(text.casefold()):
        m = _DATETIME_JOIN.match(w)
        out.extend(m.groups() if m else (w,))
    return tuple(out)


# ------------------------------------------------------------------------------------------- walking resources


def _resources(top: dict[str, Any], where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """A top-level resource and every resource inside it (Bundle entries, contained), with where each is."""
    yield where, top
    for i, entry in enumerate(top.get("entry") or []) if top.get("resourceType") == "Bundle" else ():
        if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
            yield from _resources(entry["resource"], f"{where} entry[{i}]")
    for i, contained in enumerate(top.get("contained") or []):
        if isinstance(contained, dict):
            yield from _resources(contained, f"{where} contained[{i}]")


def _typed(resource: dict[str, Any]) -> Iterator[Item]:
    """Every node of a resource with its FHIR type, not entering nested resources."""
    stack = [resource_item(resource)]
    while stack:
        item = stack.pop()
        for child in children(item):
            if child.is_resource:
                continue
            yield child
            stack.append(child)


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(path, string) for every string in a JSON value, nested resources included."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, f"{path}.{k}" if path else k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{path}[{i}]")


# ------------------------------------------------------------------------------------------ identifying values


@dataclass(frozen=True)
class IdentifyingValue:
    category: str
    value: str
    origin: str


def _child(item: Item, name: str) -> list[Item]:
    return [c for c in children(item) if c.name == name]


def _identifier_kind(identifier: Item) -> str:
    value = identifier.value if isinstance(identifier.value, dict) else {}
    for coding in (value.get("type") or {}).get("coding") or []:
        kind = _IDENTIFIER_KINDS.get(coding.get("code", "")) if isinstance(coding, dict) else None
        if kind:
            return kind
    return "SSN" if value.get("system") == "http://hl7.org/fhir/sid/us-ssn" else "identifier"


def identifying_values(resources: Iterable[tuple[str, dict[str, Any]]]) -> list[IdentifyingValue]:
    """The identifying values of a dataset, with the category and place of each."""
    found: list[IdentifyingValue] = []
    for where, top in resources:
        for place, resource in _resources(top, where):
            found.extend(_of_resource(resource, place, "contained[" in place))
    return found


def _of_resource(resource: dict[str, Any], place: str, contained: bool) -> Iterator[IdentifyingValue]:
    rt = resource.get("resourceType", "")
    if rt in DIRECTORY_TYPES or rt == "Practitioner":
        return  # the health system's own names and numbers, not the patient's (not Safe Harbor identifiers)
    person = rt in PERSON_TYPES
    origin = f"{place} {rt}"
    rid = resource.get("id")
    if isinstance(rid, str) and not contained:  # a contained id (#coverage) is local to its resource
        yield IdentifyingValue("resource id", rid, f"{origin}.id")
    try:
        nodes = list(_typed(resource))
    except InvalidElementError:
        return
    for item in nodes:
        t = item.type
        if t == "Identifier":
            kind = _identifier_kind(item)
            for v in _child(item, "value"):
                if isinstance(v.value, str):
                    yield IdentifyingValue(kind if person else _record(kind), v.value, origin)
        elif not person:
            if rt == "ImagingStudy" and item.name == "uid" and isinstance(item.value, str):
                yield IdentifyingValue("DICOM UID", item.value, origin)
            elif rt == "Device" and item.name in _DEVICE_IDS and isinstance(item.value, str):
                yield IdentifyingValue("device identifier", item.value, origin)
        elif t == "HumanName":
            for part in ("family", "given", "text"):
                for v in _child(item, part):
                    if isinstance(v.value, str):
                        yield IdentifyingValue("name", v.value, origin)
        elif t == "ContactPoint":
            system = item.value.get("system") if isinstance(item.value, dict) else None
            for v in _child(item, "value"):
                if isinstance(v.value, str):
                    yield IdentifyingValue(system if system in ("email", "fax") else "phone", v.value, origin)
        elif t == "Address":
            for part, category in _ADDRESS_PARTS:
                for v in _child(item, part):
                    if isinstance(v.value, str):
                        yield IdentifyingValue(category, v.value, origin)
        elif item.name in ("birthDate", "deceased") and item.type in ("date", "dateTime"):
            if isinstance(item.value, str):
                yield IdentifyingValue("birth date" if item.name == "birthDate" else "death date", item.value, origin)
        elif t == "Extension" and isinstance(item.value, dict) and _is_maiden_name(item.value):
            maiden = item.value.get("valueString")
            if isinstance(maiden, str):
                yield IdentifyingValue("name", maiden, origin)


_GENERIC = frozenset({"identifier", "record identifier", "resource id"})
_DEVICE_IDS = ("serialNumber", "distinctIdentifier", "deviceIdentifier")


def _is_maiden_name(extension: dict[str, Any]) -> bool:
    return str(extension.get("url", "")).endswith("patient-mothersMaidenName")


_ADDRESS_PARTS = (
    ("line", "address"),
    ("city", "city"),
    ("district", "address"),
    ("postalCode", "ZIP code"),
    ("text", "address"),
)


def _record(kind: str) -> str:
    return kind if kind != "identifier" else "record identifier"


def _digits_form(category: str, value: str) -> str | None:
    digits = re.sub(r"\D", "", value)
    if category in ("phone", "fax", "SSN", "MRN") and len(digits) >= 7 and digits != value:
        return digits
    return None


# ------------------------------------------------------------------------------------------------- the search


class _Index:
    """Identifying values as word sequences, looked up by their first word."""

    def __init__(self, values: list[IdentifyingValue]) -> None:
        self.by_first: dict[str, list[tuple[tuple[str, ...], IdentifyingValue]]] = {}
        self.searched = 0
        self.skipped = 0
        chosen: dict[tuple[str, ...], IdentifyingValue] = {}
        for v in values:
            forms = [words(v.value)]
            digits = _digits_form(v.category, v.value)
            if digits:
                forms.append((digits,))
            for form in forms:
                size = sum(len(w) for w in form)
                if size < MIN_CHARACTERS or (size < MIN_DIGITS and "".join(form).isdigit()):
                    self.skipped += 1
                    continue
                before = chosen.get(form)
                if before is None or (before.category in _GENERIC and v.category not in _GENERIC):
                    chosen[form] = v  # one value in several places: reported under its most telling name
        for form, v in chosen.items():
            self.searched += 1
            self.by_first.setdefault(form[0], []).append((form, v))

    def find(self, text: str) -> Iterator[IdentifyingValue]:
        ws = words(text)
        by_first = self.by_first
        for i, w in enumerate(ws):
            for form, v in by_first.get(w, ()):
                if ws[i : i + len(form)] == form:
                    yield v


def find_residuals(index: _Index, resources: Iterable[tuple[str, dict[str, Any]]]) -> list[Residual]:
    """Every occurrence of an indexed value in the strings of a dataset."""
    out: list[Residual] = []
    for where, top in resources:
        for place, resource in _resources(top, where):
            rt = resource.get("resourceType", "")
            body = {k: v for k, v in resource.items() if k not in ("entry", "contained", "resourceType")}
            for path, text in _strings(body, ""):
                for v in index.find(text):
                    out.append(Residual(v.category, v.value, f"{place} {rt}.{path}", v.origin))
    return out


# ---------------------------------------------------------------------------------------------- k-anonymity


def _extension_code(patient: dict[str, Any], url: str) -> str:
    for ext in patient.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == url:
            for sub in ext.get("extension") or []:
                if isinstance(sub, dict) and sub.get("url") == "ombCategory":
                    coding = sub.get("valueCoding") or {}
                    return str(coding.get("code") or coding.get("display") or "-")
            return "-"
    return "-"


def quasi_identifiers(patient: dict[str, Any]) -> tuple[str, ...]:
    """Birth year, sex, 3-digit ZIP, race and ethnicity (US Core OMB categories); ``-`` where absent."""
    birth = patient.get("birthDate")
    year = birth[:4] if isinstance(birth, str) and len(birth) >= 4 else "-"
    zips = [a.get("postalCode") for a in patient.get("address") or [] if isinstance(a, dict)]
    zip3 = next((z[:3] for z in zips if isinstance(z, str) and len(z) >= 3), "-")
    gender = patient.get("gender")
    return (
        year,
        gender if isinstance(gender, str) else "-",
        zip3,
        _extension_code(patient, _RACE),
        _extension_code(patient, _ETHNICITY),
    )


def k_anonymity(resources: Iterable[tuple[str, dict[str, Any]]], show: int = 5) -> KAnonymity:
    """k over the patients of a dataset, and its ``show`` smallest groups."""
    groups: Counter[tuple[str, ...]] = Counter()
    for where, top in resources:
        for _, resource in _resources(top, where):
            if resource.get("resourceType") == "Patient":
                groups[quasi_identifiers(resource)] += 1
    ranked = sorted(groups.items(), key=lambda kv: (kv[1], kv[0]))
    k = ranked[0][1] if ranked else 0
    return KAnonymity(QUASI_IDENTIFIERS, sum(groups.values()), k, len(groups), tuple(ranked[:show]))


# ---------------------------------------------------------------------------------------------- references


def check_references(resources: Iterable[tuple[str, dict[str, Any]]], show: int = 5) -> ReferenceCheck:
    """How many literal references resolve to a resource of the dataset (by fullUrl, ``Type/id`` or a
    contained ``#id``)."""
    targets: set[str] = set()
    pending: list[tuple[str, str, frozenset[str]]] = []
    for where, top in resources:
        if top.get("resourceType") == "Bundle":
            for entry in top.get("entry") or []:
                if isinstance(entry, dict) and isinstance(entry.get("fullUrl"), str):
                    targets.add(entry["fullUrl"])
        for place, resource in _resources(top, where):
            if isinstance(resource.get("id"), str):
                targets.add(f"{resource.get('resourceType')}/{resource['id']}")
            contained = frozenset(
                f"#{c['id']}" for c in resource.get("contained") or [] if isinstance(c, dict) and "id" in c
            )
            body = {k: v for k, v in resource.items() if k not in ("entry", "contained")}
            for path, text in _strings(body, ""):
                if path.endswith(".reference") or path == "reference":
                    pending.append((f"{place} {resource.get('resourceType')}.{path}", text, contained))
    unresolved = []
    for place, ref, contained in pending:
        if ref.startswith("#"):
            ok = ref in contained or ref == "#"
        else:
            tail = "/".join(ref.split("/_history/")[0].split("/")[-2:])
            ok = ref in targets or tail in targets
        if not ok:
            unresolved.append(f"{place} = {ref}")
    return ReferenceCheck(len(pending), len(unresolved), tuple(unresolved[:show]))


# ----------------------------------------------------------------------------------------------------- entry


def _stem(path: Path) -> str:
    name = path.name
    return name[:-3] if name.endswith(".gz") else name


def _pairs(original: Path, deidentified: Path) -> list[tuple[list[Path], list[Path]]] | None:
    """Original and output files paired by name (``a.json.gz`` with ``a.json``), when both are folders holding
    the same files; None otherwise."""
    if not (original.is_dir() and deidentified.is_dir()):
        return None
    outputs = {_stem(p): p for p in input_files(deidentified)}
    originals = input_files(original)
    if sorted(_stem(p) for p in originals) != sorted(outputs):
        return None
    return [([p], [outputs[_stem(p)]]) for p in originals]


def _read(files: list[Path]) -> list[tuple[str, dict[str, Any]]]:
    return [r for f in files for r in iter_resources(f)]


def verify(original: Path, deidentified: Path) -> VerificationReport:
    """Search ``deidentified`` (a file or folder) for the identifying values of ``original``.

    Folders holding the same files are compared file by file (a patient's values in that patient's output), so
    that one patient's birth date coinciding with another's shifted date is not reported; otherwise every value
    is searched for everywhere.
    """
    for p in (original, deidentified):
        if not p.exists():
            raise InputFileError(f"{p} does not exist", "give the original and the de-identified data")
    pairs = _pairs(original, deidentified) or [([original], [deidentified])]
    residuals: list[Residual] = []
    searched = skipped = 0
    originals: list[tuple[str, dict[str, Any]]] = []
    outputs: list[tuple[str, dict[str, Any]]] = []
    for original_files, output_files in pairs:
        these, those = _read(original_files), _read(output_files)
        index = _Index(identifying_values(these))
        residuals.extend(find_residuals(index, those))
        searched, skipped = searched + index.searched, skipped + index.skipped
        originals.extend(these)
        outputs.extend(those)
    by_category = Counter(r.category for r in residuals)
    return VerificationReport(
        residuals=tuple(residuals),
        values_searched=searched,
        values_skipped=skipped,
        by_category=tuple(sorted(by_category.items(), key=lambda kv: -kv[1])),
        resources_original=sum(1 for w, t in originals for _ in _resources(t, w)),
        resources_output=sum(1 for w, t in outputs for _ in _resources(t, w)),
        k_anonymity=k_anonymity(outputs),
        k_anonymity_original=k_anonymity(originals),
        references=check_references(outputs),
        references_original=check_references(originals),
        paired_files=len(pairs) if len(pairs) > 1 or original.is_dir() else 0,
    )


__all__ = [
    "QUASI_IDENTIFIERS",
    "IdentifyingValue",
    "KAnonymity",
    "ReferenceCheck",
    "Residual",
    "VerificationReport",
    "check_references",
    "find_residuals",
    "identifying_values",
    "k_anonymity",
    "quasi_identifiers",
    "verify",
    "words",
]
