"""The fast shapes of the compiled SQL give the same rows as FHIRPath: where() over records, unionAll beside plain
columns, and a view-level where behind the extraction fence."""

from __future__ import annotations

from typing import Any

from medml.fhir.store import FhirStore
from medml.fhir.view import compile_view, run_view

LOINC = "http://loinc.org"
OBS: list[dict[str, Any]] = [
    {
        "resourceType": "Observation",
        "id": "bp",
        "status": "final",
        "code": {
            "coding": [
                {"system": "urn:x", "code": "BP"},
                {"code": "no-system"},
                {"system": LOINC},
                {"system": LOINC, "code": "85354-9"},
                {"system": LOINC, "code": "2nd"},
            ]
        },
        "component": [
            {
                "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                "valueQuantity": {"value": 120, "code": "mm[Hg]"},
            },
            {"code": {"coding": [{"system": "urn:x", "code": "dia"}]}, "valueQuantity": {"value": 80.5}},
        ],
    },
    {"resourceType": "Observation", "id": "none", "status": "final", "code": {"coding": [{"code": "x"}]}},
    {"resourceType": "Observation", "id": "bare", "status": "final", "code": {"text": "no codings"}},
    {
        "resourceType": "Observation",
        "id": "gone",
        "status": "cancelled",
        "code": {"coding": [{"system": LOINC, "code": "1-1"}]},
    },
]
PATIENTS: list[dict[str, Any]] = [
    {
        "resourceType": "Patient",
        "id": "p1",
        "name": [
            {"use": "usual", "family": "Nick", "given": ["N"]},
            {"use": "official", "given": ["Ada", "B."]},
            {"use": "official", "family": "Later"},
        ],
    },
    {"resourceType": "Patient", "id": "p2", "name": [{"family": "NoUse"}]},
    {"resourceType": "Patient", "id": "p3"},
]


def _rows(view: dict[str, Any], resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    store = FhirStore.in_memory(resources)
    return sorted(run_view(store.con, view).to_pylist(), key=lambda r: tuple(str(v) for v in r.values()))


def test_where_over_codings_keeps_order_and_skips_missing_system_and_code() -> None:
    view = {
        "resource": "Observation",
        "select": [
            {
                "column": [
                    {"name": "id", "path": "id"},
                    {"name": "loinc", "path": f"code.coding.where(system = '{LOINC}').code.first()"},
                    {"name": "loincs", "path": f"code.coding.where(system = '{LOINC}').code", "collection": True},
                    {"name": "no_system", "path": "code.coding.where(system.empty()).code.first()"},
                    {"name": "n_other", "path": f"code.coding.where(system != '{LOINC}').count()"},
                ]
            }
        ],
    }
    assert "json_transform" in compile_view(view).sql
    assert _rows(view, OBS) == [
        {"id": "bare", "loinc": None, "loincs": [], "no_system": None, "n_other": 0},
        {"id": "bp", "loinc": "85354-9", "loincs": ["85354-9", "2nd"], "no_system": "no-system", "n_other": 1},
        {"id": "gone", "loinc": "1-1", "loincs": ["1-1"], "no_system": None, "n_other": 0},
        {"id": "none", "loinc": None, "loincs": [], "no_system": "x", "n_other": 0},
    ]


def test_where_then_first_then_members_of_a_name() -> None:
    view = {
        "resource": "Patient",
        "select": [
            {
                "column": [
                    {"name": "id", "path": "id"},
                    {"name": "family", "path": "name.where(use = 'official').first().family"},
                    {"name": "given", "path": "name.where(use = 'official').first().given.join(' ')"},
                    {"name": "official", "path": "name.where(use = 'official').exists()", "type": "boolean"},
                ]
            }
        ],
    }
    assert _rows(view, PATIENTS) == [
        {"id": "p1", "family": None, "given": "Ada B.", "official": True},
        {"id": "p2", "family": None, "given": "", "official": False},
        {"id": "p3", "family": None, "given": "", "official": False},
    ]


def test_where_needing_the_whole_element_falls_back_to_json() -> None:
    view = {
        "resource": "Patient",
        "select": [
            {
                "column": [
                    {"name": "id", "path": "id"},
                    {"name": "n", "path": "name.where(given.exists() and period.empty()).count()"},
                ]
            }
        ],
    }
    assert _rows(view, PATIENTS) == [{"id": "p1", "n": 2}, {"id": "p2", "n": 0}, {"id": "p3", "n": 0}]


def test_union_of_a_plain_branch_and_a_foreach_with_constant_columns_and_a_where() -> None:
    view = {
        "resource": "Observation",
        "where": [{"path": "status != 'cancelled'"}],
        "select": [
            {"column": [{"name": "id", "path": "getResourceKey()"}, {"name": "status", "path": "status"}]},
            {
                "unionAll": [
                    {
                        "column": [
                            {"name": "code", "path": f"code.coding.where(system = '{LOINC}').code.first()"},
                            {"name": "value", "path": "value.ofType(Quantity).value", "type": "decimal"},
                        ]
                    },
                    {
                        "forEach": "component",
                        "column": [
                            {"name": "code", "path": f"code.coding.where(system = '{LOINC}').code.first()"},
                            {"name": "value", "path": "value.ofType(Quantity).value", "type": "decimal"},
                        ],
                    },
                ]
            },
        ],
    }
    sql = compile_view(view).sql
    assert sql.count("unnest(") == 1
    assert _rows(view, OBS) == [
        {"id": "bare", "status": "final", "code": None, "value": None},
        {"id": "bp", "status": "final", "code": "8480-6", "value": 120.0},
        {"id": "bp", "status": "final", "code": "85354-9", "value": None},
        {"id": "bp", "status": "final", "code": None, "value": 80.5},
        {"id": "none", "status": "final", "code": None, "value": None},
    ]
