"""The survival path end to end (GBSG2 and SUPPORT2 tasks, train, register, report) and the command line with bad
input: one clear line, exit code 2, nothing registered."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medml.config import Settings, get_settings
from medml.data.datasets import support2
from medml.data.targets import BinaryTarget, SurvivalTarget
from medml.errors import DataError
from medml.pipelines.survival import SurvivalConfig, SurvivalResult, load_survival_dataset, train_survival
from medml.registry import ModelBundle, load_bundle

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
needs_data = pytest.mark.skipif(not (DATA / "tabular/support2").is_dir(), reason="../shared/data is absent")


def _train_gbsg2(settings: Settings) -> SurvivalResult:
    ds = load_survival_dataset("gbsg2")
    return train_survival(ds, SurvivalConfig(model="cox", horizons=(365.0, 730.0, 1095.0), n_boot=50), settings)


def _check_result(result: SurvivalResult, bundle: ModelBundle) -> None:
    ds = load_survival_dataset("gbsg2")
    md = bundle.metadata
    assert md.model_kind == "cox" and md.version == 1
    assert md.headline is not None
    assert md.headline.auroc.value == pytest.approx(result.evaluation.discrimination["td_auc"][0]["auc"].value)
    assert 0.6 < md.metrics["harrell_c"]["value"] < 0.8
    risk = bundle.predict_proba(ds.X.iloc[:5])[:, 1]
    np.testing.assert_allclose(risk, bundle.model.predict_risk(ds.X.iloc[:5])[:, 0])
    assert md.extra["examples"][0]["factors"][0]["text"].endswith("log hazard ratio)")
    html = result.report_path.read_text(encoding="utf-8")
    assert result.evaluation.subgroups[0]["attribute"] == "age_band"
    sections = ("Calibration at each horizon", "Survival by predicted risk group", "D-calibration", "by subgroup")
    for part in (*sections, "Uno", "12e"):
        assert part in html
    assert "AUROC, AUPRC" not in html  # the model card speaks of survival measures, not binary ones
    assert "<script" not in html


def test_gbsg2_trains_explains_and_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything but MLflow: registration is replaced by assigning version 1."""
    from medml.pipelines import survival as pipeline

    monkeypatch.setenv("MEDML_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(
        pipeline, "register", lambda bundle, _settings: bundle.with_metadata(bundle.metadata.with_version(1))
    )
    result = _train_gbsg2(get_settings())
    _check_result(result, result.bundle)


@pytest.mark.slow
def test_gbsg2_registers_a_bundle_that_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDML_HOME", str(tmp_path / "home"))
    settings = get_settings()
    result = _train_gbsg2(settings)
    _check_result(result, load_bundle(result.bundle.ref, settings))


@needs_data
def test_support2_survival_tasks_keep_the_binary_task_as_it_was() -> None:
    cohort = support2.load_cohort(DATA)
    binary = support2.in_hospital_death(cohort)
    full = support2.death_after_entry(cohort)
    deepsurv = support2.death_after_entry(cohort, "deepsurv")
    assert isinstance(binary.y, BinaryTarget) and "race" not in binary.X.columns
    assert list(full.X.columns) == list(binary.X.columns)
    assert list(deepsurv.X.columns) == list(support2.DEEPSURV_FEATURES)
    assert isinstance(full.y, SurvivalTarget)
    table = cohort.table
    np.testing.assert_array_equal(full.y.time, table["d.time"].to_numpy(dtype=float))
    np.testing.assert_array_equal(full.y.event, table["death"].to_numpy() == 1)
    for leak in ("death", "d.time", "hospdead", "slos", "sfdm2", "surv6m", "prg6m", "dnrday"):
        assert leak not in deepsurv.X.columns and leak not in full.X.columns
        assert leak in full.excluded


