"""The one table of model kinds: each kind's class declares what factory, tuning, the CLI check, the CDS card, the
model card and the demo read, so a kind added to the table alone is trained, tuned and described everywhere."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import optuna
import pytest

from medml.errors import ConfigError
from medml.fhir.features import FeatureDefinition, Measurement, ServingSpec
from medml.models import LogisticRiskModel
from medml.models.base import MissingData
from medml.models.factory import MODEL_KINDS, check_model_kind, find_model_kind, make_model
from medml.models.tuning import tune


class RidgeLike(LogisticRiskModel):
    """A new kind: one class declaring its contract, and one entry in the table."""

    kind: ClassVar[str] = "ridge-like"
    description: ClassVar[str] = "a test kind"
    missing_data: ClassVar[MissingData] = MissingData(card="the test kind does X", report="handled the test way")
    preprocessing: ClassVar[str] = "Test kind: predictors as given."
    search_budget_share: ClassVar[float] = 0.5

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict[str, Any]:
        return {"C": trial.suggest_float("C", 0.1, 1.0)}


@pytest.fixture()
def with_new_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(MODEL_KINDS, RidgeLike.kind, RidgeLike)


def test_every_kind_declares_its_contract() -> None:
    assert list(MODEL_KINDS) == ["logistic", "lgbm", "stack"]
    for name, cls in MODEL_KINDS.items():
        assert cls.kind == name and cls.description and cls.preprocessing
        assert cls.missing_data.card and cls.missing_data.report
        assert 0 < cls.search_budget_share <= 1
        params = cls.search_space(optuna.create_study().ask())
        assert params and set(params) <= set(make_model(name, []).get_params())


def test_an_unknown_kind_is_one_clear_error() -> None:
    assert find_model_kind("xgboost") is None
    with pytest.raises(ConfigError, match="unknown model 'xgboost'; choose one of: logistic, lgbm"):
        check_model_kind("xgboost")


@pytest.mark.usefixtures("with_new_kind")
def test_a_kind_added_to_the_table_is_checked_made_and_tuned() -> None:
    from medml.pipelines.catalogue import load_dataset

    check_model_kind("ridge-like")
    pima = load_dataset("pima")
    assert isinstance(make_model("ridge-like", pima.features, {"C": 0.5}), RidgeLike)
    result = tune("ridge-like", pima, budget_seconds=600, max_trials=2, seed=0)
    assert result.n_trials == 2 and set(result.params) == {"C"} and 0.1 <= result.params["C"] <= 1.0


@pytest.mark.usefixtures("with_new_kind")
def test_a_kind_added_to_the_table_is_described_on_the_card_and_in_the_model_card() -> None:
    from medml.report import ReportInputs, model_card
    from medml.service.cards import detail
    from medml.service.deploy import Deployment, HookService
    from medml.service.scoring import Scored

    spec = ServingSpec(FeatureDefinition("t", (Measurement("lac", "Lactate", ("2524-7",), "mmol/L"),)), "sepsis")
    dep = Deployment("s", "m@1", "t", "d", (0.1, 0.3), "n", HookService(spec, None), "tests only")
    scored = Scored(0.2, "warning", [], ["Lactate"], datetime(2026, 1, 1, tzinfo=UTC), None, None, 3)
    assert "For these, the test kind does X." in detail(dep, scored, "ridge-like", authenticated=True)
    inputs = ReportInputs(evaluation={"n": 300, "n_events": 45}, model={"model_kind": "ridge-like"})
    card = {e["item"]: e for e in model_card(inputs)}
    assert card["11"]["answer"] == "Missing inputs are handled the test way."
    assert card["12b"]["answer"] == "Test kind: predictors as given."
    lgbm = {e["item"]: e for e in model_card(ReportInputs(evaluation=inputs.evaluation, model={"model_kind": "lgbm"}))}
    assert lgbm["12b"]["answer"] == MODEL_KINDS["lgbm"].preprocessing


def test_each_kind_names_its_own_explanation_on_the_card() -> None:
    """Issue 13: the card of a logistic model said 'TreeSHAP', which explains trees only."""
    from medml.models.factory import MODEL_KINDS

    named = {kind: cls.explanation_card for kind, cls in MODEL_KINDS.items()}
    assert named["lgbm"] == "TreeSHAP contributions"
    assert "TreeSHAP" not in named["logistic"] and "logistic" in named["logistic"]
