"""Subgroup report: values against fairlearn's MetricFrame and scikit-learn per group; flagging of a planted
degraded subgroup and not of equal ones; notes for small groups."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from evaluate_sim import simulate
from fairlearn.metrics import MetricFrame
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, precision_score, recall_score, roc_auc_score

from medml.errors import DataError
from medml.evaluate import subgroup_report
from medml.evaluate.calibration import logit


def groups_of(report: list[dict], attribute: str) -> dict[str, dict]:
    section = next(s for s in report if s["attribute"] == attribute)
    return {g["group"]: g for g in section["groups"]}


def test_group_values_equal_metricframe_and_sklearn_per_group() -> None:
    y, p, _ = simulate(3000, seed=1, shift=-1.0)
    rng = np.random.default_rng(1)
    sensitive = pd.DataFrame({"sex": rng.choice(["F", "M"], 3000), "site": rng.choice([1, 2, 3], 3000)})
    report = subgroup_report(y, p, sensitive, threshold=0.3, n_boot=100, seed=0)
    frame = MetricFrame(
        metrics={"auroc": roc_auc_score, "brier": brier_score_loss},
        y_true=y,
        y_pred=p,
        sensitive_features=sensitive["site"],
    )
    site = groups_of(report, "site")
    for label, row in frame.by_group.iterrows():
        assert site[str(label)]["auroc"].value == pytest.approx(row["auroc"], abs=1e-12)
        assert site[str(label)]["brier"].value == pytest.approx(row["brier"], abs=1e-12)
    for label, group in groups_of(report, "sex").items():
        mask = sensitive["sex"].to_numpy() == label
        yg, pg = y[mask], p[mask]
        flagged = (pg >= 0.3).astype(int)
        assert group["n"] == mask.sum() and group["n_events"] == yg.sum()
        assert group["prevalence"] == pytest.approx(yg.mean())
        assert group["auroc"].value == pytest.approx(roc_auc_score(yg, pg))
        assert group["auprc"].value == pytest.approx(average_precision_score(yg, pg))
        assert group["sensitivity"] == pytest.approx(recall_score(yg, flagged))
        assert group["specificity"] == pytest.approx(recall_score(1 - yg, 1 - flagged))
        assert group["ppv"] == pytest.approx(precision_score(yg, flagged))
        lr = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000).fit(logit(pg)[:, None], yg)
        assert group["calibration_slope"].value == pytest.approx(lr.coef_[0, 0], rel=1e-5)
        assert group["auroc"].low < group["auroc"].value < group["auroc"].high
        assert group["note"] == ""


def _two_groups(degrade: float, seed: int) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Group B's predictions carry extra noise of scale ``degrade`` on the log-odds scale."""
    y, p, risk = simulate(8000, seed=seed, shift=-1.0)
    rng = np.random.default_rng(seed + 1000)
    group = np.where(np.arange(8000) % 2 == 0, "A", "B")
    noisy = 1 / (1 + np.exp(-(logit(risk) + degrade * rng.normal(size=8000))))
    p = np.where(group == "B", noisy, p)
    return y, p, pd.DataFrame({"group": group})


def test_planted_degraded_subgroup_is_flagged() -> None:
    y, p, sensitive = _two_groups(degrade=2.0, seed=2)
    (section,) = subgroup_report(y, p, sensitive, threshold=0.3, n_boot=200, seed=0)
    groups = groups_of([section], "group")
    assert groups["A"]["auroc"].value - groups["B"]["auroc"].value > 0.1
    assert "auroc" in section["flagged"] and "calibration_slope" in section["flagged"]
    assert section["gaps"]["auroc"].low > 0


def test_equal_subgroups_are_not_flagged() -> None:
    y, p, sensitive = _two_groups(degrade=0.0, seed=3)
    (section,) = subgroup_report(y, p, sensitive, threshold=0.3, n_boot=200, seed=0)
    assert section["flagged"] == []
    gap = section["gaps"]["auroc"]
    assert gap.low < gap.value < gap.high and gap.value < 0.05


def test_small_group_gets_a_note_and_no_rank_metrics_and_missing_is_unknown() -> None:
    y, p, _ = simulate(2000, seed=4, shift=-1.0)
    race = np.array(["A", "B"] * 1000, dtype=object)
    lowest = np.argsort(p)
    race[lowest[:40]] = "C"  # the 40 lowest risks: too few events for discrimination
    unknown = np.setdiff1d(np.arange(0, 2000, 20), lowest[:40])
    race[unknown] = None
    sensitive = pd.DataFrame({"race": race})
    (section,) = subgroup_report(y, p, sensitive, threshold=0.3, n_boot=50, seed=0)
    groups = groups_of([section], "race")
    assert list(groups) == ["A", "B", "C", "Unknown"]
    assert groups["Unknown"]["n"] == unknown.size
    small = groups["C"]
    assert small["n_events"] < 10
    assert small["auroc"] is None and small["auprc"] is None and small["calibration_slope"] is None
    assert "too few" in small["note"] and small["brier"] is not None
    # the small group takes no part in the gaps
    values = [groups[g]["auroc"].value for g in ("A", "B", "Unknown")]
    assert section["gaps"]["auroc"].value == pytest.approx(max(values) - min(values))


def test_deterministic_and_rejects_misaligned_attributes() -> None:
    y, p, sensitive = _two_groups(degrade=0.5, seed=5)
    first = subgroup_report(y, p, sensitive, threshold=0.3, n_boot=50, seed=1)
    assert first == subgroup_report(y, p, sensitive, threshold=0.3, n_boot=50, seed=1)
    with pytest.raises(DataError, match="one row of sensitive attributes per prediction"):
        subgroup_report(y, p, sensitive.iloc[:10], threshold=0.3, n_boot=10, seed=0)
