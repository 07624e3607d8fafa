"""The compiled SQL: one set-based query, batched JSON extraction, the dialect seam, and collection columns."""

from __future__ import annotations

import pyarrow as pa
import pytest

from medml.fhir.store import FhirStore
from medml.fhir.view import InvalidViewError, compile_view, run_view
from medml.fhir.view._dialect import DIALECTS, Dialect

PATIENTS = [
    {
        "resourceType": "Patient",
        "id": "p1",
        "gender": "female",
        "active": True,
        "birthDate": "1970-06",
        "name": [{"use": "official", "family": "Ng", "given": ["Ada", "B."]}, {"family": "Old", "given": ["Cy"]}],
        "address": [{"city": "Oslo"}, {"city": "Bergen"}],
    },
    {"resourceType": "Patient", "id": "p2", "gender": "male", "active": False},
]
FLAT = {
    "resource": "Patient",
    "select": [
        {
            "column": [
                {"name": "id", "path": "getResourceKey()"},
                {"name": "gender", "path": "gender"},
                {"name": "active", "path": "active"},
                {"name": "birth", "path": "birthDate"},
                {"name": "family", "path": "name.where(use = 'official').family.first()"},
            ]
        }
    ],
}


@pytest.fixture
def store() -> FhirStore:
    return FhirStore.in_memory(PATIENTS)


def test_a_flat_view_parses_each_resource_once(store: FhirStore) -> None:
    compiled = compile_view(FLAT)
    assert compiled.sql.count("json_extract_string(r.resource, [") == 1
    assert "unnest" not in compiled.sql
    assert [(c.name, c.type, c.collection) for c in compiled.columns] == [
        ("id", "string", False),
        ("gender", "code", False),
        ("active", "boolean", False),
        ("birth", "date", False),
        ("family", "string", False),
    ]
    table = run_view(store.con, FLAT)
    assert table.column_names == ["id", "gender", "active", "birth", "family"]
    assert table.schema.field("active").type == pa.bool_()
    assert sorted(table.to_pylist(), key=lambda r: r["id"]) == [
        {"id": "p1", "gender": "female", "active": True, "birth": "1970-06", "family": "Ng"},
        {"id": "p2", "gender": "male", "active": False, "birth": None, "family": None},
    ]


def test_a_collection_column_is_a_list_in_order(store: FhirStore) -> None:
    view = {
        "resource": "Patient",
        "select": [
            {
                "column": [
                    {"name": "id", "path": "id"},
                    {"name": "given", "path": "name.given", "collection": True},
                    {"name": "cities", "path": "address.city", "collection": True, "type": "string"},
                ]
            }
        ],
    }
    compiled = compile_view(view)
    assert [c.collection for c in compiled.columns] == [False, True, True]
    table = run_view(store.con, view)
    assert table.schema.field("given").type == pa.list_(pa.string())
    rows = {r["id"]: r for r in table.to_pylist()}
    assert rows["p1"]["given"] == ["Ada", "B.", "Cy"] and rows["p1"]["cities"] == ["Oslo", "Bergen"]
    assert rows["p2"]["given"] == [] and rows["p2"]["cities"] == []


def test_table_name_and_dialect_are_parameters() -> None:
    sql = compile_view(FLAT, table="fhir_rows").sql
    assert 'FROM "fhir_rows" AS r' in sql and "r.resource_type = 'Patient'" in sql
    with pytest.raises(InvalidViewError, match="unknown SQL dialect 'oracle'"):
        compile_view(FLAT, dialect="oracle")


def test_a_new_dialect_changes_the_sql_through_the_seam(monkeypatch: pytest.MonkeyPatch) -> None:
    class Backticks(Dialect):
        name = "backticks"

        def quote(self, name: str) -> str:
            return f"`{name}`"

        def json_paths(self, base: str, paths: list[str], as_text: bool) -> str:
            return f"get_json_objects({base}, {', '.join(map(self.literal, paths))})"

    monkeypatch.setitem(DIALECTS, "backticks", Backticks)
    sql = compile_view(FLAT, dialect="backticks").sql
    assert "FROM `resources` AS r" in sql and "AS `gender`" in sql
    assert "get_json_objects(r.resource, '$.gender'" in sql and "json_extract_string(r.resource, [" not in sql


def test_foreach_rows_carry_the_row_index_and_parent_columns(store: FhirStore) -> None:
    view = {
        "resource": "Patient",
        "select": [
            {"column": [{"name": "id", "path": "id"}]},
            {
                "forEachOrNull": "address",
                "column": [{"name": "i", "path": "%rowIndex"}, {"name": "city", "path": "city"}],
            },
        ],
    }
    rows = sorted(run_view(store.con, view).to_pylist(), key=lambda r: (r["id"], r["i"]))
    assert rows == [
        {"id": "p1", "i": 0, "city": "Oslo"},
        {"id": "p1", "i": 1, "city": "Bergen"},
        {"id": "p2", "i": 0, "city": None},
    ]


def test_elements_outside_the_r4_map_are_flattened_at_run_time() -> None:
    store = FhirStore.in_memory(
        [
            {
                "resourceType": "Patient",
                "id": "p1",
                "birthDate": "2000-01-01",
                "_birthDate": {"extension": [{"url": "u", "valueString": "x"}]},
                "custom": [{"a": 1}, {"a": 2}],
            }
        ]
    )
    view = {
        "resource": "Patient",
        "select": [
            {
                "column": [
                    {"name": "ext", "path": "_birthDate.extension.where(url = 'u').valueString.first()"},
                    {"name": "a", "path": "custom.a", "collection": True},
                ]
            }
        ],
    }
    assert run_view(store.con, view).to_pylist() == [{"ext": "x", "a": ["1", "2"]}]
