"""A registration stopped half-way (issue 13, item 5): killed (SIGKILL) it leaves MLflow ahead of the bundle
store, which `medml models list` reports and `medml models repair` (or the next registration) repairs;
interrupted (Ctrl-C) it takes itself back and says so in one line.

The real `medml train` runs in a child process that pauses at the chosen step (MLflow has numbered the version;
the bundle is about to be moved into place) and is then sent a real signal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from medml.config import Settings, get_settings
from medml.registry import ModelBundle, register
from medml.registry.repair import check, repair
from medml.registry.store import StoreBusy, store_lock
from medml.registry.tracking import HOST_TAG, STORE_TAG

MEDML = [sys.executable, "-m", "medml.cli"]
TRAIN = ["train", "pima", "--model", "logistic", "--budget-seconds", "2", "--n-boot", "20"]
NAME = "pima-logistic"

#: `medml train` that stops at one step, writes the marker file and waits for a signal there
PAUSED_CHILD = """
import os, signal, sys, time
from pathlib import Path

# Ctrl-C as a terminal delivers it, whatever the test process passed down: a library in the pytest process (which
# one, in a full run, is not known) left SIGINT blocked or ignored, and a child inherits both
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
signal.signal(signal.SIGINT, signal.default_int_handler)

marker, step = Path(os.environ["PAUSE_MARKER"]), os.environ["PAUSE_AT"]

def pause(note):
    marker.write_text(note)
    while True:
        time.sleep(0.05)

if step == "version":  # MLflow has created the model version row; log_model has not returned it yet
    import mlflow.sklearn

    real_log_model = mlflow.sklearn.log_model

    def log_model(*args, **kwargs):
        info = real_log_model(*args, **kwargs)
        pause(str(info.registered_model_version))

    mlflow.sklearn.log_model = log_model
elif step == "commit":  # the MLflow run has ended well; the bundle is not in the store yet
    import medml.registry.tracking

    medml.registry.tracking.commit = lambda *args, **kwargs: pause("commit")
elif step == "search":  # inside an optuna trial of the hyperparameter search
    import medml.models.factory

    medml.models.factory.make_model = lambda *args, **kwargs: pause("search")

sys.argv = ["medml", *sys.argv[1:]]
from medml.cli.main import main

