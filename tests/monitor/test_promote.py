"""`medml promote` and `medml retrain` against a real MLflow registry: aliases move only when every gate passes,
and bad input (an unknown gates metric, a promotion onto itself) is one line, exit 2, aliases and store unchanged.

The models are real logistic regressions on SUPPORT2 (and Cleveland/VA for retraining), registered through
medml's registry; the aliases are read back with MLflow's own client.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from medml.config import Settings, get_settings
from medml.data.splits import patient_split
from medml.data.task import TaskDataset
from medml.models import make_model
from medml.monitor.gates import SEEN_KEY, check_gates, evaluation_set, parse_gates, unseen
from medml.monitor.promotion import promote
from medml.pipelines.catalogue import load_dataset
from medml.pipelines.tabular import data_hash
from medml.registry import BundleMetadata, ModelBundle, load_bundle, register
from medml.registry.tracking import set_aliases

MEDML = [sys.executable, "-m", "medml.cli"]
FRACTIONS = (0.6, 0.2, 0.2)
#: the shipped gates, with a smaller patient minimum for the 61 Cleveland test patients
SMALL_GATES = (
    "gates:\n  auroc_difference: {margin: 0.02, alpha: 0.05, n_boot: 1000}\n  calibration_slope: {low: 0.5, "
    "high: 2.0}\n  subgroup_auroc_gap: {max_gap: 0.1}\n  evaluation_size: {min_patients: 40, min_events: 10}\n"
)


def _bundle(ds: TaskDataset, name: str, *, seed: int = 0, flip: float = 0.0) -> ModelBundle:
    """A logistic regression fitted on the train part of ``ds``'s patient split (``flip``: that fraction of its
    training labels flipped, a deliberately worse model), with the metadata `medml train` writes."""
    y = ds.binary_target.values
    split = patient_split(ds.groups, y, fractions=FRACTIONS, seed=seed)
    part = ds.subset(split.train)
    labels = part.binary_target.values.copy()
    if flip:
        rng = np.random.default_rng(99)
        chosen = rng.random(labels.size) < flip
        labels[chosen] = 1 - labels[chosen]
    model = make_model("logistic", ds.features, {}, seed=seed).fit(part.X, labels)
    md = BundleMetadata(
        name=name,
        model_kind="logistic",
        dataset=ds.name,
        task=ds.task,
        target=ds.binary_target.name,
        intended_use="Tests only: not for clinical use.",
        population=ds.population,
        data_hash=data_hash(ds),
        seed=seed,
        split_sizes=split.sizes(),
        extra={"fractions": list(FRACTIONS)},
    )
    return ModelBundle(model, list(ds.features), md)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    root = tmp_path_factory.mktemp("promote")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
        mp.chdir(root)
        yield Settings(home=root / "home", data_root=get_settings().data_root)


@pytest.fixture(scope="module")
def support2(home: Settings) -> dict[str, Any]:
    """support2@1 and @2: the same model fitted twice (equal); @3: trained on 40% flipped labels (worse)."""
    ds = load_dataset("support2")
    bundles = [register(_bundle(ds, "support2"), home) for _ in range(2)]
    bundles.append(register(_bundle(ds, "support2", flip=0.4), home))
    return {"ds": ds, "bundles": bundles}


def _aliases(settings: Settings, name: str) -> dict[str, str]:
    client = MlflowClient(tracking_uri=settings.mlflow_uri, registry_uri=settings.mlflow_uri)
    return {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}


def _versions(settings: Settings, name: str) -> list[str]:
    client = MlflowClient(tracking_uri=settings.mlflow_uri, registry_uri=settings.mlflow_uri)
    return sorted(v.version for v in client.search_model_versions(f"name='{name}'"))


def run(args: list[str], settings: Settings) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEDML_HOME": str(settings.home), "COLUMNS": "200"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([*MEDML, *args], capture_output=True, text=True, env=env, timeout=600)


def one_line_error(proc: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert fragment in lines[0], lines[0]


def test_a_first_promotion_makes_the_champion_and_the_same_model_again_is_accepted(
    home: Settings, support2: dict[str, Any]
) -> None:
    first = run(["promote", "support2@1"], home)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "no champion yet" in first.stdout
    assert _aliases(home, "support2") == {"champion": "1"}
    # @2 is the same fit: on the shared test patients its AUROC difference is 0 in every resample
    second = run(["promote", "support2@2"], home)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "difference +0.000 (lower bound +0.000)" in second.stdout
    assert _aliases(home, "support2") == {"champion": "2"}


def test_promotion_onto_itself_is_refused_and_nothing_moves(home: Settings, support2: dict[str, Any]) -> None:
    if "champion" not in _aliases(home, "support2"):  # run alone: make one first
        set_aliases("support2", {"champion": 1}, home)
    before, versions = _aliases(home, "support2"), _versions(home, "support2")
    champion = before["champion"]
    proc = run(["promote", f"support2@{champion}"], home)
    one_line_error(proc, f"support2@{champion} is already the champion")
    assert _aliases(home, "support2") == before and _versions(home, "support2") == versions


def test_a_gates_file_with_an_unknown_metric_is_refused_and_nothing_moves(
    home: Settings, support2: dict[str, Any], tmp_path: Path
) -> None:
    gates = tmp_path / "gates.yaml"
    gates.write_text("gates:\n  auroc_difference: {margin: 0.02}\n  sensitivity_at_90: {min: 0.8}\n")
    before, versions = _aliases(home, "support2"), _versions(home, "support2")
    proc = run(["promote", "support2@1", "--gates", str(gates)], home)
    one_line_error(proc, "unknown metric 'sensitivity_at_90'")
    assert _aliases(home, "support2") == before and _versions(home, "support2") == versions


def test_a_worse_challenger_is_rejected_by_the_paired_gate_and_the_champion_stays(
    home: Settings, support2: dict[str, Any]
) -> None:
    if "champion" not in _aliases(home, "support2"):
        set_aliases("support2", {"champion": 1}, home)
    before = _aliases(home, "support2")
    worse = support2["bundles"][2]
    promotion = promote(worse.ref, home, parse_gates({"gates": {"auroc_difference": {}}}))
    assert not promotion.promoted
    assert [r.gate for r in promotion.report.failed] == ["auroc_difference"]
    assert _aliases(home, "support2") == before == {k: str(v) for k, v in promotion.after.items()}
    # judged on the patients of the shared test split only: neither model saw them
    ds = support2["ds"]
    test = patient_split(ds.groups, ds.binary_target.values, fractions=FRACTIONS, seed=0).test
    assert promotion.report.n == test.size


def test_the_leakage_gate_fails_when_evaluation_patients_were_seen(home: Settings, support2: dict[str, Any]) -> None:
    ds = support2["ds"]
    champion, challenger = load_bundle("support2@1", home), load_bundle("support2@2", home)
    everyone = evaluation_set(ds, [challenger, champion])  # training patients included on purpose
    report = check_gates(challenger, champion, everyone, parse_gates({"gates": {"leakage": {}}}))
    assert not report.passed
    assert "patients are in both" in report.results[0].measured
    clean = check_gates(challenger, champion, unseen(everyone), parse_gates({"gates": {"leakage": {}}}))
    assert clean.passed


def _va_table(path: Path) -> tuple[Path, pd.DatetimeIndex]:
    """The VA patients in order of admission (the file's order), one a day from 1984-01-01, as a CSV."""
    va = load_dataset("heart-va")
    frame = va.X.astype(object).where(va.X.notna(), None)
    frame["disease"] = va.binary_target.values
    frame["pid"] = va.groups
    times = pd.date_range("1984-01-01", periods=len(va), freq="D", tz="UTC")
    frame["admitted"] = times.strftime("%Y-%m-%d")
    frame.to_csv(path, index=False)
    return path, times


@pytest.mark.slow  # one re-fit through tuning, evaluation, MLflow and the report: about 40 s
def test_retraining_on_a_new_site_up_to_a_date_keeps_later_patients_out(home: Settings, tmp_path: Path) -> None:
    cleveland = load_dataset("heart-cleveland")
    register(_bundle(cleveland, "heart"), home)
    run_first = run(["promote", "heart@1", "--gates", str(_small_gates(tmp_path))], home)
    assert run_first.returncode == 0, run_first.stdout + run_first.stderr
    table, times = _va_table(tmp_path / "va.csv")
    until = "1984-04-09"  # the first 100 VA patients
    proc = run(
        [
            "retrain", "heart", "--until", until, "--data", str(table), "--time-column", "admitted",
            "--target", "disease", "--id", "pid", "--gates", str(_small_gates(tmp_path)),
            "--budget-seconds", "1", "--max-trials", "1", "--n-boot", "50",
        ],
        home,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr  # a verdict either way, never an error
    assert "re-fitted heart@2 on 100 new rows up to 1984-04-09" in proc.stdout
    retrained = load_bundle("heart@2", home)
    record = retrained.metadata.extra[SEEN_KEY]
    salt = record["salt"].encode()
    ids = np.asarray(load_dataset("heart-va").groups)
    hashed = [hashlib.blake2b(str(i).encode(), key=salt, digest_size=8).hexdigest() for i in ids]
    seen_va = set(record["by_dataset"]["va"])
    later = times > pd.Timestamp(until, tz="UTC")
    assert not any(h in seen_va for h, after in zip(hashed, later, strict=True) if after)
    assert 70 <= len(seen_va) <= 90  # train and calibration parts: 80% of the first 100 patients
    # the champion's own Cleveland test patients stayed out of the re-fit too
    test = patient_split(cleveland.groups, cleveland.binary_target.values, fractions=FRACTIONS, seed=0).test
    seen_cleveland = set(record["by_dataset"]["heart-cleveland"])
    cleveland_hashes = [hashlib.blake2b(str(g).encode(), key=salt, digest_size=8).hexdigest() for g in cleveland.groups]
    assert not any(cleveland_hashes[i] in seen_cleveland for i in test)
    aliases = _aliases(home, "heart")
    assert aliases == ({"champion": "2"} if proc.returncode == 0 else {"champion": "1"})
    assert "leakage" in proc.stdout and "unseen by both models" in proc.stdout


def _small_gates(tmp_path: Path) -> Path:
    path = tmp_path / "small-gates.yaml"
    path.write_text(SMALL_GATES)
    return path


def test_retraining_refuses_a_dataset_without_dates(home: Settings, support2: dict[str, Any]) -> None:
    before = _versions(home, "support2")
    proc = run(["retrain", "support2", "--until", "1990-01-01", "--data", "heart-va"], home)
    one_line_error(proc, "heart-va has no dates")
    assert _versions(home, "support2") == before
