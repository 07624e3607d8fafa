"""What a valid view gives on data, one test per row of docs/sql-on-fhir-requirements.csv: rows per resource, collection
and single-value columns, forEach, forEachOrNull, unionAll, repeat, %rowIndex, where, keys, the FHIRPath subset, and
the run-time errors the specification names. Expected rows are written out from the specification's text.
"""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa
import pytest

from medml.config import get_settings
from medml.fhir.store import FhirStore
from medml.fhir.view import InvalidViewError, ViewEvaluationError, run_view, validate_view

SPEC = get_settings().data_root / "fhir/sql-on-fhir-v2/spec"
FLAG = "http://example.org/flag"
RESOURCES: list[dict[str, Any]] = [
    {
        "resourceType": "Patient",
        "id": "p1",
        "meta": {"lastUpdated": "2024-01-02T03:04:05.678Z"},
        "active": True,
        "gender": "female",
        "birthDate": "1950-01",
        "deceasedDateTime": "2015-02-07T13:28:17-05:00",
        "name": [{"use": "official", "family": "Ng", "given": ["Ada", "B"]}, {"family": "Old", "given": ["Cy"]}],
        "address": [{"city": "Oslo", "postalCode": "0150"}, {"city": "Bergen"}],
        "contact": [{"address": {"city": "Tromso"}}],
        "contained": [{"resourceType": "Practitioner", "id": "inner"}],
        "generalPractitioner": [
            {"reference": "Practitioner/pr1"},
            {"reference": "#inner"},
            {"reference": "https://example.org/fhir/Practitioner/pr2/_history/3"},
            {"identifier": {"value": "x"}},
        ],
        "managingOrganization": {"reference": "Organization/o1"},
        "extension": [{"url": FLAG, "valueBoolean": True}],
    },
    {"resourceType": "Patient", "id": "p2", "active": False, "gender": "male", "name": [{"family": "Li"}]},
    {"resourceType": "Patient", "id": "p3"},
    {"resourceType": "Practitioner", "id": "pr1"},
    {"resourceType": "Observation", "id": "o1", "status": "final", "subject": {"reference": "Patient/p1"}},
    {"resourceType": "Observation", "id": "o2", "status": "final", "subject": {"reference": "Group/g1"}},
]


@pytest.fixture(scope="module")
def store() -> FhirStore:
    return FhirStore.in_memory(RESOURCES)


def _view(*select: dict[str, Any], resource: str = "Patient", **extra: Any) -> dict[str, Any]:
    return {"resource": resource, "select": list(select), **extra}


def _cols(*pairs: tuple[str, str], **extra: Any) -> dict[str, Any]:
    return {"column": [{"name": n, "path": p, **extra} for n, p in pairs]}


