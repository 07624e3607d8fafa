"""Multi-class and multi-label predictions: each class one-vs-rest, their macro mean (the MedMNIST AUC), accuracy,
and the confusion matrix, with percentile bootstrap intervals that resample whole images (or patients' rows).

``evaluate_classes`` returns plain data for the bundle and the report. The binary machinery
(:func:`medml.evaluate.evaluate_binary`) still does the work per class and on the pooled pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from medml.errors import DataError
from medml.evaluate.bootstrap import _check_options, percentile_interval, resample_counts, single_threaded_blas
from medml.evaluate.calibration import brier, calibration_intercept, calibration_slope
from medml.evaluate.discrimination import auprc, auroc_weighted, class_sorted_order

FloatArray = npt.NDArray[np.float64]
ClassTask = Literal["multiclass", "multilabel"]


def one_hot(y: npt.ArrayLike, task: ClassTask, n_classes: int) -> npt.NDArray[np.int64]:
    """N x K 0/1 indicators: class indices (multiclass) turned one-hot, or multilabel 0/1 rows as they are."""
    a = np.asarray(y)
    if task == "multilabel":
        if a.ndim != 2 or a.shape[1] != n_classes or not np.isin(a, (0, 1)).all():
            raise DataError(
                f"multilabel labels must be N x {n_classes} of 0/1, got shape {a.shape}",
                "give one 0/1 column per label",
            )
        return a.astype(np.int64)
    a = a.reshape(-1)
    if a.size and (a.min() < 0 or a.max() >= n_classes or not np.all(a == np.round(a))):
        raise DataError(f"class labels must be integers 0..{n_classes - 1}", "check the labels")
    return np.eye(n_classes, dtype=np.int64)[a.astype(np.int64)]


def predicted_labels(p: FloatArray, task: ClassTask, threshold: float = 0.5) -> npt.NDArray[np.int64]:
    """N x K 0/1 predictions: the most probable class (multiclass), each label at ``threshold`` (multilabel)."""
    if task == "multilabel":
        return (p >= threshold).astype(np.int64)
    return np.eye(p.shape[1], dtype=np.int64)[np.argmax(p, axis=1)]


def evaluate_classes(
    y: npt.ArrayLike,
    p: npt.ArrayLike,
    *,
    task: ClassTask,
    class_names: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """Per-class one-vs-rest AUROC, AUPRC, Brier and calibration; their macro-mean AUROC; accuracy (the most
    probable class for multiclass; the mean over labels of agreement at ``threshold`` for multilabel, the MedMNIST
    definitions); and for multiclass the confusion matrix (rows true, columns predicted).

    AUROC intervals (per class and macro) and the accuracy interval come from the same ``n_boot`` resamples of
    images. A class with no events (or no non-events) in the data has no AUROC and is left out of the macro mean,
    which says how many classes it covers."""
    _check_options(n_boot, level)
    probs = np.asarray(p, dtype=np.float64)
    k = len(class_names)
    if probs.ndim != 2 or probs.shape[1] != k:
        raise DataError(
            f"probabilities must be N x {k} (one column per class), got shape {probs.shape}",
            "pass one probability column per class name",
        )
    if not np.isfinite(probs).all() or probs.min() < 0 or probs.max() > 1:
        raise DataError("probabilities must be finite and in [0, 1]", "pass model probabilities, not logits")
    onehot = one_hot(y, task, k)
    if len(onehot) != len(probs):
        raise DataError(f"{len(onehot)} labels but {len(probs)} predictions", "pass one prediction per image")
    n = len(onehot)
    scorable = [j for j in range(k) if 0 < onehot[:, j].sum() < n]
    if not scorable:
        raise DataError("no class has both events and non-events", "evaluate on images of more than one class")
    pred = predicted_labels(probs, task, threshold)
    correct = (pred == onehot).all(axis=1) if task == "multiclass" else (pred == onehot).mean(axis=1)

    aurocs: dict[int, list[FloatArray]] = {j: [] for j in scorable}
    accuracy_draws: list[FloatArray] = []
    layouts = {j: class_sorted_order(onehot[:, j].astype(np.float64), probs[:, j]) for j in scorable}
    with single_threaded_blas():
        for counts in resample_counts(n, n_boot, seed) if n_boot else ():
            for j, order in layouts.items():
                aurocs[j].append(auroc_weighted(onehot[order, j].astype(np.float64), probs[order, j], counts[:, order]))
            accuracy_draws.append(counts @ correct.astype(np.float64) / n)
    ones = np.ones((1, n))
    point = {
        j: float(auroc_weighted(onehot[layouts[j], j].astype(np.float64), probs[layouts[j], j], ones)[0])
        for j in scorable
    }
    draws = {j: np.concatenate(v) if v else np.empty(0) for j, v in aurocs.items()}
    macro_draws = np.nanmean(np.vstack([draws[j] for j in scorable]), axis=0) if n_boot else np.empty(0)

    def est(value: float, values: FloatArray) -> dict[str, float | None]:
        low, high = percentile_interval(values, level, n_boot)
        return {"value": value, "low": _num(low), "high": _num(high)}

    per_class = []
    for j, name in enumerate(class_names):
        yj, pj = onehot[:, j], probs[:, j]
        row: dict[str, Any] = {
            "name": str(name),
            "n_events": int(yj.sum()),
            "prevalence": float(yj.mean()),
            "mean_probability": float(pj.mean()),
            "brier": brier(yj, pj),
        }
        if j in point:
            row |= {
                "auroc": est(point[j], draws[j]),
                "auprc": auprc(yj, pj),
                "calibration_slope": _safe(calibration_slope, yj, pj),
                "calibration_intercept": _safe(calibration_intercept, yj, pj),
            }
        per_class.append(row)
    out: dict[str, Any] = {
        "task": task,
        "n": n,
        "classes": [str(c) for c in class_names],
        "macro_auroc": est(float(np.mean([point[j] for j in scorable])), macro_draws),
        "macro_over": f"{len(scorable)} of {k} classes (those with events and non-events)",
        "accuracy": est(float(correct.mean()), np.concatenate(accuracy_draws) if accuracy_draws else np.empty(0)),
        "accuracy_definition": (
            "share of images whose most probable class is the true one"
            if task == "multiclass"
            else f"mean over labels of the share of images labelled right at {threshold}"
        ),
        "per_class": per_class,
        "bootstrap": {"n": n_boot, "level": level, "seed": seed, "method": "percentile", "unit": "image"},
    }
    if task == "multiclass":
        truth, guess = np.argmax(onehot, axis=1), np.argmax(probs, axis=1)
        out["confusion"] = np.bincount(truth * k + guess, minlength=k * k).reshape(k, k).tolist()
    return out


def pooled_pairs(
    y: npt.ArrayLike, p: npt.ArrayLike, task: ClassTask, ids: npt.ArrayLike, class_names: Sequence[str]
) -> tuple[npt.NDArray[np.int64], FloatArray, npt.NDArray[np.str_]]:
    """Every (image, class) pair as one binary prediction (the micro-average, one-vs-rest): 0/1 outcomes,
    probabilities, and ids ``image|class``."""
    probs = np.asarray(p, dtype=np.float64)
    onehot = one_hot(y, task, len(class_names))
    image_ids = np.asarray(ids).astype(str)
    pair_ids = np.char.add(
        np.char.add(np.repeat(image_ids, len(class_names)), "|"),
        np.tile(np.asarray(class_names, dtype=str), len(image_ids)),
    )
    return onehot.reshape(-1), probs.reshape(-1), pair_ids


def _safe(metric: Any, y: npt.ArrayLike, p: npt.ArrayLike) -> float | None:
    try:
        return _num(float(metric(y, p)))
    except DataError:
        return None


def _num(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)
