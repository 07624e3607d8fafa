"""Predictions: what crosses from a model to evaluation; plain arrays, no model code."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from medml.errors import DataError


@dataclass(frozen=True)
class Predictions:
    """Calibrated probabilities of the positive class for samples ``ids`` with their true outcome.

    ``model`` names the producer as ``name@version``; ``survival`` optionally holds survival curves
    (samples x times).
    """

    ids: npt.NDArray[np.object_]
    y_true: npt.NDArray[np.int8]
    scores: npt.NDArray[np.float64]
    model: str = ""
    survival: npt.NDArray[np.float64] | None = None

    def __post_init__(self) -> None:
        s = np.asarray(self.scores, dtype=float)
        y = np.asarray(self.y_true)
        if s.shape != y.shape or s.ndim != 1:
            raise DataError(f"predictions: {s.shape} scores for {y.shape} outcomes")
        if np.isnan(s).any():
            raise DataError("predictions contain missing scores", "check the model's input for unhandled values")
        object.__setattr__(self, "scores", s)
        object.__setattr__(self, "y_true", y.astype(np.int8))
        object.__setattr__(self, "ids", np.asarray(self.ids))

    def __len__(self) -> int:
        return int(self.scores.size)
