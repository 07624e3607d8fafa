"""Canonical data objects: Cohort, TaskDataset, targets, Predictions, patient-grouped splits, leakage checks."""

from medml.data.cohort import Cohort
from medml.data.leakage import (
    check_feature_times,
    check_patient_overlap,
    check_target_not_in_features,
    check_task,
)
from medml.data.predictions import Predictions
from medml.data.splits import Split, patient_kfold, patient_split
from medml.data.targets import BinaryTarget, SurvivalTarget, Target
from medml.data.task import FeatureSpec, TaskDataset, infer_features

__all__ = [
    "BinaryTarget",
    "Cohort",
    "FeatureSpec",
    "Predictions",
    "Split",
    "SurvivalTarget",
    "Target",
    "TaskDataset",
    "check_feature_times",
    "check_patient_overlap",
    "check_target_not_in_features",
    "check_task",
    "infer_features",
    "patient_kfold",
    "patient_split",
]
