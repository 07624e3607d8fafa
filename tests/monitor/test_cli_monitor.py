"""`medml predict` recording, `medml monitor outcomes` and `medml monitor check` on real data: a Cleveland heart
disease model scoring held-out Cleveland patients (no alarm) and then the VA site (an alarm naming the features);
bad input is one `error:` line, exit 2, with the store unchanged.

The model is a logistic regression fitted on part of Cleveland, its reference profile built (by monitor.profile)
from other Cleveland patients; the outcomes are the datasets' own labels.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medml.config import Settings, get_settings
from medml.data.splits import patient_split
from medml.data.task import TaskDataset
from medml.evaluate import Headline
from medml.models import make_model
from medml.monitor.profile import PROFILE_KEY
from medml.monitor.store import MonitorStore
from medml.pipelines.catalogue import load_dataset
from medml.pipelines.tabular import data_hash, development_profile, evaluate_split
from medml.registry import BundleMetadata, ModelBundle, register

MODEL = "heart"


@dataclass
class Run:
    code: int
    out: str
    err: str


def medml(args: list[str], home: Path, capsys: pytest.CaptureFixture[str]) -> Run:
    """The `medml` command in this process (as its entry point runs it): exit code, stdout, stderr."""
    from medml.cli.main import main

    capsys.readouterr()
    umask = os.umask(0o022)
    os.umask(umask)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDML_HOME", str(home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.setattr(sys, "argv", ["medml", *args])
        try:
            main()
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
        finally:
            os.umask(umask)
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


def one_line_error(run: Run, *fragments: str) -> None:
    assert run.code == 2, (run.code, run.out[-2000:], run.err[-2000:])
    assert "Traceback" not in run.out + run.err
    lines = [line for line in run.err.splitlines() if line.strip()]
    assert lines and lines[0].startswith("error:"), run.err
    text = " ".join(" ".join(lines).split())
    for f in fragments:
        assert f in text, (f, text)


def bundle(ds: TaskDataset, name: str, *, profile: bool) -> tuple[ModelBundle, TaskDataset]:
    """Fitted on 60% of Cleveland's patients, profiled (when asked) on 20%; returns the other 20% unseen."""
    y = ds.binary_target.values
    split = patient_split(ds.groups, y, fractions=(0.6, 0.2, 0.2), seed=0)
    train = ds.subset(split.train)
    model = make_model("logistic", ds.features, {}, seed=0).fit(train.X, train.binary_target.values)
    calibration = ds.subset(split.calibration)
    extra = {PROFILE_KEY: development_profile(model, (calibration,), seed=0).to_dict()}
    evaluation = evaluate_split(model, calibration, name=name, split="calibration", n_boot=200, seed=0)
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
        extra=extra if profile else {},
        headline=Headline.of(evaluation) if profile else None,
    )
    return ModelBundle(model, list(ds.features), md), ds.subset(split.test)


def table(ds: TaskDataset, path: Path) -> Path:
    frame = ds.X.copy()
    frame.insert(0, "pid", np.asarray(ds.ids).astype(str))
    frame.to_csv(path, index=False)
    return path


def outcomes_csv(ds: TaskDataset, path: Path, **extra: list[str]) -> Path:
    frame = pd.DataFrame({"patient": np.asarray(ds.ids).astype(str), "value": ds.binary_target.values.astype(int)})
    for k, v in extra.items():
        frame[k] = v
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    root = tmp_path_factory.mktemp("monitor-cli")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.chdir(root)
        yield Settings(home=root / "home", data_root=get_settings().data_root)


@pytest.fixture(scope="module")
def cleveland(home: Settings) -> TaskDataset:
    ds = load_dataset("heart-cleveland")
    fitted, unseen = bundle(ds, MODEL, profile=True)
    register(fitted, home)
    return unseen


def store_state(home: Settings) -> tuple[int, pd.DataFrame]:
    store = MonitorStore(home.monitor_store)
    return len(store.predictions(MODEL, shadow=None)), store.outcomes()


