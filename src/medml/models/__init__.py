"""Risk models as scikit-learn estimators: logistic baseline, LightGBM, calibration, tuning; image models under
:mod:`medml.models.imaging`.

The tabular names are loaded on first use, so that importing a submodule (an image model in the service, say)
does not import optuna and LightGBM through this package.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medml.models.calibration import CalibratedRiskModel, choose_method
    from medml.models.factory import MODEL_KINDS, check_model_kind, make_model
    from medml.models.gbm import LightGBMRiskModel
    from medml.models.logistic import LogisticRiskModel
    from medml.models.tuning import TuningResult, tune

#: public name -> the module that defines it
_WHERE = {
    "CalibratedRiskModel": "calibration",
    "choose_method": "calibration",
    "MODEL_KINDS": "factory",
    "check_model_kind": "factory",
    "make_model": "factory",
    "LightGBMRiskModel": "gbm",
    "LogisticRiskModel": "logistic",
    "TuningResult": "tuning",
    "tune": "tuning",
}

__all__ = [
    "MODEL_KINDS",
    "CalibratedRiskModel",
    "LightGBMRiskModel",
    "LogisticRiskModel",
    "TuningResult",
    "check_model_kind",
    "choose_method",
    "make_model",
    "tune",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"medml.models.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'medml.models' has no attribute {name!r}")
