"""docs/sql-on-fhir-requirements.csv, the map from each rule the SQL-on-FHIR v2 specification states about views to the
code that enforces it and the tests that check it, kept true: every test and every piece of code a row names exists,
every quote is the specification's own text, and every must, MUST and SHALL of the view pages is quoted by a row.

Tests are found by reading the test files with ``ast``, not by collecting them, so this runs in a moment.
"""

from __future__ import annotations

import csv
import importlib
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from medml.config import get_settings
from requirement_maps import node_problem

ROOT = Path(__file__).resolve().parents[2]
MAP = ROOT / "docs" / "sql-on-fhir-requirements.csv"
SPEC = get_settings().data_root / "fhir/sql-on-fhir-v2/spec"
COLUMNS = ["id", "level", "requirement", "quote", "source", "enforced_by", "tests"]
LEVELS = ("MUST", "SHALL", "must", "SHOULD", "invariant", "cardinality", "binding", "model", "algorithm", "derived")
# The pages about views whose every must, MUST and SHALL a row has to quote.
PAGES = (
    "StructureDefinition-ViewDefinition-notes.md",
    "models.fsh",
    "view-definition-profiles.fsh",
    "StructureDefinition-ShareableViewDefinition-notes.md",
    "functional-model.md",
)
KEYWORD = re.compile(r"\b(must|MUST|SHALL)\b")


def read_map(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS, reader.fieldnames
        return list(reader)


def _items(text: str, sep: str) -> list[str]:
    return [t.strip() for t in text.split(sep) if t.strip()]


def code_problem(ref: str) -> str | None:
    """Why ``module:qualified.name`` names no code, or None."""
    module, sep, qualname = ref.partition(":")
    if not sep or not module.startswith("medml.") or not qualname:
        return f"{ref!r} is not medml.module:name"
    try:
        obj: object = importlib.import_module(module)
    except ImportError:
        return f"{module} cannot be imported"
    for part in qualname.split("."):
        if not hasattr(obj, part):
            return f"{ref} does not exist"
        obj = getattr(obj, part)
    return None


def problems(rows: Sequence[Mapping[str, str]], root: Path) -> list[str]:
    """What is wrong with the map's rows: repeated ids, unknown levels, missing code or tests, names that rotted."""
    found: list[str] = []
    counts = Counter(r["id"] for r in rows)
    found += [f"row {i} is in the map {n} times" for i, n in counts.items() if n > 1]
    for row in rows:
        rid = row["id"]
        if not re.fullmatch(r"V\d{2}", rid):
            found.append(f"row id {rid!r} is not V and two digits")
        if row["level"] not in LEVELS:
            found.append(f"row {rid}: level {row['level']!r} is not one of {LEVELS}")
        if len(row["requirement"].strip()) < 20:
            found.append(f"row {rid} does not say what it requires")
        if not _items(row["source"], ";"):
            found.append(f"row {rid} names no source")
        code = _items(row["enforced_by"], ";")
        if not code:
            found.append(f"row {rid} names no code that enforces it")
        found += [f"row {rid}: {p}" for p in map(code_problem, code) if p]
        tests = _items(row["tests"], ";")
        if not tests:
            found.append(f"row {rid} is covered by no test")
        found += [f"row {rid}: {p}" for p in (node_problem(t, root) for t in tests) if p]
    return found


def normalize(text: str) -> str:
    """Page text as read: markdown links reduced to their text, runs of white space to one space."""
    return re.sub(r"\s+", " ", re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text))


