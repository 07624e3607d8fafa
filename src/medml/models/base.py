"""What a tabular model kind declares in its class, so that the code around it stays generic: how it is searched,
how it meets a missing input, how it prepares its inputs. The one table of kinds is
:data:`medml.models.factory.MODEL_KINDS`; factory, tuning, the CLI, the CDS card, the model card and the demo read
these declarations from it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

if TYPE_CHECKING:
    import optuna

    from medml.data.task import FeatureSpec


@dataclass(frozen=True)
class MissingData:
    """How a model kind meets a missing input, in words: for the clinician on a CDS card (``card``, after "For
    these, ") and for the model card of the report (``report``, after "Missing inputs are ")."""

    card: str
    report: str


class RiskModel(Protocol):
    """A tabular risk model kind: a scikit-learn classifier whose class declares what the table of kinds reads."""

    #: the name users give (``--model lgbm``)
    kind: ClassVar[str]
    #: one line for listings
    description: ClassVar[str]
    missing_data: ClassVar[MissingData]
    #: how predictors are prepared, for the model card (TRIPOD+AI 12b)
    preprocessing: ClassVar[str]
    #: how a card names the per-patient factors ("TreeSHAP contributions"): the kind's own explanation, in few words
    explanation_card: ClassVar[str]
    #: the share of a search budget this kind needs (a model with one hyperparameter needs less)
    search_budget_share: ClassVar[float]

    def __init__(self, features: Sequence[FeatureSpec] | None = None, *, seed: int = 0, **params: Any) -> None: ...

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict[str, Any]:
        """The hyperparameters to try, as optuna suggestions."""
        ...

    def fit_trial(self, X: pd.DataFrame, y: npt.ArrayLike, X_val: pd.DataFrame, y_val: npt.ArrayLike) -> dict[str, Any]:
        """Fit for one search trial (``X_val`` may steer the fit); returns the parameters learned on the way."""
        ...

    def fit(self, X: pd.DataFrame, y: npt.ArrayLike) -> Any: ...

    def predict_proba(self, X: pd.DataFrame) -> npt.NDArray[np.float64]: ...