def _rows(store: FhirStore, view: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted(run_view(store.con, view).to_pylist(), key=repr)


def test_a_view_reads_only_resources_of_its_type(store: FhirStore) -> None:
    assert _rows(store, _view(_cols(("id", "id")))) == [{"id": "p1"}, {"id": "p2"}, {"id": "p3"}]
    assert _rows(store, _view(_cols(("id", "id")), resource="Observation")) == [{"id": "o1"}, {"id": "o2"}]


def test_contained_resources_are_not_rows(store: FhirStore) -> None:
    assert _rows(store, _view(_cols(("id", "id")), resource="Practitioner")) == [{"id": "pr1"}]  # not "inner"


def test_constants_of_each_type_are_substituted_as_literals(store: FhirStore) -> None:
    constants = [
        {"name": "g", "valueCode": "female"},
        {"name": "i", "valueInteger": 1},
        {"name": "on", "valueBoolean": True},
        {"name": "born", "valueDate": "1950-01"},
        {"name": "x", "valueDecimal": 1.25},
        {"name": "use", "valueString": "official"},
    ]
    view = _view(
        _cols(
            ("second", "name[%i].family"),
            ("official", "name.where(use = %use).family.first()"),
            ("x", "%x + 1"),
            ("born", "birthDate = %born"),
        ),
        where=[{"path": "gender = %g and active = %on"}],
        constant=constants,
    )
    assert _rows(store, view) == [{"second": "Old", "official": "Ng", "x": 2.25, "born": True}]


def test_several_values_in_a_non_collection_column_are_the_specs_error(store: FhirStore) -> None:
    view = _view(_cols(("id", "id")), _cols(("family", "name.family")))
    with pytest.raises(ViewEvaluationError, match="multiple values found but not expected for column") as info:
        run_view(store.con, view)
    assert "collection: true" in info.value.fix
    assert _rows(store, {**view, "where": [{"path": "id != 'p1'"}]}) == [
        {"id": "p2", "family": "Li"},
        {"id": "p3", "family": None},
    ]


def test_a_column_is_null_for_no_value_its_value_for_one_and_a_list_when_a_collection(store: FhirStore) -> None:
    view = _view(
        _cols(("id", "id"), ("gender", "gender")),
        _cols(("given", "name.given"), collection=True),
        _cols(("first_given", "name.given.first()"), collection=False),
    )
    assert _rows(store, view) == [
        {"id": "p1", "gender": "female", "given": ["Ada", "B", "Cy"], "first_given": "Ada"},
        {"id": "p2", "gender": "male", "given": [], "first_given": None},
        {"id": "p3", "gender": None, "given": [], "first_given": None},
    ]


def test_a_column_has_one_sql_type_from_its_fhir_type(store: FhirStore) -> None:
    view = _view(
        _cols(
            ("id", "id"),
            ("active", "active"),
            ("names", "name.count()"),
            ("year", "birthDate"),
            ("typed", "'7'.toInteger()"),
        ),
        {
            "column": [
                {"name": "declared", "path": "1", "type": "decimal"},
                {"name": "i", "path": "2", "type": "integer"},
            ]
        },
    )
    schema = run_view(store.con, view).schema
    assert [schema.field(n).type for n in schema.names] == [
        pa.string(),
        pa.bool_(),
        pa.int32(),  # FHIR integer: INT, as the specification's type table maps it
        pa.string(),
        pa.int32(),
        pa.float64(),
        pa.int32(),
    ]


def test_union_all_keeps_duplicate_rows(store: FhirStore) -> None:
    branch = {"forEach": "address", **_cols(("city", "city"))}
    assert _rows(store, _view({"unionAll": [branch, branch]})) == [{"city": "Bergen"}] * 2 + [{"city": "Oslo"}] * 2
    addresses = {  # the specification's PatientAndContactAddressUnion, less the street
        "unionAll": [
            {"forEach": "address", **_cols(("city", "city"), ("is_patient", "true"))},
            {"forEach": "contact.address", **_cols(("city", "city"), ("is_patient", "false"))},
        ]
    }
    assert _rows(store, _view(_cols(("id", "getResourceKey()")), addresses)) == [
        {"id": "p1", "city": "Bergen", "is_patient": True},
        {"id": "p1", "city": "Oslo", "is_patient": True},
        {"id": "p1", "city": "Tromso", "is_patient": False},
    ]


def test_columns_come_in_the_specs_order(store: FhirStore) -> None:
    view = _view(  # the specification's column_order_example: the columns come out in alphabetical order
        {
            **_cols(("a", "'A'"), ("b", "'B'")),
            "select": [{"forEach": "name", **_cols(("c", "'C'"), ("d", "'D'"))}],
            "unionAll": [_cols(("e", "'E1'"), ("f", "'F1'")), _cols(("e", "'E2'"), ("f", "'F2'"))],
        },
        _cols(("g", "'G'"), ("h", "'H'")),
        where=[{"path": "id = 'p2'"}],
    )
    table = run_view(store.con, view)
    assert table.column_names == ["a", "b", "c", "d", "e", "f", "g", "h"]
    assert sorted(r["e"] + r["f"] for r in table.to_pylist()) == ["E1F1", "E2F2"]


def test_foreach_applies_to_columns_nested_selects_and_unions(store: FhirStore) -> None:
    flat = _view({"forEach": "address", **_cols(("zip", "postalCode"))})
    nested = _view({"forEach": "address", "select": [_cols(("zip", "postalCode"))]})
    in_union = _view({"forEach": "address", "unionAll": [_cols(("zip", "postalCode"))]})
    expected = [{"zip": "0150"}, {"zip": None}]
    assert _rows(store, flat) == _rows(store, nested) == _rows(store, in_union) == sorted(expected, key=repr)


def test_foreach_gives_a_row_per_item_and_none_for_an_empty_collection(store: FhirStore) -> None:
    view = _view(_cols(("id", "id")), {"forEach": "name", **_cols(("family", "family"))})
    assert _rows(store, view) == [
        {"id": "p1", "family": "Ng"},
        {"id": "p1", "family": "Old"},
        {"id": "p2", "family": "Li"},
    ]


def test_foreachornull_gives_one_null_row_for_an_empty_collection(store: FhirStore) -> None:
    view = _view(_cols(("id", "id")), {"forEachOrNull": "address", **_cols(("i", "%rowIndex"), ("zip", "postalCode"))})
    assert _rows(store, view) == [
        {"id": "p1", "i": 0, "zip": "0150"},
        {"id": "p1", "i": 1, "zip": None},
        {"id": "p2", "i": 0, "zip": None},
        {"id": "p3", "i": 0, "zip": None},
    ]


def test_sibling_selects_are_cross_joined(store: FhirStore) -> None:
    view = _view(
        _cols(("id", "id")),
        {"forEach": "name", **_cols(("family", "family"))},
        {"forEach": "address", **_cols(("city", "city"))},
    )
    assert _rows(store, view) == [
        {"id": "p1", "family": f, "city": c}
        for f, c in sorted((f, c) for f in ("Ng", "Old") for c in ("Bergen", "Oslo"))
    ]


def test_repeat_collects_every_level_of_every_path() -> None:
    response = {  # the specification's QuestionnaireResponse example
        "resourceType": "QuestionnaireResponse",
        "id": "q1",
        "item": [
            {"linkId": "1", "text": "Demographics", "item": [{"linkId": "1.1", "text": "Age"}]},
            {
                "linkId": "2",
                "text": "Medical History",
                "answer": [
                    {
                        "item": [
                            {
                                "linkId": "2.1",
                                "text": "Conditions",
                                "answer": [{"item": [{"linkId": "2.1.1", "text": "Diabetes Type"}]}],
                            }
                        ]
                    }
                ],
            },
        ],
    }
    view = _view({"repeat": ["item", "answer.item"], **_cols(("item_id", "linkId"))}, resource="QuestionnaireResponse")
    store = FhirStore.in_memory([response])
    assert sorted(r["item_id"] for r in run_view(store.con, view).to_pylist()) == ["1", "1.1", "2", "2.1", "2.1.1"]


def test_row_index_is_zero_based_per_level_and_zero_at_top() -> None:
    patient = {"resourceType": "Patient", "id": "pt1", "name": [{"family": "Smith", "given": ["John", "James"]}]}
    patient["name"].append({"family": "Jones", "given": ["Jane"]})
    view = _view(  # the specification's "Row index with unionAll" example, and the top-level index
        _cols(("id", "id"), ("top", "%rowIndex")),
        {
            "forEach": "name",
            **_cols(("name_index", "%rowIndex")),
            "select": [
                {
                    "unionAll": [
                        {"forEach": "given", **_cols(("given_index", "%rowIndex"), ("value", "$this"))},
                        _cols(("given_index", "%rowIndex"), ("value", "family")),
                    ]
                }
            ],
        },
    )
    store = FhirStore.in_memory([patient])
    rows = run_view(store.con, view).to_pylist()
    assert sorted((r["top"], r["name_index"], r["given_index"], r["value"]) for r in rows) == [
        (0, 0, 0, "John"),
        (0, 0, 0, "Smith"),
        (0, 0, 1, "James"),
        (0, 1, 0, "Jane"),
        (0, 1, 1, "Jones"),
    ]


def test_where_keeps_only_resources_for_which_every_path_is_true(store: FhirStore) -> None:
    ids = _view(_cols(("id", "id")))
    assert _rows(store, {**ids, "where": [{"path": "active"}]}) == [{"id": "p1"}]  # false and empty are left out
    assert _rows(store, {**ids, "where": [{"path": "active.not()"}]}) == [{"id": "p2"}]
    both = [{"path": "name.exists()"}, {"path": "gender = 'male'"}]
    assert _rows(store, {**ids, "where": both}) == [{"id": "p2"}]
    assert _rows(store, {**ids, "where": [{"path": "name.where(family = 'Li').empty()"}]}) == [
        {"id": "p1"},
        {"id": "p3"},
    ]


def test_a_where_path_that_gives_a_non_boolean_on_the_data_is_the_specs_error(store: FhirStore) -> None:
    flag = _view(_cols(("id", "id")), where=[{"path": f"extension('{FLAG}').value"}])
    assert _rows(store, flag) == [{"id": "p1"}]  # a choice element: its type shows only in the data
    text_flag = FhirStore.in_memory(
        [{"resourceType": "Patient", "id": "p9", "extension": [{"url": FLAG, "valueString": "y"}]}]
    )
    with pytest.raises(ViewEvaluationError, match="where path .* gives a value that is not a boolean"):
        run_view(text_flag.con, flag)
    two = FhirStore.in_memory(
        [{"resourceType": "Patient", "id": "p8", "extension": [{"url": FLAG, "valueBoolean": True}] * 2}]
    )
    with pytest.raises(ViewEvaluationError, match="gives several values where one boolean is required"):
        run_view(two.con, flag)


def test_get_resource_key_and_get_reference_key_join(store: FhirStore) -> None:
    patients = _rows(store, _view(_cols(("key", "getResourceKey()"))))
    observations = _rows(store, _view(_cols(("patient", "subject.getReferenceKey(Patient)")), resource="Observation"))
    assert {r["key"] for r in patients} & {r["patient"] for r in observations} == {"p1"}
    assert sorted(observations, key=lambda r: str(r["patient"])) == [{"patient": None}, {"patient": "p1"}]


def test_get_reference_key_reads_relative_references_and_gives_empty_otherwise(store: FhirStore) -> None:
    view = _view(
        _cols(("org", "managingOrganization.getReferenceKey(Organization)")),
        _cols(("wrong_type", "managingOrganization.getReferenceKey(Patient)")),
        _cols(("any_type", "managingOrganization.getReferenceKey()")),
        _cols(("gps", "generalPractitioner.getReferenceKey(Practitioner)"), collection=True),
        where=[{"path": "id = 'p1'"}],
    )
    # a relative literal reference gives its key; "#inner", an identifier and a wrong type give nothing
    assert _rows(store, view) == [{"org": "o1", "wrong_type": None, "any_type": "o1", "gps": ["pr1", "pr2"]}]


def test_keys_are_strings(store: FhirStore) -> None:
    view = _view(_cols(("key", "getResourceKey()"), ("org", "managingOrganization.getReferenceKey()")))
    schema = run_view(store.con, view).schema
    assert schema.field("key").type == schema.field("org").type == pa.string()


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("'text'", "text"),
        ("42", 42),
        ("4.5", 4.5),
        ("name.where(use = 'official').family", "Ng"),
        ("name.exists()", True),
        ("name.where(family = 'none').exists()", False),
        ("name.exists(family = 'Old')", True),
        ("telecom.empty()", True),
        (f"extension('{FLAG}').value.ofType(boolean)", True),
        ("deceased.ofType(dateTime)", "2015-02-07T13:28:17-05:00"),
        ("name.first().given.first()", "Ada"),
        ("active and gender = 'female'", True),
        ("active or false", True),
        ("active.not()", False),
        ("2 + 3", 5),
        ("7 - 10", -3),
        ("6 * 7", 42),
        ("7 / 2", 3.5),
        ("1 = 1", True),
        ("gender != 'male'", True),
        ("3 > 2", True),
        ("3 <= 2", False),
        ("name[1].family", "Old"),
        ("name.first().given.join(',')", "Ada,B"),
        ("birthDate.lowBoundary()", "1950-01-01"),
        ("birthDate.highBoundary()", "1950-01-31"),
    ],
)
def test_the_shareable_fhirpath_subset_evaluates(store: FhirStore, path: str, value: object) -> None:
    rows = run_view(store.con, _view(_cols(("v", path)), where=[{"path": "id = 'p1'"}])).to_pylist()
    assert rows == [{"v": value}]


