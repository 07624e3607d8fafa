"""What a registration killed outright leaves behind, found and repaired, so the bundle store and MLflow agree.

register() takes back what it created in MLflow when it fails or Ctrl-C interrupts it. A process killed outright
(SIGKILL, out of memory, a power cut) cannot, and leaves behind one of:

- a run of experiment ``medml`` still RUNNING that no process runs any more;
- a model version in MLflow without its bundle: killed after MLflow numbered the version and before the bundle
  was moved into place (its run never finished, or had just finished);

and, by hand rather than by a crash: a bundle registered in MLflow whose version MLflow no longer has.

:func:`check` lists them and changes nothing (``medml models list``). :func:`repair` (``medml models repair``; every
registration does it first) ends a stuck run as KILLED and deletes the logged models and versions it made; restores
the bundle of a version whose run had finished, from the run's verified ``bundle/`` copy; and leaves a bundle
without its MLflow version alone (it is complete and loads: only MLflow lost its record).

Both hold the store lock, so no registration of this store runs meanwhile: a RUNNING run of this store (run tags
``medml.host`` and ``medml.models_dir``; a run without them is taken as this store's) can only be stuck. Runs and
versions of other stores sharing an MLflow server are left alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medml.errors import IntegrityError, MedmlError
from medml.registry.manifest import verify_folder
from medml.registry.store import (
    METADATA,
    _fsync,
    _metadata,
    bundle_dir,
    commit,
    model_names,
    staging,
    store_lock,
    versions,
)
from medml.registry.tracking import (
    BUNDLE_ARTIFACT,
    EXPERIMENT,
    HOST_TAG,
    STORE_TAG,
    _import_mlflow,
    _quiet_mlflow,
    _quoted,
    origin_tags,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion

    from medml.config import Settings

__all__ = ["MlflowUnavailable", "Problem", "Repair", "check", "repair", "repair_locked"]

REPAIR = "`medml models repair`"


class MlflowUnavailable(MedmlError):
    """MLflow could not be asked: a tracking server down or unreachable, or its database unreadable."""


@dataclass(frozen=True)
class Problem:
    """One disagreement between the bundle store and MLflow: what it is, and what repairs it."""

    name: str
    version: int | None
    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.what}; {self.fix}"


@dataclass(frozen=True)
class Repair:
    """What :func:`repair` did (one line each), and the problems it left for a person."""

    done: list[str] = field(default_factory=list)
    left: list[Problem] = field(default_factory=list)


@dataclass(frozen=True)
class _Finding:
    problem: Problem
    #: repairs it and says what it did, or returns the problem as it stands; None: nothing medml may do
    action: Callable[[], str | Problem] | None


def check(settings: Settings) -> list[Problem]:
    """The disagreements between the bundle store and MLflow; changes nothing.

    StoreBusy when another process is registering now (what it has half-made is not a problem yet).
    """
    if not _has_registry(settings):
        return []
    with store_lock(settings, timeout_s=0), _no_retries(), _asking(settings), _client(settings) as client:
        return [f.problem for f in _findings(client, settings, bundles=True)]


def repair(settings: Settings) -> Repair:
    """Repair what killed registrations left (see the module doc); waits for a registration under way."""
    if not _has_registry(settings):
        return Repair()
    with store_lock(settings), _asking(settings), _client(settings) as client:
        return repair_locked(client, settings, bundles=True)


def repair_locked(client: MlflowClient, settings: Settings, *, bundles: bool = False) -> Repair:
    """:func:`repair` for a caller that holds the store lock; ``bundles`` also reports bundles MLflow lost."""
    out = Repair()
    for finding in _findings(client, settings, bundles=bundles):
        if finding.action is None:
            out.left.append(finding.problem)
            continue
        result = finding.action()
        if isinstance(result, Problem):
            out.left.append(result)
        else:
            out.done.append(result)
    return out


# --- finding ------------------------------------------------------------------------------------------------


def _has_registry(settings: Settings) -> bool:
    """False when nothing was ever registered here: no bundle store, or a local MLflow database not yet made."""
    if not settings.models_dir.is_dir():
        return False
    uri = settings.mlflow_uri
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).is_file()
    return True


@contextmanager
def _client(settings: Settings) -> Iterator[MlflowClient]:
    _import_mlflow()
    import mlflow

    uri = settings.mlflow_uri
    with _quiet_mlflow():
        yield mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


@contextmanager
def _asking(settings: Settings) -> Iterator[None]:
    """MLflow's failures as one MlflowUnavailable line (a server down, a connection refused, an unreadable db)."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except (MlflowException, OSError) as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise MlflowUnavailable(
            f"MLflow at {settings.mlflow_uri} cannot be asked ({why})",
            "check that the tracking server runs (MLFLOW_TRACKING_URI), then try again",
        ) from None


