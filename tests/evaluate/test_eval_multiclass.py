"""Multiclass and multilabel evaluation against scikit-learn: one-vs-rest AUROC, its macro mean (MedMNIST's AUC),
accuracy (MedMNIST's ACC), the confusion matrix, and bootstrap intervals recomputed one resample at a time."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, roc_auc_score

from medml.errors import DataError
from medml.evaluate.bootstrap import resample_counts
from medml.evaluate.multiclass import evaluate_classes, pooled_pairs


def _multiclass(n: int = 300, k: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, p


def _multilabel(n: int = 300, k: int = 3, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random((n, k)) < [0.5, 0.2, 0.05]).astype(int)
    p = 1 / (1 + np.exp(-(rng.normal(size=(n, k)) + 2.0 * y - 1.0)))
    return y, p


def test_multiclass_matches_scikit_learn() -> None:
    y, p = _multiclass()
    r = evaluate_classes(y, p, task="multiclass", class_names=["a", "b", "c", "d"], n_boot=0)
    assert r["macro_auroc"]["value"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    for k, row in enumerate(r["per_class"]):
        assert row["auroc"]["value"] == pytest.approx(roc_auc_score(y == k, p[:, k]))
        assert row["n_events"] == int((y == k).sum())
    assert r["accuracy"]["value"] == pytest.approx(accuracy_score(y, p.argmax(axis=1)))
    assert r["confusion"] == confusion_matrix(y, p.argmax(axis=1), labels=range(4)).tolist()


def test_multilabel_matches_scikit_learn_and_medmnist_accuracy() -> None:
    y, p = _multilabel()
    r = evaluate_classes(y, p, task="multilabel", class_names=["x", "y", "z"], n_boot=0)
    assert r["macro_auroc"]["value"] == pytest.approx(roc_auc_score(y, p, average="macro"))
    # MedMNIST's multilabel ACC: per label, the share right at 0.5, then the mean over labels
    assert r["accuracy"]["value"] == pytest.approx(np.mean([accuracy_score(y[:, k], p[:, k] >= 0.5) for k in range(3)]))
    assert "confusion" not in r


def test_intervals_are_the_percentiles_of_the_same_resamples_scored_one_by_one() -> None:
    y, p = _multiclass(n=120, k=3, seed=3)
    n_boot, seed = 200, 11
    r = evaluate_classes(y, p, task="multiclass", class_names=["a", "b", "c"], n_boot=n_boot, seed=seed)
    macro, acc, first = [], [], []
    for block in resample_counts(len(y), n_boot, seed):
        for counts in block:
            idx = np.repeat(np.arange(len(y)), counts.astype(int))
            macro.append(np.mean([roc_auc_score(y[idx] == k, p[idx, k]) for k in range(3)]))
            first.append(roc_auc_score(y[idx] == 0, p[idx, 0]))
            acc.append(accuracy_score(y[idx], p[idx].argmax(axis=1)))
    for est, draws in ((r["macro_auroc"], macro), (r["accuracy"], acc), (r["per_class"][0]["auroc"], first)):
        low, high = np.quantile(draws, [0.025, 0.975])
        assert est["low"] == pytest.approx(low, abs=1e-9) and est["high"] == pytest.approx(high, abs=1e-9)
        assert est["low"] <= est["value"] <= est["high"]


def test_a_class_absent_from_the_test_set_is_left_out_of_the_macro_mean() -> None:
    y, p = _multiclass(k=4)
    keep = y != 3
    r = evaluate_classes(y[keep], p[keep], task="multiclass", class_names=["a", "b", "c", "d"], n_boot=50)
    assert r["macro_over"].startswith("3 of 4")
    assert "auroc" not in r["per_class"][3] and r["per_class"][3]["n_events"] == 0
    assert r["macro_auroc"]["value"] == pytest.approx(
        np.mean([roc_auc_score(y[keep] == k, p[keep, k]) for k in range(3)])
    )


def test_pooled_pairs_are_the_micro_average() -> None:
    y, p = _multiclass(n=50, k=3)
    yy, pp, ids = pooled_pairs(y, p, "multiclass", np.arange(50), ["a", "b", "c"])
    onehot = np.eye(3)[y]
    assert roc_auc_score(yy, pp) == pytest.approx(roc_auc_score(onehot, p, average="micro"))
    assert ids[0] == "0|a" and ids[4] == "1|b" and len(ids) == 150


@pytest.mark.parametrize(
    ("y", "p", "task", "fragment"),
    [
        (np.array([0, 1, 2]), np.full((3, 2), 0.5), "multiclass", "N x 3"),
        (np.array([0, 1, 3]), np.full((3, 3), 1 / 3), "multiclass", "integers 0..2"),
        (np.array([0, 1, 2]), np.full((3, 3), 2.0), "multiclass", "in [0, 1]"),
        (np.array([[1, 0, 0]] * 3), np.full((3, 3), 0.5), "multilabel", "no class has both"),
        (np.array([0, 1]), np.full((3, 3), 1 / 3), "multiclass", "2 labels but 3 predictions"),
    ],
)
def test_bad_input_says_what_is_wrong(y: np.ndarray, p: np.ndarray, task: str, fragment: str) -> None:
    with pytest.raises(DataError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        evaluate_classes(y, p, task=task, class_names=["a", "b", "c"], n_boot=10)  # type: ignore[arg-type]
