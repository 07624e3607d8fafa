"""The boosted survival model's defaults and early stopping: the inner-validation score is the Cox partial
likelihood by its definition, early stopping stops early on noise and late on signal, the size-dependent defaults
follow the number of events, and the search still scores the defaults first."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medml.data.targets import SurvivalTarget
from medml.models.survival import SMALL_EVENTS, GradientBoostedSurvivalModel, cox_partial_loglik

pytestmark = pytest.mark.filterwarnings("ignore:Starting with pandas version 4.0:DeprecationWarning")


def cohort(n: int, signal: float, seed: int = 0) -> tuple[pd.DataFrame, SurvivalTarget]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 5)), columns=[f"x{i}" for i in range(5)])
    lp = signal * (X["x0"] + np.where(X["x1"] > 0, 1.0, -1.0)).to_numpy()
    t_event = rng.exponential(1 / (0.01 * np.exp(lp)))
    t_cens = rng.uniform(5, 300, n)
    return X, SurvivalTarget(np.minimum(t_event, t_cens), t_event <= t_cens, "death")


def test_partial_loglik_is_the_textbook_sum_with_breslow_ties() -> None:
    """Against the definition written as a double loop: for each event i, f_i - log(sum_{j: t_j >= t_i} e^f_j),
    ties sharing one risk set (Breslow), averaged over the events."""
    rng = np.random.default_rng(1)
    t = rng.integers(1, 15, 60).astype(float)  # many ties
    e = rng.random(60) < 0.6
    f = rng.normal(size=60) * 3
    total = sum(f[i] - np.log(np.exp(f[t >= t[i]]).sum()) for i in range(60) if e[i])
    assert cox_partial_loglik(f, t, e) == pytest.approx(total / e.sum(), rel=1e-12)
    assert cox_partial_loglik(f + 50.0, t, e) == pytest.approx(total / e.sum(), rel=1e-9)  # shift-invariant


def test_early_stopping_stops_early_on_noise_and_late_on_signal() -> None:
    kw = {"n_estimators": 400, "learning_rate": 0.1, "validation_fraction": 0.25, "early_stopping_rounds": 20}
    X, noise = cohort(1500, signal=0.0)
    _, strong = cohort(1500, signal=1.0)
    on_noise = GradientBoostedSurvivalModel(**kw).fit(X, noise)
    on_signal = GradientBoostedSurvivalModel(**kw).fit(X, strong)
    assert on_noise.n_rounds_ < 60
    assert on_signal.n_rounds_ > 2 * on_noise.n_rounds_
    assert on_signal.booster_.current_iteration() == on_signal.n_rounds_
    assert GradientBoostedSurvivalModel(n_estimators=30).fit(X, strong).n_rounds_ == 30  # off by default


def test_defaults_follow_the_number_of_events_and_explicit_values_win() -> None:
    X, y = cohort(600, signal=1.0)
    assert y.event.sum() < SMALL_EVENTS
    small = GradientBoostedSurvivalModel(n_estimators=20).fit(X, y)
    assert (small.num_leaves_, small.learning_rate_, small.min_child_samples_) == (4, 0.02, 20)
    Xl, yl = cohort(3000, signal=1.0, seed=2)
    big_events = np.asarray(yl.event).copy()
    big_events[:] = True  # every patient dies: 3,000 events
    large = GradientBoostedSurvivalModel(n_estimators=20).fit(Xl, SurvivalTarget(yl.time, big_events, "death"))
    assert (large.num_leaves_, large.learning_rate_, large.min_child_samples_) == (8, 0.03, 40)
    mine = GradientBoostedSurvivalModel(n_estimators=20, num_leaves=6).fit(X, y)
    assert mine.num_leaves_ == 6
    assert GradientBoostedSurvivalModel().get_params()["num_leaves"] is None  # clone keeps "from the data"