@contextmanager
def _no_retries() -> Iterator[None]:
    """A listing asks an MLflow server once, with a short timeout, instead of retrying for minutes."""
    keys = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    before = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _findings(client: MlflowClient, settings: Settings, *, bundles: bool) -> list[_Finding]:
    found: list[_Finding] = []
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is not None:
        exp_id = str(exp.experiment_id)
        here = origin_tags(settings)
        for run in _all(client.search_runs, experiment_ids=[exp_id], filter_string="attributes.status = 'RUNNING'"):
            if _ours(run, here):
                found.append(_stuck_run(client, run))
        for rm in _all(client.search_registered_models):
            for mv in _all(client.search_model_versions, filter_string=f"name = '{_quoted(rm.name)}'"):
                if bundle_dir(settings, rm.name, int(mv.version)).is_dir():
                    continue
                run = _run(client, mv.run_id)
                if run is not None and str(run.info.experiment_id) == exp_id and _ours(run, here):
                    found.append(_version_without_bundle(client, settings, mv, run))
    if bundles:
        found += _bundles_without_version(client, settings)
    return found


def _stuck_run(client: MlflowClient, run: Run) -> _Finding:
    name = run.info.run_name or run.data.tags.get("medml.model_name", "?")
    since = datetime.fromtimestamp(run.info.start_time / 1000, UTC).isoformat(timespec="seconds")
    problem = Problem(
        name,
        None,
        f"MLflow run {run.info.run_id} ({name}) has been RUNNING since {since} with no process left to run it "
        "(a registration killed before it finished)",
        f"{REPAIR} ends it as KILLED",
    )
    return _Finding(problem, partial(_end_run, client, run, name))


def _version_without_bundle(client: MlflowClient, settings: Settings, mv: ModelVersion, run: Run) -> _Finding:
    name, version = str(mv.name), int(mv.version)
    finished = run.info.status == "FINISHED" and run.info.lifecycle_stage == "active"
    what = f"MLflow holds version {version} of {name}, but the bundle store has no {name}@{version}"
    if not finished:
        problem = Problem(
            name,
            version,
            f"{what} (its registration was stopped before it finished: run {run.info.status.lower()})",
            f"{REPAIR} deletes that MLflow version (the next registration also does)",
        )
        return _Finding(problem, partial(_delete_version, client, settings, name, version))
    if not mv.tags.get("bundle_hash"):
        problem = Problem(
            name,
            version,
            f"{what}, and its MLflow run has no verified bundle to restore it from",
            "if the version is not used in MLflow, delete it there (MlflowClient().delete_model_version)",
        )
        return _Finding(problem, None)
    problem = Problem(
        name,
        version,
        f"{what} (killed, or the folder removed, after MLflow had all of it)",
        f"{REPAIR} restores the bundle from its MLflow run",
    )
    return _Finding(problem, partial(_restore, client, settings, mv, problem))


