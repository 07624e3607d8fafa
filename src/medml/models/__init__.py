"""Risk models as scikit-learn estimators: logistic baseline, LightGBM, calibration, tuning."""

from medml.models.calibration import CalibratedRiskModel, choose_method
from medml.models.factory import MODEL_KINDS, check_model_kind, make_model
from medml.models.gbm import LightGBMRiskModel
from medml.models.logistic import LogisticRiskModel
from medml.models.tuning import TuningResult, tune

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
