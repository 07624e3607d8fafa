"""Report inputs built from simulated patients: features, outcomes, predictions and their evaluation by
``medml.evaluate.evaluate_binary``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from medml.data.predictions import Predictions
from medml.data.task import FeatureSpec
from medml.evaluate import evaluate_binary
from medml.report import ReportInputs, table_one

SCRIPT_LABEL = "<script>alert('x')</script> Lactate"
MODEL_ID = "sepsis-risk@1.2.0"
POPULATION = "adult inpatients"


@dataclass
class Cohort:
    X: pd.DataFrame
    y: np.ndarray
    scores: np.ndarray
    sensitive: pd.DataFrame
    features: tuple[FeatureSpec, ...]


FEATURES = (
    FeatureSpec("age", "numeric", "years", "Age"),
    FeatureSpec("creatinine", "numeric", "mg/dL", "Creatinine"),
    FeatureSpec("lactate", "numeric", "mmol/L", SCRIPT_LABEL),
    FeatureSpec("heart_rate", "numeric", "beats/min", "Heart rate"),
    FeatureSpec("admission", "categorical", "", "Admission type"),
    FeatureSpec("ward", "categorical", "", "Ward"),
)


def simulate(n: int, seed: int, shift: float = 0.0) -> Cohort:
    """Adult inpatients with a ~15% outcome that rises with age, creatinine and lactate."""
    rng = np.random.default_rng(seed)
    age = rng.normal(64 + 5 * shift, 15, n).clip(18, 99).round()
    creat = rng.lognormal(0.05, 0.45, n)
    creat[rng.random(n) < 0.12] = np.nan
    lactate = rng.gamma(2.0, 0.9, n)
    lactate[rng.random(n) < 0.3] = np.nan
    hr = rng.normal(88, 16, n).round()
    admission = rng.choice(["emergency", "elective", "urgent"], n, p=[0.6, 0.3, 0.1]).astype(object)
    admission[rng.random(n) < 0.03] = None
    wards = ["medicine", "surgery", "cardiology", "oncology", "neurology", "renal", "ICU", "geriatrics"]
    ward = rng.choice(wards, n, p=[0.3, 0.2, 0.15, 0.1, 0.08, 0.07, 0.05, 0.05])
    sex = rng.choice(["F", "M"], n)
    logit = (
        -2.9
        + 0.045 * (age - 64)
        + 1.4 * np.nan_to_num(np.log(creat), nan=0.0)
        + 0.6 * np.nan_to_num(lactate - 1.8, nan=0.0)
        + 0.9 * (admission == "emergency")
        + shift
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    noise = rng.normal(0, 0.3, n)
    scores = 1 / (1 + np.exp(-(logit * 0.92 + noise)))
    X = pd.DataFrame(
        {"age": age, "creatinine": creat, "lactate": lactate, "heart_rate": hr, "admission": admission, "ward": ward}
    )
    band = pd.cut(age, [0, 50, 70, 120], labels=["<50", "50-69", "70+"]).astype(object)
    band[:12] = None  # a handful without a recorded age band: too few to estimate, the report must say so
    sensitive = pd.DataFrame({"sex": sex, "age_band": band})
    return Cohort(X, y, scores, sensitive, FEATURES)


def evaluate(c: Cohort, dataset: str, split: str) -> dict:
    """The evaluation of one cohort's predictions by medml.evaluate, as an EvaluationReport dict."""
    pred = Predictions(ids=np.arange(len(c.y)).astype(object), y_true=c.y, scores=c.scores, model=MODEL_ID)
    report = evaluate_binary(
        pred, dataset=dataset, split=split, population=POPULATION, sensitive=c.sensitive, n_boot=200, seed=0
    )
    return report.to_dict()


def make_inputs(c: Cohort, *, external: bool = True, model_kind: str = "lightgbm") -> ReportInputs:
    evaluation = evaluate(c, "mimic-demo", "test")
    ext = [evaluate(simulate(900, seed=7, shift=0.4), "site-B (2023)", "external")] if external else []
    importance = [
        {"feature": f.name, "label": f.label, "unit": f.unit, "importance": v}
        for f, v in zip(FEATURES, (0.42, 0.31, 0.27, 0.08, 0.22, 0.05), strict=True)
    ]
    importance.sort(key=lambda r: -r["importance"])
    return ReportInputs(
        evaluation=evaluation,
        external=ext,
        model={
            "name": "sepsis-risk",
            "version": "1.2.0",
            "model_kind": model_kind,
            "params": {"n_estimators": 300, "learning_rate": 0.05, "num_leaves": 31},
            "calibration": "isotonic",
            "created": "2025-01-15T10:00:00Z",
            "code_version": "git:abc1234",
            "data_hash": "sha256:9f2c1e",
            "seed": 42,
            "split_sizes": {"train": {"n": 7000, "n_events": 1050}, "calibration": 1500, "test": len(c.y)},
            "intended_use": "Flag adult inpatients at high risk of sepsis within 48 hours for clinical review",
        },
        dataset={
            "key": "mimic-demo",
            "task": "sepsis_within(hours=48)",
            "target": "sepsis within 48 h",
            "population": "adult inpatients, first admission",
            "provenance": "MIMIC-IV demo v2.2, FHIR export",
            "excluded": {"patient_name": "identifier", "discharge_code": "recorded after the index time"},
        },
        features=[f.to_dict() for f in c.features],
        table_one=table_one(c.X, c.y, c.features),
        importance=importance,
        examples=[
            {
                "id": "P-0001",
                "risk": 0.41,
                "factors": [
                    {
                        "label": "Lactate",
                        "value": 4.2,
                        "unit": "mmol/L",
                        "direction": "raises risk",
                        "contribution": 0.61,
                    },
                    {"label": "Age", "value": 81, "unit": "years", "direction": "raises risk", "contribution": 0.33},
                    {
                        "label": "Admission type",
                        "value": "elective",
                        "unit": "",
                        "direction": "lowers risk",
                        "contribution": -0.28,
                    },
                ],
            },
            {
                "id": "P-0002",
                "risk": 0.03,
                "factors": [
                    {
                        "label": "Creatinine",
                        "value": 0.7,
                        "unit": "mg/dL",
                        "direction": "lowers risk",
                        "contribution": -0.4,
                    },
                    {
                        "label": "Heart rate",
                        "value": None,
                        "unit": "beats/min",
                        "direction": "raises risk",
                        "contribution": 0.05,
                    },
                ],
            },
        ],
    )