def write(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path


def _table(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {"age": rng.normal(60, 10, n).round(1), "days": rng.integers(5, 900, n), "died": rng.integers(0, 2, n)}
    )


BAD_TABLES = {
    "negative time": (lambda t: t.assign(days=t["days"].where(t.index != 3, -5)), ["zero or negative"]),
    "zero time": (lambda t: t.assign(days=t["days"].where(t.index != 3, 0)), ["zero or negative"]),
    "event not 0/1": (lambda t: t.assign(died=t["died"].where(t.index != 4, 2)), ["0 (censored) or 1", "2"]),
    "every patient censored": (lambda t: t.assign(died=0), ["censored", "no event"]),
    "text in the time column": (
        lambda t: t.assign(days=t["days"].astype(object).where(t.index != 7, "soon")),
        ["numbers", "soon"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_TABLES))
def test_bad_survival_input_is_one_line_exit_2_and_nothing_registered(tmp_path: Path, case: str, run: Runner) -> None:
    change, fragments = BAD_TABLES[case]
    path = write(tmp_path / "cohort.csv", change(_table()))
    proc = run(["survival", "train", str(path), "--time", "days", "--event", "died"], tmp_path / "home")
    assert_clear_error(proc, *fragments)
    assert nothing_registered(tmp_path / "home")


def test_a_horizon_past_the_last_follow_up_is_refused(tmp_path: Path, run: Runner) -> None:
    path = write(tmp_path / "cohort.csv", _table())
    args = ["survival", "train", str(path), "--time", "days", "--event", "died", "--horizons", "180,2000"]
    assert_clear_error(run(args, tmp_path / "home"), "horizon 2000", "past the last follow-up")
    assert nothing_registered(tmp_path / "home")


def test_unknown_model_and_dataset_are_refused(tmp_path: Path, run: Runner) -> None:
    assert_clear_error(run(["survival", "train", "gbsg2", "--model", "deepsurv"], tmp_path / "home"), "cox, gbs, rsf")
    assert_clear_error(run(["survival", "train", "nowhere"], tmp_path / "home"), "unknown survival dataset")


def test_load_survival_table_reads_times_events_and_predictors(tmp_path: Path) -> None:
    from medml.pipelines.survival import load_survival_table

    ds = load_survival_table(write(tmp_path / "c.csv", _table()), time="days", event="died")
    assert [f.name for f in ds.features] == ["age"]
    assert isinstance(ds.y, SurvivalTarget) and ds.y.event.dtype == bool
    with pytest.raises(DataError, match="no column for time 'when'"):
        load_survival_table(tmp_path / "c.csv", time="when", event="died")


Runner = Callable[[list[str], Path], "Ran"]


def nothing_registered(home: Path) -> bool:
    return not (home / "models").exists() or not any((home / "models").rglob("*.joblib"))


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture()
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[[list[str], Path], Ran]:
    """``medml ARGS`` in this process (the checks fail before anything slow is imported): exit code and output."""
    from medml.cli.main import main

    def invoke(args: list[str], home: Path) -> Ran:
        monkeypatch.setenv("MEDML_HOME", str(home))
        monkeypatch.setenv("COLUMNS", "200")
        monkeypatch.setattr(sys, "argv", ["medml", *args])
        with pytest.raises(SystemExit) as info:
            main()
        out = capsys.readouterr()
        return Ran(int(info.value.code or 0), out.out, out.err)

    return invoke


def assert_clear_error(proc: Ran, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    msg = " ".join(proc.stderr.split())
    assert msg.startswith("error:"), proc.stderr
    assert "\n" not in proc.stderr.strip(), proc.stderr  # one line
    for f in fragments:
        assert f.lower() in msg.lower(), (f, msg)


def test_medml_train_dataset_survival_is_the_survival_command_with_the_issues_kind_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`medml train veterans-survival --model coxph` (the issue's spelling) registers the model `medml survival train
    veterans --model cox` registers: same kind, same horizons, the same risks for every patient."""
    from medml.cli.main import main

    common = ["--horizons", "30,90", "--budget-seconds", "0", "--n-boot", "20"]
    for home, args in (
        ("a", ["train", "veterans-survival", "--model", "coxph", *common]),
        ("b", ["survival", "train", "veterans", "--model", "cox", *common]),
    ):
        monkeypatch.setenv("MEDML_HOME", str(tmp_path / home))
        monkeypatch.setattr(sys, "argv", ["medml", *args])
        try:
            main()
        except SystemExit as e:
            assert not e.code, capsys.readouterr()
        assert "veterans-cox@1" in capsys.readouterr().out
    a = load_bundle("veterans-cox", Settings(home=tmp_path / "a", data_root=get_settings().data_root))
    b = load_bundle("veterans-cox", Settings(home=tmp_path / "b", data_root=get_settings().data_root))
    assert a.metadata.model_kind == b.metadata.model_kind == "cox"
    X = load_survival_dataset("veterans").X[a.feature_names]
    np.testing.assert_array_equal(a.model.predict_risk(X), b.model.predict_risk(X))
    assert a.model.predict_risk(X).shape == (len(X), 2)  # one column per horizon


def test_binary_only_options_and_horizons_on_a_binary_task_are_refused(tmp_path: Path, run: Runner) -> None:
    assert_clear_error(run(["train", "veterans-survival", "--cv", "5"], tmp_path / "home"), "--cv", "survival")
    assert_clear_error(run(["train", "pima", "--horizons", "30"], tmp_path / "home"), "--horizons", "survival")
    assert not (tmp_path / "home" / "models").exists()
