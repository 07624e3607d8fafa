"""Invalid ViewDefinitions are rejected with the specification's reason; bad data fails loudly, not silently."""

from __future__ import annotations

from typing import Any

import pytest

from medml.errors import ConfigError, DataError
from medml.fhir.store import FhirStore
from medml.fhir.view import InvalidViewError, ViewEvaluationError, compile_view, run_view, validate_view


def _view(*select: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"resource": "Patient", "select": list(select), **extra}


def _cols(*pairs: tuple[str, str]) -> dict[str, Any]:
    return {"column": [{"name": n, "path": p} for n, p in pairs]}


@pytest.mark.parametrize(
    ("view", "reason"),
    [
        ({"select": [_cols(("id", "id"))]}, "names no resource"),
        (_view(), "has no select"),
        (_view({"forEach": "@@"}), "cannot be parsed"),
        (_view({"forEach": 1}), "must be a FHIRPath string"),
        (_view(_cols(("id", "id"), ("id", "gender"))), "'id' is already defined"),
        (_view(_cols(("id", "id")), _cols(("id", "gender"))), "'id' is already defined"),
        (_view({"unionAll": [_cols(("a", "id"), ("b", "id")), _cols(("a", "id"), ("c", "id"))]}), "unionAll branch 2"),
        (_view({"unionAll": [_cols(("a", "id"), ("b", "id")), _cols(("b", "id"), ("a", "id"))]}), "unionAll branch 2"),
        (_view(_cols(("n", "name.where(use = %nope)"))), "%nope is used but not defined"),
        (_view(_cols(("n", "name.aggregate($this)"))), "aggregate() is not supported"),
        (_view(_cols(("n", "name.first(1)"))), "first() takes 0 argument"),
        (_view(_cols(("bad name", "id"))), "needs a name"),
        (_view({"forEach": "name", "forEachOrNull": "name", "column": [{"name": "a", "path": "id"}]}), "both forEach"),
        (_view(_cols(("a", "id")), constant=[{"name": "c"}]), "needs exactly one value"),
        (_view(_cols(("id", "id")), where=[{"path": "name.family"}]), "where path 'name.family' gives string"),
        (
            _view(
                _cols(("a", "name.family = ")),
            ),
            "unexpected 'end of expression'",
        ),
    ],
)
def test_invalid_views_raise_with_the_reason(view: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidViewError, match=reason.replace("(", r"\(").replace(")", r"\)").replace("$", r"\$")):
        validate_view(view)
    with pytest.raises(InvalidViewError):
        compile_view(view)


def test_invalid_view_error_is_a_config_error_with_a_fix() -> None:
    with pytest.raises(ConfigError) as info:
        validate_view({"select": []})
    assert info.value.fix and "resource" in info.value.fix


def test_a_valid_view_validates() -> None:
    assert validate_view(_view(_cols(("id", "id")), where=[{"path": "active"}])) is None


def test_several_values_in_a_single_value_column_is_the_specs_data_error() -> None:
    store = FhirStore.in_memory([{"resourceType": "Patient", "id": "p1", "name": [{"family": "A"}, {"family": "B"}]}])
    with pytest.raises(ViewEvaluationError, match="several values") as info:
        run_view(store.con, _view(_cols(("family", "name.family"))))
    assert isinstance(info.value, DataError)


def test_an_engine_limit_on_the_data_is_a_data_error_not_the_specs_error() -> None:
    item: dict[str, Any] = {"linkId": "leaf"}
    for depth in range(40):
        item = {"linkId": str(depth), "item": [item]}
    store = FhirStore.in_memory([{"resourceType": "QuestionnaireResponse", "id": "q1", "item": [item]}])
    view = {"resource": "QuestionnaireResponse", "select": [{"repeat": ["item"], **_cols(("id", "linkId"))}]}
    with pytest.raises(DataError, match="nests deeper than") as info:
        run_view(store.con, view)
    assert not isinstance(info.value, ViewEvaluationError)