def _bundles_without_version(client: MlflowClient, settings: Settings) -> list[_Finding]:
    from mlflow.exceptions import MlflowException

    found = []
    for name in model_names(settings):
        for version in versions(settings, name):
            tracked = _mlflow_record(bundle_dir(settings, name, version))
            if not tracked:
                continue  # saved with save_bundle, never registered in MLflow
            try:
                mv = client.get_model_version(name, str(version))
            except MlflowException as e:
                if e.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                mv = None
            if mv is not None and mv.run_id == tracked.get("run_id"):
                continue
            whose = "no" if mv is None else "another run's"
            problem = Problem(
                name,
                version,
                f"the bundle store holds {name}@{version}, registered in MLflow, but MLflow has {whose} version "
                f"{version} of {name} (was mlflow.db replaced, or the version deleted in MLflow?)",
                "the bundle is complete and loads; to have MLflow's record back, restore mlflow.db from a backup",
            )
            found.append(_Finding(problem, None))
    return found


def _mlflow_record(folder: Path) -> dict[str, Any] | None:
    """The ``extra.mlflow`` entry of a bundle's metadata (written by register), or None."""
    try:
        record = json.loads((folder / METADATA).read_bytes()).get("extra", {}).get("mlflow")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None  # an unreadable bundle is reported by `medml models list` and `show` themselves
    return record if isinstance(record, dict) and record.get("model_uri") else None


# --- repairing ----------------------------------------------------------------------------------------------


def _end_run(client: MlflowClient, run: Run, name: str) -> str:
    run_id = run.info.run_id
    for model in _all(
        client.search_logged_models,
        experiment_ids=[str(run.info.experiment_id)],
        filter_string=f"source_run_id = '{run_id}'",
    ):
        client.delete_logged_model(model.model_id)
    client.set_terminated(run_id, "KILLED")
    return f"ended MLflow run {run_id} ({name}) as KILLED: it was RUNNING with no process left to run it"


def _delete_version(client: MlflowClient, settings: Settings, name: str, version: int) -> str:
    client.delete_model_version(name, str(version))
    also = ""
    if not versions(settings, name) and not list(
        _all(client.search_model_versions, filter_string=f"name = '{_quoted(name)}'")
    ):
        client.delete_registered_model(name)  # as a failed first registration leaves it: the next one is @1
        also = " and the registered model it was the only version of"
    return f"deleted MLflow version {version} of {name}{also}: its registration was stopped before it finished"


def _restore(client: MlflowClient, settings: Settings, mv: ModelVersion, problem: Problem) -> str | Problem:
    from mlflow.exceptions import MlflowException

    name, version = str(mv.name), int(mv.version)
    ref = f"{name}@{version}"
    with staging(settings) as tmp:
        try:
            src = Path(client.download_artifacts(str(mv.run_id), BUNDLE_ARTIFACT, str(tmp)))
            manifest, data = verify_folder(src, ref, keep=(METADATA,))
            if manifest["bundle_hash"] != mv.tags.get("bundle_hash"):
                raise IntegrityError(f"bundle {ref} in the MLflow run is not the one MLflow's version was given")
            if _metadata(data[METADATA], ref, name, version).extra.get("mlflow", {}).get("run_id") != mv.run_id:
                raise IntegrityError(f"bundle {ref} in the MLflow run names another run")
        except (MlflowException, OSError, IntegrityError) as e:
            return Problem(
                name,
                version,
                f"{problem.what}; its copy in MLflow run {mv.run_id} cannot be restored ({e})",
                "if the version is not used in MLflow, delete it there (MlflowClient().delete_model_version)",
            )
        for p in src.iterdir():
            _fsync(p)
        commit(src, settings, name, version)
    return f"restored the bundle {ref} from its MLflow run {mv.run_id} (verified against its manifest and hash)"


# --- MLflow helpers -----------------------------------------------------------------------------------------


def _ours(run: Run, here: dict[str, str]) -> bool:
    tags = run.data.tags
    return all(tags.get(k, here[k]) == here[k] for k in (HOST_TAG, STORE_TAG))


def _run(client: MlflowClient, run_id: str | None) -> Run | None:
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    try:
        return client.get_run(run_id)
    except MlflowException:
        return None


def _all(search: Callable[..., Any], **kwargs: Any) -> Iterator[Any]:
    """Every result of an MLflow search, page after page."""
    token = None
    while True:
        page = search(**kwargs, page_token=token) if token else search(**kwargs)
        yield from page
        token = getattr(page, "token", None)
        if not token:
            return