def test_text_columns_keep_the_fhir_string_form(store: FhirStore) -> None:
    view = _view(
        _cols(
            ("born", "birthDate"),
            ("died", "deceased.ofType(dateTime)"),
            ("updated", "meta.lastUpdated"),
            ("zip", "address.postalCode.first()"),
        ),
        where=[{"path": "id = 'p1'"}],
    )
    assert _rows(store, view) == [
        {"born": "1950-01", "died": "2015-02-07T13:28:17-05:00", "updated": "2024-01-02T03:04:05.678Z", "zip": "0150"}
    ]


def fsh_instances(text: str) -> dict[str, dict[str, Any]]:
    """The example instances of a FSH file as JSON (enough FSH for the specification's ViewDefinition examples)."""
    out: dict[str, dict[str, Any]] = {}
    stack: list[dict[str, Any]] = []
    for line in text.splitlines():
        if m := re.match(r"^Instance:\s*(\S+)", line):
            stack = [{}]
            out[m.group(1)] = stack[0]
        elif (m := re.match(r"^( *)\* (\w+)(\[\+\])?(?:\s*=\s*(.*))?$", line)) and stack:
            depth, key, append, raw = len(m.group(1)) // 2, m.group(2), m.group(3), m.group(4)
            parent = stack[depth]
            del stack[depth + 1 :]
            value: Any = {} if raw is None else raw.strip()[1:-1] if raw.strip()[0] == '"' else raw.strip().lstrip("#")
            if append:
                parent.setdefault(key, []).append(value)
            else:
                parent[key] = value
            if raw is None:
                stack.append(value)
    return out


def test_every_example_view_of_the_specification_validates() -> None:
    path = SPEC / "view-definition-examples.fsh"
    if not path.is_file():
        pytest.skip(f"no specification pages at {SPEC}")
    examples = fsh_instances(path.read_text(encoding="utf-8"))
    assert len(examples) == 10
    for name, view in examples.items():
        assert validate_view(view) is None, name
    broken = {**examples["PatientDemographics"], "resource": "Patients"}
    with pytest.raises(InvalidViewError):
        validate_view(broken)


def test_fsh_instances_reads_nesting_lists_and_codes() -> None:
    lines = ["Instance: X", '* name = "n"', "* status = #draft", "* select[+]", "  * column[+]", '    * path = "id"']
    text = "\n".join([*lines, "* fhirVersion[+] = #4.0"])
    assert fsh_instances(text) == {
        "X": {"name": "n", "status": "draft", "select": [{"column": [{"path": "id"}]}], "fhirVersion": ["4.0"]}
    }
