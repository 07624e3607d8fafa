"""The ViewDefinition model's rules, one test per row of docs/sql-on-fhir-requirements.csv: elements and their
cardinalities, the invariants sql-name and sql-expressions, constants, column types, unionAll agreement, profiles.

Each test shows the rule rejecting what the specification forbids and accepting a near miss it allows, so a check
that rejected everything (or nothing) would fail.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from medml.fhir.view import InvalidViewError, validate_view

FHIR = "http://hl7.org/fhir/StructureDefinition/"
SHAREABLE = "https://sql-on-fhir.org/ig/StructureDefinition/ShareableViewDefinition"
TABULAR = "https://sql-on-fhir.org/ig/StructureDefinition/TabularViewDefinition"


def _view(*select: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"resource": "Patient", "select": list(select) or [_cols(("id", "id"))], **extra}


def _cols(*pairs: tuple[str, str], **extra: Any) -> dict[str, Any]:
    return {"column": [{"name": n, "path": p, **extra} for n, p in pairs]}


def _rejects(view: Any, reason: str) -> None:
    with pytest.raises(InvalidViewError, match=re.escape(reason)):
        validate_view(view)


def test_unknown_elements_are_rejected_at_every_level() -> None:
    validate_view(_view(resourceType="ViewDefinition", status="active", title="t", _status={"id": "x"}, id="v1"))
    validate_view(_view({"column": [{"name": "a", "path": "id", "extension": []}], "id": "s1"}))
    _rejects(_view(wher=[{"path": "active"}]), "the view has unknown element(s) ['wher']")
    _rejects(_view({"colum": []}), "select[0] has unknown element(s) ['colum']")
    _rejects(_view({"column": [{"name": "a", "path": "id", "nme": "b"}]}), "select[0].column[0] has unknown")
    _rejects(_view(where=[{"path": "active", "descr": "x"}]), "where[0] has unknown element(s) ['descr']")
    _rejects(_view(_cols(("a", "id"), tag=[{"name": "n", "value": "v", "x": 1}])), "tag[0] has unknown")
    _rejects(_view(constant=[{"name": "c", "valueString": "x", "nme": "d"}]), "constant[0] has unknown")
    _rejects(_view(modifierExtension=[{"url": "u"}]), "has a modifierExtension")
    _rejects(_view(resourceType="Library"), "resourceType is 'Library'")
    _rejects([_view()], "must be a JSON object")


def test_resource_is_required_and_must_be_a_fhir_resource_type() -> None:
    for resource in ("Patient", "QuestionnaireResponse", "Transport"):  # R4, and a type R5 added
        validate_view({"resource": resource, "select": [_cols(("id", "id"))]})
    _rejects({}, "the view names no resource")
    _rejects({"select": [_cols(("id", "id"))]}, "the view names no resource")
    _rejects({"resource": "Patinet", "select": [_cols(("id", "id"))]}, "'Patinet' is not a FHIR resource type")
    _rejects({"resource": "HumanName", "select": [_cols(("id", "id"))]}, "not a FHIR resource type")


def test_view_name_obeys_sql_name() -> None:
    validate_view(_view(name="patient_demographics"))
    validate_view(_view(name="P2"))
    for name in ("_hidden", "2nd", "patient-demographics", "with space", ""):
        _rejects(_view(name=name), "is not a SQL name")


def test_status_is_a_publication_status() -> None:
    for status in ("draft", "active", "retired", "unknown"):
        validate_view(_view(status=status))
    _rejects(_view(status="final"), "status 'final' is not a publication status")


def test_fhir_version_is_a_list_of_version_codes() -> None:
    validate_view(_view(fhirVersion=["4.0.1", "5.0.0", "4.0", "6.0.0-ballot2"]))
    _rejects(_view(fhirVersion="4.0.1"), "fhirVersion must be a list")
    _rejects(_view(fhirVersion=["R4"]), "fhirVersion 'R4' is not a FHIR version")


def test_a_core_profile_of_another_resource_type_is_rejected() -> None:
    us_core = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"
    validate_view(_view(profile=[us_core, "http://hl7.org/fhir/StructureDefinition/Patient|4.0.1"]))
    _rejects(_view(profile=["http://hl7.org/fhir/StructureDefinition/Observation"]), "is a profile of Observation")
    _rejects(_view(profile=["not a url"]), "is not a canonical URL")


def test_constant_needs_a_sql_name() -> None:
    validate_view(_view(constant=[{"name": "bp_code", "valueCode": "8480-6"}]))
    _rejects(_view(constant=[{"valueCode": "8480-6"}]), "constant[0] needs a name")
    _rejects(_view(constant=[{"name": "bp-code", "valueCode": "8480-6"}]), "constant[0] needs a name")
    _rejects(_view(constant=[{"name": "_x", "valueCode": "8480-6"}]), "constant[0] needs a name")
    _rejects(_view(constant={"name": "x", "valueCode": "y"}), "constant must be a list")


def test_constant_needs_exactly_one_value_of_an_allowed_type() -> None:
    for kind, value in [("Integer64", "9007199254740993"), ("Canonical", "http://x.org/vs"), ("Boolean", False)]:
        validate_view(_view(constant=[{"name": "c", f"value{kind}": value}]))
    _rejects(_view(constant=[{"name": "c"}]), "constant 'c' needs exactly one value[x]")
    _rejects(_view(constant=[{"name": "c", "valueString": "a", "valueCode": "b"}]), "needs exactly one value[x]")
    _rejects(_view(constant=[{"name": "c", "valueMarkdown": "*a*"}]), "needs exactly one value[x]")  # not in the model
    _rejects(_view(constant=[{"name": "c", "valueCoding": {"code": "a"}}]), "needs exactly one value[x]")


@pytest.mark.parametrize(
    ("kind", "good", "bad"),
    [
        ("Boolean", True, "true"),
        ("Integer", -3, 1.5),
        ("Integer", 2147483647, 2147483648),
        ("PositiveInt", 1, 0),
        ("UnsignedInt", 0, -1),
        ("Decimal", 1.25, "1.25"),
        ("Date", "1978-03", "1978-13-01"),
        ("DateTime", "2016-11-12T10:00:00+01:00", "2016-11-12T10:00"),
        ("Instant", "2015-02-07T13:28:17.239+02:00", "2015-02-07"),
        ("Time", "18:12:00", "18:12"),
        ("Code", "female", " female"),
        ("Id", "id-1.a", "id 1"),
        ("Oid", "urn:oid:1.2.3", "1.2.3"),
        ("Uuid", "urn:uuid:53fefa32-fcbb-4ff8-8a92-55ee120877b7", "53fefa32"),
        ("Uri", "urn:x:y", "a b"),
        ("String", "any text", 5),
        ("Base64Binary", "aGVsbG8K", "hello!"),
    ],
)
def test_constant_values_must_be_valid_for_their_type(kind: str, good: object, bad: object) -> None:
    validate_view(_view(constant=[{"name": "c", f"value{kind}": good}]))
    _rejects(_view(constant=[{"name": "c", f"value{kind}": bad}]), f"constant 'c' (value{kind})")


def test_constant_names_are_unique_and_not_environment_variables() -> None:
    validate_view(_view(constant=[{"name": "a", "valueString": "x"}, {"name": "b", "valueString": "x"}]))
    _rejects(_view(constant=[{"name": "a", "valueString": "x"}, {"name": "a", "valueString": "y"}]), "defined twice")
    _rejects(_view(constant=[{"name": "rowIndex", "valueInteger": 1}]), "environment variable %rowIndex")
    _rejects(_view(constant=[{"name": "resource", "valueString": "x"}]), "environment variable %resource")


def test_an_undefined_constant_is_rejected() -> None:
    validate_view(
        _view(_cols(("n", "name.where(use = %u).family.first()")), constant=[{"name": "u", "valueCode": "x"}])
    )
    _rejects(
        _view(_cols(("n", "name.where(use = %v).family.first()")), constant=[{"name": "u", "valueCode": "x"}]), "%v"
    )
    _rejects(_view(where=[{"path": "gender = %g"}]), "%g is used but not defined")


def test_a_view_needs_at_least_one_select() -> None:
    _rejects({"resource": "Patient"}, "the view has no select")
    _rejects({"resource": "Patient", "select": []}, "the view has no select")
    _rejects({"resource": "Patient", "select": {"column": []}}, "the view has no select")
    validate_view({"resource": "Patient", "select": [{"forEach": "name"}]})  # a select without columns is allowed


def test_at_most_one_of_foreach_foreachornull_repeat() -> None:
    for key in ("forEach", "forEachOrNull"):
        validate_view(_view({key: "name", **_cols(("f", "family"))}))
    validate_view(_view({"repeat": ["link"], **_cols(("t", "type"))}))
    _rejects(_view({"forEach": "name", "forEachOrNull": "name"}), "has both forEach and forEachOrNull")
    _rejects(_view({"forEach": "name", "repeat": ["name"]}), "has both forEach and repeat")
    _rejects(_view({"select": [{"forEachOrNull": "a", "repeat": ["b"]}]}), "select[0].select[0] has both")


def test_iteration_paths_are_fhirpath_strings() -> None:
    _rejects(_view({"forEach": 1}), "select[0].forEach must be a FHIRPath string")
    _rejects(_view({"forEachOrNull": ["name"]}), "forEachOrNull must be a FHIRPath string")
    _rejects(_view({"repeat": "item"}), "repeat must be a non-empty list")
    _rejects(_view({"repeat": []}), "repeat must be a non-empty list")
    _rejects(_view({"repeat": ["item", 2]}), "repeat[1] must be a FHIRPath string")


def test_column_needs_a_path_and_a_name() -> None:
    _rejects(_view({"column": [{"name": "a"}]}), "column[0].path must be a FHIRPath string")
    _rejects(_view({"column": [{"path": "id"}]}), "column[0] needs a name")
    _rejects(_view({"column": [{"name": "a", "path": 3}]}), "column[0].path must be a FHIRPath string")
    _rejects(_view({"column": {"name": "a", "path": "id"}}), "select[0].column must be a list")


def test_column_name_obeys_sql_name() -> None:
    validate_view(_view(_cols(("Birth_Date2", "birthDate"))))
    for name in ("birth date", "_birth", "1st", "birth-date", "bïrth"):
        _rejects(_view(_cols((name, "birthDate"))), "needs a name of letters, digits and '_'")


def test_column_names_are_unique_across_the_view() -> None:
    _rejects(_view(_cols(("id", "id"), ("id", "gender"))), "column 'id' is already defined")
    _rejects(_view(_cols(("id", "id")), {"forEach": "name", **_cols(("id", "family"))}), "'id' is already defined")
    _rejects(_view(_cols(("a", "id")), {"unionAll": [_cols(("a", "id")), _cols(("a", "id"))]}), "'a' is already")
    validate_view(_view(_cols(("id", "id")), {"unionAll": [_cols(("a", "id")), _cols(("a", "gender"))]}))


def test_collection_is_a_boolean() -> None:
    validate_view(_view(_cols(("g", "name.given"), collection=True)))
    validate_view(_view(_cols(("g", "name.given.first()"), collection=False)))
    _rejects(_view(_cols(("g", "name.given"), collection="true")), "column[0].collection must be true or false")


def test_column_type_must_name_a_fhir_type() -> None:
    for t in ("string", "integer64", "HumanName", "Observation.referenceRange", FHIR + "string", "http://x.org/T"):
        validate_view(_view(_cols(("c", "{}"), type=t)))
    _rejects(_view(_cols(("c", "id"), type="interger")), "type 'interger' names no FHIR type")
    _rejects(_view(_cols(("c", "id"), type="a string")), "type must be a URI")
    _rejects(_view(_cols(("c", "id"), type=7)), "type must be a URI")


def test_a_non_primitive_column_without_type_is_rejected() -> None:
    _rejects(_view(_cols(("n", "name.first()"))), "column 'n' (name.first()) gives HumanName, a non-primitive type")
    _rejects(_view({"forEach": "contact", **_cols(("t", "telecom.first()"))}), "gives ContactPoint")
    _rejects(_view(_cols(("r", "%resource"))), "gives Patient, a non-primitive type")
    validate_view(_view(_cols(("n", "name.first()"), type="HumanName")))
    validate_view(_view(_cols(("n", "name"), type=FHIR + "HumanName", collection=True)))
    validate_view(_view(_cols(("f", "name.first().family"))))  # a primitive needs no type


def test_a_declared_type_the_path_cannot_give_is_rejected() -> None:
    _rejects(_view(_cols(("f", "name.family.first()"), type="integer")), "gives string, which does not fit")
    _rejects(_view(_cols(("a", "active"), type="string")), "gives boolean, which does not fit its declared type")
    _rejects(_view(_cols(("n", "name.first()"), type="Address")), "gives HumanName, which does not fit")
    _rejects(_view(_cols(("b", "birthDate"), type="HumanName")), "gives date, which does not fit")
    fits = [("id", "id"), ("gender", "code"), ("gender", "string"), ("birthDate", "dateTime"), ("1", "decimal")]
    fits += [("%rowIndex", "integer"), ("-1", "integer"), ("name.count()", "unsignedInt"), ("name.exists()", "boolean")]
    fits += [("multipleBirth.ofType(integer)", "positiveInt"), ("deceased", "boolean"), ("{}", "integer")]
    for path, t in fits:
        validate_view(_view(_cols(("c", path), type=t)))


def test_description_and_tags_are_strings() -> None:
    tags = [{"name": "ansi/type", "value": "DATE"}]
    validate_view(_view({"column": [{"name": "b", "path": "birthDate", "description": "born", "tag": tags}]}))
    _rejects(_view({"column": [{"name": "b", "path": "id", "description": 1}]}), "description must be a non-empty")
    _rejects(_view({"column": [{"name": "b", "path": "id", "tag": {"name": "x"}}]}), "column[0].tag must be a list")
    _rejects(_view({"column": [{"name": "b", "path": "id", "tag": [{"value": "DATE"}]}]}), "tag[0].name must be")
    _rejects(_view({"column": [{"name": "b", "path": "id", "tag": [{"name": "a"}]}]}), "tag[0].value must be")
    _rejects(_view(where=[{"path": "active", "description": ["x"]}]), "where[0].description must be")


def test_union_branches_need_the_same_column_names_in_the_same_order() -> None:
    ab, ba, ac = (
        _cols(("a", "id"), ("b", "gender")),
        _cols(("b", "gender"), ("a", "id")),
        _cols(("a", "id"), ("c", "gender")),
    )
    validate_view(_view({"unionAll": [ab, _cols(("a", "'x'"), ("b", "'y'"))]}))
    _rejects(_view({"unionAll": [ab, ba]}), "unionAll branch 2 has columns ['b', 'a'], the first has ['a', 'b']")
    _rejects(_view({"unionAll": [ab, ac]}), "unionAll branch 2 has columns ['a', 'c']")
    _rejects(_view({"unionAll": [ab, _cols(("a", "id"))]}), "unionAll branch 2 has columns ['a']")
    _rejects(_view({"unionAll": [ab, ab, {"forEach": "name", **ac}]}), "unionAll branch 3")


def test_union_branches_need_the_same_column_types() -> None:
    def union(*branches: dict[str, Any]) -> dict[str, Any]:
        return _view({"unionAll": list(branches)})

    validate_view(union(_cols(("z", "address.postalCode.first()")), _cols(("z", "'0150'"))))  # inferred: both String
    validate_view(union(_cols(("z", "id"), type="id"), _cols(("z", "'x'"), type="id")))
    validate_view(union(_cols(("p", "true")), {"forEach": "contact", **_cols(("p", "false"))}))
    _rejects(
        union(_cols(("z", "id")), _cols(("z", "active"))),
        "column 'z' is string in the first unionAll branch and boolean",
    )
    _rejects(union(_cols(("z", "id"), type="id"), _cols(("z", "id"), type="string")), "is id in the first")
    _rejects(union(_cols(("z", "'1'")), _cols(("z", "1"))), "is string in the first unionAll branch and integer")
    _rejects(
        union(_cols(("z", "name.given"), collection=True), _cols(("z", "name.given.first()"))),
        "column 'z' is a collection in one unionAll branch and not in branch 2",
    )


def test_where_items_need_a_fhirpath_path() -> None:
    validate_view(_view(where=[{"path": "active", "description": "only active patients"}]))
    _rejects(_view(where={"path": "active"}), "where must be a list")
    _rejects(_view(where=["active"]), "where[0] must be an object with a path")
    _rejects(_view(where=[{"description": "x"}]), "where[0].path must be a FHIRPath string")
    _rejects(_view(where=[{"path": "active ="}]), "FHIRPath 'active ='")


def test_a_where_path_of_a_non_boolean_type_is_rejected() -> None:
    for path in ("name.family", "birthDate", "name", "multipleBirth.ofType(integer)", "%resource", "'true'"):
        _rejects(_view(where=[{"path": path}]), f"where path {path!r} gives")
    for path in ("active", "name.family.exists()", "gender = 'male'", "deceased", "{}", "(active).not()"):
        validate_view(_view(where=[{"path": path}]))


def test_a_fhirpath_syntax_error_rejects_the_view() -> None:
    _rejects(_view({"forEach": "@@"}), "cannot be parsed")
    _rejects(_view(_cols(("a", "name.family = "))), "unexpected 'end of expression'")
    _rejects(_view(_cols(("a", "name.where(use = 'x'"))), "expected )")
    _rejects(_view({"repeat": ["item.."]}), "expected a name after '.'")


def test_functions_outside_the_subset_are_rejected() -> None:
    for path in ("name.aggregate($this)", "name.family.substring(1)", "name.descendants()", "$index"):
        with pytest.raises(InvalidViewError, match="not supported"):
            validate_view(_view(_cols(("a", path))))
    for path, reason in [("name.first(1)", "first() takes 0 argument"), ("name.where()", "where() takes 1")]:
        _rejects(_view(_cols(("a", path))), reason)
    _rejects(_view(_cols(("a", "active.hasValue(1)"))), "hasValue() takes 0")
    _rejects(_view(_cols(("a", "gender.toString(1)"))), "toString() takes 0")


def test_a_shareable_view_needs_url_name_fhir_version_and_column_types() -> None:
    shareable = {
        "url": "https://example.org/ViewDefinition/pd",
        "name": "pd",
        "fhirVersion": ["4.0.1"],
        "meta": {"profile": [SHAREABLE]},
    }
    validate_view(_view(_cols(("id", "getResourceKey()"), type="string"), **shareable))
    validate_view(_view(_cols(("id", "getResourceKey()")), **{**shareable, "meta": {}}))  # not claimed
    _rejects(_view(_cols(("id", "getResourceKey()")), **shareable), "select[0].column[0] has no type")
    for element in ("url", "name", "fhirVersion"):
        view = _view(_cols(("id", "id"), type="id"), **{k: v for k, v in shareable.items() if k != element})
        _rejects(view, f"claims ShareableViewDefinition but has no {element}")


def test_a_tabular_view_has_only_primitive_non_collection_columns() -> None:
    meta = {"profile": [TABULAR + "|2.0.0"]}
    validate_view(_view(_cols(("b", "birthDate"), type="date"), _cols(("g", "gender")), meta=meta))
    validate_view(_view(_cols(("g", "name.given"), collection=True)))  # not claimed: collections allowed
    _rejects(_view(_cols(("g", "name.given"), collection=True), meta=meta), "column[0] is a collection")
    _rejects(_view(_cols(("n", "name.first()"), type="HumanName"), meta=meta), "'HumanName' is not a primitive type")
    _rejects(_view(_cols(("n", "id"), type="http://x.org/T"), meta=meta), "is not a primitive type")