def test_predict_records_what_the_model_saw_and_outcomes_load_once(
    home: Settings, cleveland: TaskDataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scored = medml(["predict", MODEL, str(table(cleveland, tmp_path / "c.csv")), "--id", "pid"], home.home, capsys)
    assert scored.code == 0, scored.err
    assert f"recorded {len(cleveland.X)} score(s)" in scored.out
    got = MonitorStore(home.monitor_store).predictions(MODEL, 1).set_index("patient")
    expected = cleveland.X.set_axis(np.asarray(cleveland.ids).astype(str))
    assert sorted(got.index) == sorted(expected.index)
    for col in cleveland.X.columns:
        if pd.api.types.is_numeric_dtype(expected[col]):
            np.testing.assert_allclose(got.loc[expected.index, col].to_numpy(float), expected[col].to_numpy(float))
        else:
            assert got.loc[expected.index, col].tolist() == expected[col].astype(str).tolist(), col
    assert (got["service"] == "medml predict").all() and got["encounter"].isna().all()
    # the same risks as the model gives on those rows
    from medml.registry import load_bundle

    risks = load_bundle(f"{MODEL}@1", home).predict_proba(cleveland.X)[:, 1]
    np.testing.assert_allclose(got.loc[expected.index, "score"].to_numpy(), risks, rtol=1e-12)

    f = outcomes_csv(cleveland, tmp_path / "outcomes.csv", outcome=["heart disease"] * len(cleveland.X))
    first = medml(["monitor", "outcomes", str(f)], home.home, capsys)
    assert first.code == 0, first.err
    assert f"loaded {len(cleveland.X)} new outcome(s)" in first.out
    before = store_state(home)
    again = medml(["monitor", "outcomes", str(f)], home.home, capsys)
    assert again.code == 0 and "loaded 0 new" in again.out and f"{len(cleveland.X)} were loaded before" in again.out
    pd.testing.assert_frame_equal(store_state(home)[1], before[1])
    joined = MonitorStore(home.monitor_store).joined(MODEL).set_index("patient")
    truth = dict(zip(np.asarray(cleveland.ids).astype(str), cleveland.binary_target.values, strict=True))
    assert all(joined.loc[p, "outcome"] == truth[p] for p in truth)


def test_check_passes_on_held_out_patients_of_the_development_site(
    home: Settings, cleveland: TaskDataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if MonitorStore(home.monitor_store).predictions(MODEL).empty:
        medml(["predict", MODEL, str(table(cleveland, tmp_path / "c.csv")), "--id", "pid"], home.home, capsys)
    run = medml(["monitor", "check", MODEL, "--window", "200"], home.home, capsys)
    assert run.code == 0, run.out + run.err
    assert "no alarm" in run.out and "Bonferroni" in run.out


def test_check_alarms_on_the_va_site_naming_the_features(
    home: Settings, cleveland: TaskDataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    va = load_dataset("heart-va")
    scored = medml(["predict", MODEL, str(table(va, tmp_path / "va.csv")), "--id", "pid"], home.home, capsys)
    assert scored.code == 0, scored.err
    run = medml(["monitor", "check", MODEL, "--since", "2000-01-01"], home.home, capsys)
    assert run.code == 1, run.out + run.err
    alarms = [line for line in run.out.splitlines() if line.startswith("alarm")]
    assert alarms, run.out
    text = " ".join(alarms)
    # VA lacks 'ca' for 99% and 'thal' for 83% of its patients; Cleveland for under 2%
    assert "ca" in text and "thal" in text and "missing" in text


@pytest.mark.parametrize(
    ("rows", "fragments"),
    [
        ("patient,value\nnobody-1,1\nnobody-2,0\n", ("2 patient(s) in the outcomes were never scored", "nobody-1")),
        ("patient,value\ncleveland-1,1\ncleveland-1,1\n", ("duplicate outcomes", "cleveland-1")),
        ("patient,value\ncleveland-1,1\ncleveland-1,0\n", ("contradictory outcomes", "(1 and 0)")),
        (
            "patient,value,time\ncleveland-1,1,2024-01-01T10:00:00Z\ncleveland-2,0,2024-01-01T10:00:00\n",
            ("mixes times with a time zone", "and without one"),
        ),
    ],
    ids=["unknown patients", "duplicate", "contradictory", "time zone mix"],
)
def test_bad_outcomes_files_are_one_line_and_change_nothing(
    home: Settings,
    cleveland: TaskDataset,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    rows: str,
    fragments: tuple[str, ...],
) -> None:
    store = MonitorStore(home.monitor_store)
    if store.predictions(MODEL).empty:
        medml(["predict", MODEL, str(table(cleveland, tmp_path / "c.csv")), "--id", "pid"], home.home, capsys)
    before = store_state(home)
    f = tmp_path / "bad.csv"
    f.write_text(rows)
    one_line_error(medml(["monitor", "outcomes", str(f), "--outcome", "heart disease"], home.home, capsys), *fragments)
    after = store_state(home)
    assert after[0] == before[0]
    pd.testing.assert_frame_equal(after[1], before[1])


def test_an_outcome_that_contradicts_a_loaded_one_is_refused(
    home: Settings, cleveland: TaskDataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = MonitorStore(home.monitor_store)
    if store.predictions(MODEL).empty:
        medml(["predict", MODEL, str(table(cleveland, tmp_path / "c.csv")), "--id", "pid"], home.home, capsys)
    pid = str(np.asarray(cleveland.ids)[0])
    first = tmp_path / "first.csv"
    first.write_text(f"patient,value\n{pid},1\n")
    medml(["monitor", "outcomes", str(first), "--outcome", "chest pain"], home.home, capsys)
    before = store_state(home)
    flipped = tmp_path / "flipped.csv"
    flipped.write_text(f"patient,value\n{pid},0\n")
    one_line_error(
        medml(["monitor", "outcomes", str(flipped), "--outcome", "chest pain"], home.home, capsys),
        "contradict the ones loaded before",
    )
    pd.testing.assert_frame_equal(store_state(home)[1], before[1])


def test_check_of_a_model_without_a_reference_profile_is_one_line(
    home: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ds = load_dataset("heart-cleveland")
    old, unseen = bundle(ds, "heart-old", profile=False)
    register(old, home)
    scored = medml(["predict", "heart-old", str(table(unseen, tmp_path / "o.csv")), "--id", "pid"], home.home, capsys)
    assert scored.code == 0, scored.err
    before = len(MonitorStore(home.monitor_store).predictions("heart-old"))
    one_line_error(medml(["monitor", "check", "heart-old"], home.home, capsys), "heart-old@1 has no reference profile")
    assert len(MonitorStore(home.monitor_store).predictions("heart-old")) == before


def test_check_and_outcomes_without_a_store_or_predictions_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], home: Settings, cleveland: TaskDataset
) -> None:
    empty = tmp_path / "empty-home"
    one_line_error(medml(["monitor", "check"], empty, capsys), "no monitoring store")
    f = tmp_path / "o.csv"
    f.write_text("patient,value\np1,1\n")
    one_line_error(medml(["monitor", "outcomes", str(f), "--outcome", "x"], empty, capsys), "no monitoring store")
    assert not (empty / "monitor.duckdb").exists()
    one_line_error(
        medml(["monitor", "check", "no-such-model"], home.home, capsys), "has no predictions of no-such-model"
    )


def test_status_lists_what_is_recorded_and_purge_keeps_the_retention(
    home: Settings, cleveland: TaskDataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = MonitorStore(home.monitor_store)
    if store.predictions(MODEL).empty:
        medml(["predict", MODEL, str(table(cleveland, tmp_path / "c.csv")), "--id", "pid"], home.home, capsys)
    n = len(store.predictions(MODEL, shadow=None))
    status = medml(["monitor", "status"], home.home, capsys)
    assert status.code == 0 and f"{MODEL}@1" in status.out and f"{n:,}" in status.out
    kept = medml(["monitor", "purge", "--days", "1"], home.home, capsys)  # everything was scored just now
    assert kept.code == 0 and "deleted 0 prediction(s)" in kept.out
    assert len(store.predictions(MODEL, shadow=None)) == n
    one_line_error(medml(["monitor", "purge", "--days", "0"], home.home, capsys), "keep predictions for at least a day")


def test_check_alarms_when_realised_performance_falls_below_development(
    home: Settings, cleveland: TaskDataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """VA's outcomes given reversed (a model that now ranks patients the wrong way round): the realised AUROC's
    interval lies below the development AUROC's, a performance alarm."""
    va = load_dataset("heart-va")
    store = MonitorStore(home.monitor_store)
    ids = np.asarray(va.ids).astype(str)
    if not set(ids) <= set(store.predictions(MODEL)["patient"]):
        medml(["predict", MODEL, str(table(va, tmp_path / "va.csv")), "--id", "pid"], home.home, capsys)
    reversed_ = pd.DataFrame({"patient": ids, "value": 1 - va.binary_target.values.astype(int)})
    reversed_.to_csv(tmp_path / "va-reversed.csv", index=False)
    loaded = medml(
        ["monitor", "outcomes", str(tmp_path / "va-reversed.csv"), "--outcome", "reversed heart disease"],
        home.home,
        capsys,
    )
    assert loaded.code == 0, loaded.err
    run = medml(
        ["monitor", "check", MODEL, "--window", "100", "--outcome", "reversed heart disease"], home.home, capsys
    )
    assert run.code == 1, run.out + run.err
    alarms = [" ".join(line.split()) for line in run.out.splitlines() if line.startswith("alarm")]
    performance = [a for a in alarms if "realised AUROC" in a and "below the development AUROC" in a]
    assert performance, run.out
    from sklearn.metrics import roc_auc_score

    from medml.registry import load_bundle

    # the premise, by scikit-learn: on VA the reversed outcomes are ranked the wrong way round
    scores = load_bundle(f"{MODEL}@1", home).predict_proba(va.X)[:, 1]
    assert roc_auc_score(1 - va.binary_target.values, scores) < 0.5
