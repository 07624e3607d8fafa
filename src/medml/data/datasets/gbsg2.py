"""GBSG2 (Schumacher et al. 1994): recurrence-free survival of women with node-positive breast cancer.

Who: 686 women of the German Breast Cancer Study Group 2 trial, randomised to hormonal therapy or not; one row per
patient (no identifier: the row number is used). Read from the copy that ships in scikit-survival's wheel
(``sksurv.datasets.load_gbsg2``), the dataset of its user guide.
Index time: randomisation. Outcome: recurrence or death (``cens`` = 1) at ``time`` days, else censored.
Predictors: the eight baseline columns (age, menopausal status, tumour size, grade, positive nodes, progesterone
and oestrogen receptors, hormonal therapy). Sensitive: age band.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from medml.data.datasets._common import age_band, id_array, sensitive_frame
from medml.data.targets import SurvivalTarget
from medml.data.task import TaskDataset, infer_features
from medml.errors import InputFileError

KEY = "gbsg2"

_NUMERIC: dict[str, tuple[str, str]] = {
    "age": ("Age", "years"),
    "tsize": ("Tumour size", "mm"),
    "pnodes": ("Positive lymph nodes", "count"),
    "progrec": ("Progesterone receptor", "fmol/mg"),
    "estrec": ("Oestrogen receptor", "fmol/mg"),
}
_CATEGORICAL = {"horTh": "Hormonal therapy", "menostat": "Menopausal status", "tgrade": "Tumour grade"}


def load() -> TaskDataset:
    """The 686 patients as a survival task."""
    try:
        from sksurv.datasets import load_gbsg2
    except ImportError as e:  # a core dependency: only a broken install lacks it
        raise InputFileError("GBSG2 ships with scikit-survival, which is not installed", "pip install medml") from e
    X0, y = load_gbsg2()
    X = pd.DataFrame(
        {
            **{c: X0[c].astype(float) for c in ("age", "tsize", "pnodes", "progrec", "estrec")},
            **{
                c: pd.Categorical(X0[c].astype(str), categories=[str(v) for v in X0[c].cat.categories])
                for c in _CATEGORICAL
            },
        }
    ).reset_index(drop=True)
    ids = id_array(np.arange(1, len(X) + 1))
    return TaskDataset(
        name=KEY,
        task="recurrence-free survival after randomisation",
        X=X,
        y=SurvivalTarget(np.asarray(y["time"], dtype=float), np.asarray(y["cens"], dtype=bool), "recurrence or death"),
        groups=ids,
        features=infer_features(
            X, {c: u for c, (_, u) in _NUMERIC.items()}, {c: lab for c, (lab, _) in _NUMERIC.items()} | _CATEGORICAL
        ),
        sensitive=sensitive_frame({"age_band": age_band(X["age"])}),
        ids=ids,
        population="686 women with node-positive breast cancer in the GBSG2 trial (Germany, 1984-1989)",
        provenance="sksurv.datasets.load_gbsg2 (scikit-survival's copy of GBSG2; Schumacher et al. 1994)",
        excluded={"time": "the outcome: days to recurrence, death or censoring", "cens": "the outcome: 1 = event"},
    )