main()
"""


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "MEDML_HOME": str(home), "COLUMNS": "200", **extra}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MLFLOW_REGISTRY_URI", None)
    return env


def medml(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MEDML, *args], capture_output=True, text=True, env=env_for(home), timeout=600)


def stopped_at(step: str, sig: signal.Signals, home: Path) -> tuple[str, subprocess.CompletedProcess[str]]:
    """Run `medml train` until it pauses at ``step``, send it ``sig``; (what the pause noted, the process)."""
    marker = home.parent / f"paused-at-{step}"
    env = env_for(home, PAUSE_MARKER=str(marker), PAUSE_AT=step)
    child = subprocess.Popen(
        [sys.executable, "-c", PAUSED_CHILD, *TRAIN], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the training never reached the pause"
            time.sleep(0.1)
        child.send_signal(sig)
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()  # reaps it and closes its pipes (an open pipe fails a later test as a ResourceWarning)
    return marker.read_text(), subprocess.CompletedProcess(child.args, child.returncode, out, err)


def client_of(home: Path) -> MlflowClient:
    uri = f"sqlite:///{(home / 'mlflow.db').resolve()}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def mlflow_versions(home: Path, name: str = NAME) -> list[int]:
    return sorted(int(v.version) for v in client_of(home).search_model_versions(f"name = '{name}'"))


def store_versions(home: Path, name: str = NAME) -> list[int]:
    folder = home / "models" / name
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


def runs(home: Path) -> dict[str, str]:
    """run id -> status of every run of experiment medml that is not deleted."""
    client = client_of(home)
    exp = client.get_experiment_by_name("medml")
    return {r.info.run_id: r.info.status for r in client.search_runs([exp.experiment_id])} if exp else {}


@pytest.fixture()
def home(tmp_path: Path) -> Iterator[Path]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield tmp_path / "home"


# ---- killed outright: reported, then repaired ----------------------------------------------------------------


def test_sigkill_after_mlflow_numbered_the_version_is_reported_and_the_next_training_repairs_it(
    home: Path, make_bundle: Callable[..., ModelBundle]
) -> None:
    settings = Settings(home=home, data_root=get_settings().data_root)
    register(make_bundle(NAME), settings)  # version 1, complete
    version, killed = stopped_at("version", signal.SIGKILL, home)
    assert version == "2" and killed.returncode == -signal.SIGKILL
    assert mlflow_versions(home) == [1, 2] and store_versions(home) == [1]  # what the kill leaves
    assert sorted(runs(home).values()) == ["FINISHED", "RUNNING"]

    listing = medml(["models", "list"], home)
    assert listing.returncode == 0, listing.stderr
    text = " ".join(listing.stdout.split())
    assert "the bundle store and MLflow disagree (2)" in text, text
    assert "has been RUNNING since" in text and "ends it as KILLED" in text
    assert f"MLflow holds version 2 of {NAME}, but the bundle store has no {NAME}@2" in text
    assert "`medml models repair` deletes that MLflow version" in text

    again = medml(TRAIN, home)
    assert again.returncode == 0, again.stderr
    assert f"{NAME}@3" in again.stdout
    assert "repaired the registry before registering" in again.stderr
    assert "deleted MLflow version 2" in again.stderr and "as KILLED" in again.stderr
    # MLflow does not reuse number 2: both stores hold 1 and 3, and nothing is left running
    assert mlflow_versions(home) == store_versions(home) == [1, 3]
    assert sorted(runs(home).values()) == ["FINISHED", "FINISHED", "KILLED"]
    assert "disagree" not in medml(["models", "list"], home).stdout


def test_sigkill_just_before_the_bundle_is_moved_into_place_is_restored_from_mlflow(home: Path) -> None:
    note, killed = stopped_at("commit", signal.SIGKILL, home)
    assert note == "commit" and killed.returncode == -signal.SIGKILL
    assert mlflow_versions(home) == [1] and store_versions(home) == []

    listing = " ".join(medml(["models", "list"], home).stdout.split())
    assert f"MLflow holds version 1 of {NAME}, but the bundle store has no {NAME}@1" in listing, listing
    assert "`medml models repair` restores the bundle from its MLflow run" in listing

    repaired = medml(["models", "repair"], home)
    assert repaired.returncode == 0, repaired.stderr
    assert f"repaired: restored the bundle {NAME}@1 from its MLflow run" in " ".join(repaired.stdout.split())
    assert store_versions(home) == mlflow_versions(home) == [1]
    shown = medml(["models", "show", f"{NAME}@1"], home)
    assert shown.returncode == 0 and '"verified": true' in shown.stdout, shown.stderr
    assert "disagree" not in medml(["models", "list"], home).stdout
    nothing = medml(["models", "repair"], home)
    assert "nothing to repair: the bundle store and MLflow agree" in nothing.stdout


# ---- Ctrl-C: taken back, and said in one line -----------------------------------------------------------------


def test_ctrl_c_after_mlflow_numbered_the_version_takes_it_back_and_says_so(home: Path) -> None:
    version, stopped = stopped_at("version", signal.SIGINT, home)
    assert version == "1"
    assert stopped.returncode == 130, stopped.stderr
    assert "Traceback" not in stopped.stderr and stopped.stdout == ""
    (line,) = [x for x in stopped.stderr.splitlines() if x.strip()]
    assert line.startswith("interrupted after ") and line.endswith("nothing was registered"), line
    assert f"the registration under way was taken back (version 1, registered model, logged model, run of {NAME}" in (
        line
    )
    assert mlflow_versions(home) == store_versions(home) == [] and "RUNNING" not in runs(home).values()
    assert client_of(home).search_registered_models(f"name = '{NAME}'") == []
    listing = medml(["models", "list"], home)
    assert "no models registered yet" in listing.stdout and "disagree" not in listing.stdout


def test_ctrl_c_during_the_search_is_one_line_without_optunas_traceback(home: Path) -> None:
    _, stopped = stopped_at("search", signal.SIGINT, home)
    assert stopped.returncode == 130
    assert [x for x in stopped.stderr.splitlines() if x.strip()] == [
        stopped.stderr.strip()
    ] and stopped.stderr.startswith("interrupted after "), stopped.stderr
    assert stopped.stderr.strip().endswith(": nothing was registered"), stopped.stderr


# ---- in-process: what check() judges --------------------------------------------------------------------------


@pytest.fixture()
def registered(home: Path, make_bundle: Callable[..., ModelBundle]) -> Settings:
    settings = Settings(home=home, data_root=home.parent / "data")
    register(make_bundle("sepsis"), settings)
    return settings


def test_a_bundle_whose_mlflow_version_was_deleted_is_reported_and_kept(registered: Settings) -> None:
    client_of(registered.home).delete_model_version("sepsis", "1")
    (problem,) = check(registered)
    assert "the bundle store holds sepsis@1, registered in MLflow, but MLflow has no version 1" in str(problem)
    assert "restore mlflow.db from a backup" in str(problem)
    result = repair(registered)
    assert result.done == [] and [p.what for p in result.left] == [problem.what]
    assert store_versions(registered.home, "sepsis") == [1]  # a complete bundle is never deleted


def test_a_running_run_of_another_store_is_not_judged(registered: Settings) -> None:
    client = client_of(registered.home)
    exp = client.get_experiment_by_name("medml")
    assert exp is not None
    other = {HOST_TAG: "another-host", STORE_TAG: "/elsewhere/models"}
    run = client.create_run(exp.experiment_id, run_name="sepsis", tags=other)
    assert check(registered) == []
    ours = client.create_run(exp.experiment_id, run_name="sepsis")  # no origin tags: taken as this store's
    (problem,) = check(registered)
    assert ours.info.run_id in problem.what and run.info.run_id not in problem.what
    assert repair(registered).done == [
        f"ended MLflow run {ours.info.run_id} (sepsis) as KILLED: it was RUNNING with no process left to run it"
    ]
    assert client.get_run(run.info.run_id).info.status == "RUNNING"


def test_check_does_not_judge_while_a_registration_holds_the_lock(registered: Settings) -> None:
    with store_lock(registered), pytest.raises(StoreBusy, match="another process"):
        check(registered)


def test_an_interrupt_inside_log_model_takes_back_what_mlflow_made(
    registered: Settings, make_bundle: Callable[..., ModelBundle], monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow.sklearn

    from medml.registry import tracking

    real = mlflow.sklearn.log_model

    def interrupted(*args: Any, **kwargs: Any) -> None:
        real(*args, **kwargs)  # MLflow has numbered version 2; the caller never learns it
        raise KeyboardInterrupt

    monkeypatch.setattr(mlflow.sklearn, "log_model", interrupted)
    monkeypatch.setattr(tracking, "_OUTCOMES", tracking._Outcomes(registered=["sepsis@1"]))
    with pytest.raises(KeyboardInterrupt):
        register(make_bundle("sepsis"), registered)
    assert mlflow_versions(registered.home, "sepsis") == store_versions(registered.home, "sepsis") == [1]
    assert check(registered) == []
    assert tracking.registry_state() == (
        "sepsis@1 was registered in full (bundle store and MLflow); the registration under way was taken back "
        "(version 2, logged model, run of sepsis deleted from MLflow)"
    )


def test_an_mlflow_server_that_cannot_be_asked_is_one_line_and_the_bundles_are_still_listed(
    registered: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medml.registry.repair import MlflowUnavailable

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens on the discard port
    started = time.monotonic()
    with pytest.raises(MlflowUnavailable, match=r"MLflow at http://127.0.0.1:9 cannot be asked"):
        check(registered)
    assert time.monotonic() - started < 30  # asked once, not retried for minutes
    env = {**env_for(registered.home), "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    listing = subprocess.run([*MEDML, "models", "list"], capture_output=True, text=True, env=env, timeout=120)
    assert listing.returncode == 0, listing.stderr
    assert "sepsis" in listing.stdout and "not compared with MLflow: MLflow at http://127.0.0.1:9" in listing.stdout