def quote_problems(rows: Sequence[Mapping[str, str]], pages: Mapping[str, str]) -> list[str]:
    """Quotes that are not the text of their row's source pages; must, MUST and SHALL of ``PAGES`` no row quotes."""
    found: list[str] = []
    covered: dict[str, list[tuple[int, int]]] = {name: [] for name in pages}
    for row in rows:
        sources = [s.split("#")[0] for s in _items(row["source"], ";")]
        found += [
            f"row {row['id']}: source page {s} is not a page of the specification" for s in sources if s not in pages
        ]
        for quote in _items(row["quote"], "||"):
            spans = {
                s: [(m.start(), m.end()) for m in re.finditer(re.escape(quote), pages[s])]
                for s in sources
                if s in pages
            }
            if not any(spans.values()):
                found.append(f"row {row['id']}: {quote!r} is not the text of {', '.join(sources)}")
            for s, found_spans in spans.items():
                covered[s] += found_spans
    for name in PAGES:
        text = pages.get(name, "")
        for m in KEYWORD.finditer(text):
            if not any(a <= m.start() < b for a, b in covered.get(name, [])):
                context = text[max(0, m.start() - 50) : m.end() + 50]
                found.append(f"{name}: {m.group()} in {context!r} is quoted by no row")
    return found


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    if not SPEC.is_dir():
        pytest.skip(f"no SQL-on-FHIR specification pages at {SPEC}")
    return {p.name: normalize(p.read_text(encoding="utf-8")) for p in sorted(SPEC.iterdir()) if p.is_file()}


def test_every_row_names_code_and_tests_that_exist() -> None:
    rows = read_map(MAP)
    assert problems(rows, ROOT) == []
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    assert len(rows) >= 50


def test_every_quote_is_the_specs_text_and_every_must_and_shall_is_quoted(pages: dict[str, str]) -> None:
    rows = read_map(MAP)
    assert quote_problems(rows, pages) == []
    keywords = sum(len(KEYWORD.findall(pages[name])) for name in PAGES)
    assert keywords == 31  # the view pages' must, MUST and SHALL, counted when the map was written


def test_the_checks_find_each_kind_of_rot(pages: dict[str, str]) -> None:
    rows = read_map(MAP)
    by_id = {r["id"]: r for r in rows}
    changed = ("V02", "V03", "V05", "V06", "V07", "V08", "V09", "V35")
    structure = "tests/fhir/test_view_rules_structure.py"
    broken = [
        *[r for r in rows if r["id"] not in changed],  # V35 dropped, the others changed below
        {**by_id["V02"], "tests": f"{structure}::test_that_was_renamed"},
        {**by_id["V03"], "tests": ""},
        {**by_id["V04"]},  # a second V04
        {**by_id["V10"], "id": "V4"},
        {**by_id["V05"], "enforced_by": "medml.fhir.view._validate:gone_away"},
        {**by_id["V06"], "enforced_by": ""},
        {**by_id["V07"], "level": "MAY"},
        {**by_id["V08"], "quote": by_id["V08"]["quote"].replace("1..1", "0..1")},
        {**by_id["V09"], "source": "nowhere.md#x"},
    ]
    found = problems(broken, ROOT) + quote_problems(broken, pages)
    expected = [
        f"row V02: {structure} defines no test_that_was_renamed",
        "row V03 is covered by no test",
        "row V04 is in the map 2 times",
        "row id 'V4' is not V and two digits",
        "row V05: medml.fhir.view._validate:gone_away does not exist",
        "row V06 names no code that enforces it",
        f"row V07: level 'MAY' is not one of {LEVELS}",
        "row V08: 'name 0..1 string \"Name of constant (referred to in FHIRPath as %[name])\"' "
        "is not the text of models.fsh",
        "row V09: source page nowhere.md is not a page of the specification",
        "row V09: 'value[x] 1..1 base64Binary or boolean or canonical or code or date or dateTime or decimal or id or "
        "instant or integer or integer64 or oid or string or positiveInt or time or unsignedInt or uri or url or uuid'"
        " is not the text of nowhere.md",
    ]
    for message in expected:
        assert message in found, (message, found)
    unquoted = [f for f in found if f.endswith("is quoted by no row")]
    assert len(unquoted) == 2 and all(
        f.startswith("StructureDefinition-ViewDefinition-notes.md: MUST") for f in unquoted
    )
    assert len(found) == len(expected) + len(unquoted), found
