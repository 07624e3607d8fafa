"""Realised performance by subgroup and the estimated-performance alarm of `medml monitor check`, on SUPPORT2.

A logistic model of in-hospital death is fitted on 60% of SUPPORT2's patients; its development report (with the
subgroup audit by sex, age band and race) and reference profile come from another 20%; the last 20% (1,821
patients, in random order: the file's own order drifts) is the stream, with outcomes loaded three ways:

- as they were (a null stream: a random split of the development population, which must not alarm);
- with the women's outcomes shuffled among the women (the model no longer ranks them), which must alarm naming
  sex Female and not Male;
- with the men's outcomes reversed, which must alarm naming sex Male.

A second stream of the same patients is scored after the APS and coma score feeds stop (both missing from row
600 on, no outcomes loaded): the estimated AUROC must alarm from that window on, and not before. The reference
numbers are scikit-learn's (AUROC, unpenalised logistic recalibration) and closed forms.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from medml.config import Settings, get_settings
from medml.data.splits import patient_split
from medml.evaluate import Estimate, Headline
from medml.models import make_model
from medml.monitor.check import CheckResult, check_models
from medml.monitor.estimate import cbpe_auroc
from medml.monitor.performance import (
    SUBGROUP_MARGIN,
    delong_se,
    estimated_floor,
    standard_error,
    subgroup_tests,
)
from medml.monitor.profile import PROFILE_KEY
from medml.monitor.store import MonitorStore, OutcomeRow, PredictionRow
from medml.monitor.subgroups import Reference, attributes_of, subgroup_labels
from medml.pipelines.catalogue import load_dataset
from medml.pipelines.tabular import data_hash, development_profile, evaluate_split
from medml.registry import BundleMetadata, ModelBundle, register

MODEL, FAULT = "support2", "support2-feed-stops"
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
FAULT_FROM = 600
STOPPED = ("aps", "scoma")
PERFORMANCE_KINDS = {"performance", "estimated performance", "subgroup performance"}


@dataclass
class Run:
    code: int
    out: str
    err: str


def _features(row: pd.Series) -> dict[str, Any]:
    return {k: (None if pd.isna(v) else (v if isinstance(v, str) else float(v))) for k, v in row.items()}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("monitor-subgroups")
    settings = Settings(home=root / "home", data_root=get_settings().data_root)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.chdir(root)
        ds = load_dataset("support2")
        split = patient_split(ds.groups, ds.binary_target.values, fractions=(0.6, 0.2, 0.2), seed=0)
        train, dev, test = ds.subset(split.train), ds.subset(split.calibration), ds.subset(split.test)
        model = make_model("logistic", ds.features, {}, seed=0).fit(train.X, train.binary_target.values)
        report = evaluate_split(model, dev, name=MODEL, split="calibration", n_boot=200, seed=0)
        for name in (MODEL, FAULT):
            md = BundleMetadata(
                name=name,
                model_kind="logistic",
                dataset=ds.name,
                task=ds.task,
                target=ds.binary_target.name,
                intended_use="Tests only: not for clinical use.",
                population=ds.population,
                data_hash=data_hash(ds),
                seed=0,
                split_sizes=split.sizes(),
                evaluation=report.to_dict(),
                headline=Headline.of(report),
                extra={PROFILE_KEY: development_profile(model, (dev,), seed=0).to_dict()},
            )
            register(ModelBundle(model, list(ds.features), md), settings)
        order = np.random.default_rng(0).permutation(len(test.X))
        X = test.X.iloc[order].reset_index(drop=True)
        y = test.binary_target.values[order].astype(float)
        ids = np.asarray(test.ids).astype(str)[order]
        scores = model.predict_proba(X)[:, 1]
        broken = X.copy()
        broken.loc[FAULT_FROM:, list(STOPPED)] = np.nan
        fault_scores = model.predict_proba(broken)[:, 1]
        rows = []
        for k in range(len(X)):
            when = START + timedelta(minutes=k)
            rows.append(PredictionRow(MODEL, 1, "death", ids[k], when, float(scores[k]), _features(X.iloc[k])))
            rows.append(
                PredictionRow(FAULT, 1, "death", f"f-{ids[k]}", when, float(fault_scores[k]), _features(broken.iloc[k]))
            )
        store = MonitorStore(settings.monitor_store)
        store.record(rows)
        sex = X["sex"].astype(str).to_numpy()
        shuffled = y.copy()
        women = np.flatnonzero(sex == "Female")
        shuffled[women] = np.random.default_rng(1).permutation(y[women])
        reversed_men = np.where(sex == "Male", 1.0 - y, y)
        outcomes = {"died": y, "died, women shuffled": shuffled, "died, men reversed": reversed_men}
        store.load_outcomes(
            OutcomeRow(ids[k], name, float(v[k])) for name, v in outcomes.items() for k in range(len(ids))
        )
        yield {
            "settings": settings,
            "store": store,
            "X": X,
            "y": y,
            "scores": scores,
            "fault_scores": fault_scores,
            "sex": sex,
            "outcomes": outcomes,
            "report": report,
        }


def _check(world: dict[str, Any], model: str, outcome: str | None, window: int) -> CheckResult:
    [result] = check_models(world["store"], world["settings"], model, 1, window=window, outcome=outcome)
    return result


def medml(args: list[str], home: Path, capsys: pytest.CaptureFixture[str]) -> Run:
    from medml.cli.main import main

    capsys.readouterr()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDML_HOME", str(home))
        mp.setenv("COLUMNS", "250")
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.setattr(sys, "argv", ["medml", *args])
        try:
            main()
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


# --- real streams -------------------------------------------------------------------------------------------------


def test_a_null_stream_raises_no_performance_alarm_and_reports_each_subgroup(world: dict[str, Any]) -> None:
    r = _check(world, MODEL, "died", 300)
    assert not [f for f in r.findings if f.kind in PERFORMANCE_KINDS], [f.message for f in r.findings]
    assert set(r.subgroups["attribute"]) == {"sex", "age_band"}
    assert "race" in r.unwatched and "not among the features" in r.unwatched["race"]
    y, s, sex = world["y"], world["scores"], world["sex"]
    women = r.subgroups.set_index(["attribute", "group"]).loc[("sex", "Female")]
    assert women["n"] == (sex == "Female").sum()
    assert women["auroc"] == pytest.approx(roc_auc_score(y[sex == "Female"], s[sex == "Female"]), abs=1e-12)
    assert women["auroc_low"] < women["auroc"] < women["auroc_high"]
    # calibration slope and intercept of the women: scikit-learn's unpenalised logistic recalibration
    logit = np.log(s / (1 - s))[sex == "Female"]
    slope = LogisticRegression(C=math.inf, tol=1e-10, max_iter=1000).fit(logit[:, None], y[sex == "Female"])
    assert women["calibration_slope"] == pytest.approx(slope.coef_[0, 0], abs=1e-4)
    assert women["calibration_slope_low"] < women["calibration_slope"] < women["calibration_slope_high"]
    assert women["expected"] == pytest.approx(s[sex == "Female"].mean())
    assert women["prevalence"] == pytest.approx(y[sex == "Female"].mean())
    # per window and subgroup: the window's own patients of that group
    cells = r.subgroup_windows.set_index(["window", "attribute", "group"])
    men_1 = cells.loc[(1, "sex", "Male")]
    rows_1 = (np.arange(len(y)) // 300 == 1) & (sex == "Male")
    assert men_1["n_outcomes"] == rows_1.sum()
    assert men_1["auroc"] == pytest.approx(roc_auc_score(y[rows_1], s[rows_1]), abs=1e-12)
    # the windows' realised calibration beside the estimate, and the floor of the estimate
    w0 = r.windows.iloc[0]
    assert w0["expected"] == pytest.approx(s[:300].mean()) and w0["observed"] == pytest.approx(y[:300].mean())
    assert np.isfinite(r.windows["estimated_floor"].iloc[:-1]).all()
    assert (r.windows["estimated_auroc"].iloc[:-1] > r.windows["estimated_floor"].iloc[:-1]).all()


@pytest.mark.parametrize(
    ("outcome", "hit", "spared"),
    [("died, women shuffled", "Female", "Male"), ("died, men reversed", "Male", "Female")],
    ids=["women shuffled", "men reversed"],
)
def test_a_subgroup_whose_outcomes_no_longer_follow_the_scores_alarms_by_name(
    world: dict[str, Any], outcome: str, hit: str, spared: str
) -> None:
    r = _check(world, MODEL, outcome, 600)
    found = [f for f in r.findings if f.kind == "subgroup performance"]
    named = {(f.window, f.features) for f in found}
    full_windows = range(len(world["y"]) // 600)
    assert all((w, ("sex",)) in named for w in full_windows), [f.message for f in found]
    assert all(f"sex {hit} " in f.message for f in found if f.features == ("sex",))
    assert not any(f"sex {spared} " in f.message for f in found)
    # the premise, by scikit-learn: the group's outcomes no longer follow the model's ranking
    y, s, sex = world["outcomes"][outcome], world["scores"], world["sex"]
    assert roc_auc_score(y[sex == hit], s[sex == hit]) < 0.6
    assert r.windows["alarm"].iloc[: len(full_windows)].all()


def test_a_feed_that_stops_alarms_on_the_estimated_auroc_before_any_outcome(world: dict[str, Any]) -> None:
    r = _check(world, FAULT, None, 300)
    assert r.outcomes == 0
    estimated = {f.window for f in r.findings if f.kind == "estimated performance"}
    full = len(world["y"]) // 300
    assert estimated == set(range(FAULT_FROM // 300, full)), [f.message for f in r.findings]
    # the estimate of each window is CBPE's on its scores, the floor the stated rule's
    s = world["fault_scores"]
    h = world["report"]
    dev = Headline.of(h).auroc
    for w in (0, FAULT_FROM // 300):
        row = r.windows.iloc[w]
        assert row["estimated_auroc"] == pytest.approx(cbpe_auroc(s[w * 300 : (w + 1) * 300]), abs=1e-9)
        assert row["estimated_floor"] == pytest.approx(estimated_floor(dev, Headline.of(h).n, [300])[0])


def test_check_cli_names_the_subgroup_and_exits_1_and_a_null_stream_exits_0(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    home = world["settings"].home
    bad = medml(["monitor", "check", MODEL, "--window", "600", "--outcome", "died, women shuffled"], home, capsys)
    assert bad.code == 1, bad.out + bad.err
    alarms = [" ".join(line.split()) for line in bad.out.splitlines() if line.startswith("alarm ")]
    assert any("sex Female" in a and "realised AUROC" in a for a in alarms), bad.out
    assert "by subgroup, all windows" in bad.out and "subgroup race not watched" in bad.out
    assert "Bonferroni over the m groups tested in the window" in " ".join(bad.out.split())
    good = medml(["monitor", "check", MODEL, "--window", "600", "--outcome", "died"], home, capsys)
    assert good.code == 0, good.out + good.err
    assert "no alarm" in good.out and "estimated AUROC (CBPE) alarms when under" in " ".join(good.out.split())
    fault = medml(["monitor", "check", FAULT, "--window", "300"], home, capsys)
    assert fault.code == 1, fault.out + fault.err
    assert any(
        line.startswith("alarm ") and "estimated AUROC" in line and "development AUROC" in line
        for line in fault.out.splitlines()
    ), fault.out


def test_the_report_shows_subgroups_and_marks_the_alarmed_one(
    world: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "support2.html"
    run = medml(
        ["monitor", "report", f"{MODEL}@1", "--window", "600", "--outcome", "died, women shuffled", "--out", str(out)],
        world["settings"].home,
        capsys,
    )
    assert run.code == 0, run.out + run.err
    page = out.read_text()
    by_window = page.split('class="monitor-subgroup-windows"')[1].split("</table>")[0]
    rows = by_window.split("<tr")[2:]  # after the header row
    by_sex = [r for r in rows if "<td>sex</td>" in r]
    alarmed = [r for r in by_sex if r.startswith(' class="alarm"')]
    assert alarmed and all("<td>Female</td>" in r for r in alarmed)
    assert any("<td>Male</td>" in r for r in by_sex if r not in alarmed)
    assert "race is not watched" in page and "subgroup performance" in page


# --- the rules on closed forms and simulations ----------------------------------------------------------------------


def test_the_estimated_floor_is_the_stated_rule() -> None:
    dev = Estimate(0.80, 0.76, 0.84)
    se_r = 0.08 / (2 * 1.959963984540054)
    assert standard_error(dev) == pytest.approx(se_r)
    expected = 0.80 - 1.6448536269514722 * math.sqrt(se_r**2 + se_r**2 * 1000 / 250)
    got = estimated_floor(dev, 1000, [250, 20], alpha=0.05)
    assert got[0] == pytest.approx(expected, abs=1e-12)
    assert math.isnan(got[1])  # windows under 30 predictions are not tested


def test_the_estimated_alarm_holds_its_error_rate_on_a_calibrated_null_and_sees_squeezed_scores() -> None:
    """Scores of a known population (logit risk normal), outcomes drawn from them: the development AUROC and its
    bootstrap-free standard error from a large sample; windows of 200 from the same population alarm in under 5%,
    windows whose scores are squeezed towards the mean (a model that lost an input) alarm nearly always."""
    rng = np.random.default_rng(11)

    def population(n: int) -> np.ndarray:
        return 1 / (1 + np.exp(-(rng.normal(-1.0, 1.2, n))))

    p_dev = population(4000)
    y_dev = rng.random(4000) < p_dev
    a, se = roc_auc_score(y_dev, p_dev), delong_se(y_dev, p_dev)
    dev = Estimate(a, a - 1.959963984540054 * se, a + 1.959963984540054 * se)
    floor = estimated_floor(dev, 4000, [200])[0]
    null = np.array([cbpe_auroc(population(200)) for _ in range(400)])
    assert (null < floor).mean() <= 0.05
    squeezed = []
    for _ in range(200):
        p = population(200)
        logit = np.log(p / (1 - p))
        squeezed.append(cbpe_auroc(1 / (1 + np.exp(-(0.4 * logit + 0.6 * logit.mean())))))
    assert (np.array(squeezed) < floor).mean() >= 0.95


def test_delong_standard_error_matches_its_definition_and_the_bootstrap() -> None:
    rng = np.random.default_rng(3)
    s = np.round(rng.random(300), 2)  # ties
    y = (rng.random(300) < s).astype(float)
    pos, neg = s[y == 1], s[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    by_definition = math.sqrt(v10.var(ddof=1) / pos.size + v01.var(ddof=1) / neg.size)
    assert delong_se(y, s) == pytest.approx(by_definition, rel=1e-12)
    boot = []
    for _ in range(2000):
        i = rng.integers(0, 300, 300)
        boot.append(roc_auc_score(y[i], s[i]))
    assert delong_se(y, s) == pytest.approx(np.std(boot), rel=0.1)
    assert math.isnan(delong_se([1, 0, 0], [0.9, 0.1, 0.2]))


def test_subgroup_test_is_the_stated_one_sided_z_test_with_bonferroni_and_the_event_minimum() -> None:
    rng = np.random.default_rng(5)
    n = 900
    s = rng.random(n)
    y = (rng.random(n) < s).astype(float)
    group = np.where(np.arange(n) % 3 == 0, "a", np.where(np.arange(n) % 3 == 1, "b", "c"))
    y[group == "b"] = rng.permutation(y[group == "b"])  # group b no longer follows the scores
    few = (group == "c") & (y == 1)
    y[np.flatnonzero(few)[9:]] = 0  # group c: 9 events, under the minimum of 10
    labels = pd.DataFrame({"g": group})
    ref = Estimate(0.83, 0.80, 0.86)
    refs = {("g", "a"): Reference(ref, "development AUROC of g a")}
    overall = Estimate(0.80, 0.78, 0.82)
    t = subgroup_tests(y, s, labels, np.zeros(n, dtype=int), refs, overall, alpha=0.05).set_index("group")
    assert not t.loc["c", "tested"] and not t.loc["c", "alarm"]
    assert t.loc[["a", "b"], "tested"].all() and (t["m"] == 2).all()
    for g, r in (("a", ref), ("b", overall)):  # b is not in the report: the overall development AUROC
        inside = group == g
        a = roc_auc_score(y[inside], s[inside])
        z = (a - (r.value - SUBGROUP_MARGIN)) / math.hypot(delong_se(y[inside], s[inside]), standard_error(r))
        assert t.loc[g, "reference"] == r.value
        assert t.loc[g, "p"] == pytest.approx(stats.norm.cdf(z), rel=1e-9)
        assert t.loc[g, "alarm"] == (stats.norm.cdf(z) < 0.05 / 2)
    assert t.loc["b", "alarm"] and not t.loc["a", "alarm"]


def test_subgroups_are_read_from_the_features_the_model_saw() -> None:
    frame = pd.DataFrame({"sex": ["male", "FEMALE", None, "male"], "age": [35.0, 61.2, 80.0, np.nan]})

    class Metadata:
        evaluation: ClassVar[dict[str, Any]] = {
            "subgroups": [
                {"attribute": "sex", "groups": [{"group": "Female"}, {"group": "Male"}]},
                {"attribute": "age_band", "groups": []},
                {"attribute": "race", "groups": []},
            ]
        }

    assert attributes_of(Metadata()) == ("sex", "age_band", "race")
    assert attributes_of(object()) == ("sex", "age_band")
    got = subgroup_labels(frame, attributes_of(Metadata()), Metadata())
    assert got.labels["sex"].tolist() == ["Male", "Female", "Unknown", "Male"]
    assert got.labels["age_band"].tolist() == ["<40", "60-79", "80+", "Unknown"]
    assert list(got.unavailable) == ["race"]
