"""register: save a bundle and record it in MLflow (tracking run + model registry) under one version number.

MLflow hands out the version: the model is logged with ``mlflow.sklearn.log_model(...,
registered_model_name=name)``, and the number MLflow gives the new registered model version becomes the
bundle's version. All of it runs under the store lock, so on one machine two registrations cannot interleave.
If any step fails, or Ctrl-C interrupts it, the staged folder is removed and the MLflow run, logged model and
model version are deleted, so neither store keeps half a registration. MLflow never reuses a deleted version
number, so a failed registration leaves a gap (1, 2, 4); the bundle and MLflow numbers still agree. A process
killed outright (SIGKILL, a power cut) cannot take anything back: :mod:`medml.registry.repair` finds what it left,
and each registration repairs that first.

mlflow is imported inside the functions: importing medml.registry stays cheap.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import os
import re
import signal
import socket
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medml.errors import IntegrityError
from medml.registry.bundle import ModelBundle
from medml.registry.store import bundle_dir, check_attachments, commit, staging, store_lock, write_bundle

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from medml.config import Settings

EXPERIMENT = "medml"
MODEL_ARTIFACT = "model"
BUNDLE_ARTIFACT = "bundle"
_KEY_BAD = re.compile(r"[^A-Za-z0-9_\-. /]")
_MAX_PARAM = 6000
_MAX_TAG = 5000
#: run tags naming the bundle store a registration wrote to: repair judges only the runs of its own store
HOST_TAG, STORE_TAG = "medml.host", "medml.models_dir"

log = logging.getLogger(__name__)


@dataclass
class _Outcomes:
    """What this process did to the registry, for the one line printed when it is interrupted."""

    registered: list[str] = field(default_factory=list)
    taken_back: list[str] = field(default_factory=list)
    left_behind: list[str] = field(default_factory=list)


_OUTCOMES = _Outcomes()


def registry_state() -> str:
    """One sentence on what this process left in the registry (``nothing was registered``, ``pima@3 was
    registered``, what an interrupted registration took back or could not), for the CLI's message on Ctrl-C."""
    o = _OUTCOMES
    parts = []
    if o.registered:
        parts.append(f"{', '.join(o.registered)} was registered in full (bundle store and MLflow)")
    if o.taken_back:
        parts.append(f"the registration under way was taken back ({'; '.join(o.taken_back)})")
    if o.left_behind:
        parts.append(
            f"the registration under way left {'; '.join(o.left_behind)} in MLflow: `medml models repair` "
            "removes it (the next registration also does)"
        )
    if not o.registered:
        parts.append("nothing was registered")
    return "; ".join(parts)


def register(
    bundle: ModelBundle, settings: Settings, attachments: Mapping[str, str | os.PathLike[str]] | None = None
) -> ModelBundle:
    """Save ``bundle`` as the next version of its model and register it in MLflow; returns it, versioned.

    Logs a run named after the model in experiment ``medml`` (params, headline metrics, tags, the bundle
    files under ``bundle/``) and the model itself with ``mlflow.sklearn.log_model`` (pyfunc predicts
    probabilities; input schema from the feature specs), registered so that MLflow's version equals the
    bundle's. A torch state_dict bundle is not logged as an MLflow flavour (that would pickle the network);
    its model version points at the run's ``bundle/`` folder instead. A bundle that already has a version (one
    loaded from elsewhere) is registered as a new one.
    """
    _import_mlflow()
    import mlflow

    files = check_attachments(attachments)
    name = bundle.name
    uri = settings.mlflow_uri
    with store_lock(settings), _quiet_mlflow(), _mlflow_at(uri):
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        _repair_first(client, settings)
        undo = _Undo(client, settings, name)
        try:
            saved = _register_locked(mlflow, client, undo, bundle, settings, files)
        except BaseException as error:
            undo.run(error)
            raise
    _OUTCOMES.registered.append(saved.ref)
    return saved


def _repair_first(client: MlflowClient, settings: Settings) -> None:
    """Under the lock, before registering: end what a killed registration left (see :mod:`.repair`), and say so."""
    from mlflow.exceptions import MlflowException

    from medml.registry.repair import repair_locked

    try:
        done = repair_locked(client, settings).done
    except (MlflowException, OSError) as e:  # registering does not depend on it; `medml models list` reports
        log.warning("medml could not check MLflow for what a killed registration left: %s", e)
        return
    for line in done:
        log.warning("medml repaired the registry before registering: %s", line)


def _import_mlflow() -> None:
    """Import what register uses up front: MLflow resets its loggers and output stream on these imports.

    ``mlflow.pyfunc``'s first import warns about its own type hints (a UserWarning from
    ``mlflow.types.type_hints``, not ours to fix); that one warning is ignored here.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\.types\.type_hints")
        import mlflow.pyfunc.loaders
        import mlflow.sklearn  # noqa: F401


def _register_locked(
    mlflow: Any, client: MlflowClient, undo: _Undo, bundle: ModelBundle, settings: Settings, files: dict[str, Path]
) -> ModelBundle:
    meta = bundle.metadata
    name = meta.name
    experiment_id = _experiment(client, settings)
    undo.model_existed = _registered_model_exists(client, name)
    with staging(settings) as tmp:
        tags = {**_tags(bundle), **origin_tags(settings)}
        with mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=tags) as run:
            undo.run_id = run.info.run_id
            mlflow.log_params(_params(bundle))
            mlflow.log_metrics(_metrics(meta.metrics))
            if bundle.artifact == "joblib":
                serialization, trusted = _serialization(bundle.model)
                info = mlflow.sklearn.log_model(
                    bundle.model,
                    name=MODEL_ARTIFACT,
                    registered_model_name=name,
                    signature=_signature(bundle),
                    pip_requirements=_requirements(bundle.model, serialization),
                    serialization_format=serialization,
                    skops_trusted_types=trusted,
                    pyfunc_predict_fn="predict_proba",
                )
                undo.model_id = info.model_id
                version = int(info.registered_model_version)
            else:
                version = _register_bundle_artifacts(client, undo, name, run.info.run_id)
            undo.version = version
            if bundle_dir(settings, name, version).exists():
                raise IntegrityError(
                    f"MLflow gave {name} version {version}, but the bundle store already holds {name}@{version}",
                    "the MLflow database and models_dir disagree (was mlflow.db replaced, or "
                    "MLFLOW_TRACKING_URI changed?); point both at the same MEDML_HOME or use a new name",
                )
            extra = {
                **meta.extra,
                "mlflow": {
                    "run_id": run.info.run_id,
                    "model_id": undo.model_id,
                    "model_uri": f"models:/{name}/{version}",
                },
            }
            saved = bundle.with_metadata(meta.with_version(version, extra=extra))
            manifest = write_bundle(saved, tmp, files)
            mlflow.log_artifacts(str(tmp), artifact_path=BUNDLE_ARTIFACT)
            mlflow.set_tag("bundle_hash", manifest["bundle_hash"])
            client.set_model_version_tag(name, str(version), "bundle_hash", manifest["bundle_hash"])
            client.update_model_version(name, str(version), description=_clip(meta.intended_use))
        # the run has ended well: only now does the version appear in the store
        undo.committing = True
        commit(tmp, settings, name, version)
    return saved


def origin_tags(settings: Settings) -> dict[str, str]:
    """The run tags that name this machine and bundle store (see :mod:`.repair`)."""
    return {HOST_TAG: socket.gethostname(), STORE_TAG: str(settings.models_dir.resolve())}


def _register_bundle_artifacts(client: MlflowClient, undo: _Undo, name: str, run_id: str) -> int:
    """A registered model version whose source is the run's ``bundle/`` folder: for artifacts (a torch
    state_dict) that no MLflow flavour logs without pickling code; returns the version MLflow gave."""
    if not undo.model_existed:
        client.create_registered_model(name)
    mv = client.create_model_version(name, source=f"runs:/{run_id}/{BUNDLE_ARTIFACT}", run_id=run_id)
    return int(mv.version)


class _Undo:
    """What a registration created in MLflow so far, and how to take it back after a failure or Ctrl-C.

    What MLflow created is also looked up by run id: an interrupt can land after MLflow numbered the version and
    before ``log_model`` returned it. A second Ctrl-C waits until the taking back is done.
    """

    def __init__(self, client: MlflowClient, settings: Settings, name: str) -> None:
        self.client = client
        self.settings = settings
        self.name = name
        self.model_existed = True
        self.run_id: str | None = None
        self.model_id: str | None = None
        self.version: int | None = None
        #: set just before the bundle is moved into place: once it is there, the registration is complete
        self.committing = False

    def run(self, error: BaseException) -> None:
        name, version = self.name, self.version
        if self.committing and version is not None and bundle_dir(self.settings, name, version).is_dir():
            _OUTCOMES.registered.append(f"{name}@{version}")  # interrupted after the last step: nothing to undo
            return
        with _sigint_deferred():
            done, left = self._take_back(error)
            done += self._sweep(error)
        if done:
            _OUTCOMES.taken_back.append(f"{', '.join(done)} of {name} deleted from MLflow")
        if left:
            _OUTCOMES.left_behind.append(f"{', '.join(left)} of {name}")

    def _take_back(self, error: BaseException) -> tuple[list[str], list[str]]:
        from mlflow.exceptions import MlflowException

        name, run_id, client = self.name, self.run_id, self.client
        done: list[str] = []
        left: list[str] = []

        def attempt(what: str, step: Callable[[], object]) -> None:
            try:
                step()
                done.append(what)
            except (MlflowException, OSError) as e:  # keep the original error; say what is left behind
                left.append(what)
                error.add_note(f"medml could not delete the MLflow {what} of the failed registration: {e}")

        found = {self.version} if self.version is not None else set()
        models = {self.model_id} if self.model_id is not None else set()
        if run_id is not None:
            try:
                found |= {int(mv.version) for mv in client.search_model_versions(f"run_id = '{run_id}'")}
                run = client.get_run(run_id)
                models |= {
                    m.model_id
                    for m in client.search_logged_models(
                        experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
                    )
                }
            except (MlflowException, OSError) as e:
                error.add_note(f"medml could not look up what the failed registration created in MLflow: {e}")
        for version in sorted(found):
            attempt(f"version {version}", partial(client.delete_model_version, name, str(version)))
        if not self.model_existed:
            try:
                empty = _registered_model_exists(client, name) and not client.search_model_versions(
                    f"name = '{_quoted(name)}'"
                )
            except (MlflowException, OSError):
                empty = False
            if empty:
                attempt("registered model", lambda: client.delete_registered_model(name))
        for model_id in sorted(models):
            attempt("logged model", partial(client.delete_logged_model, model_id))
        if run_id is not None:
            attempt("run", lambda: client.delete_run(run_id))
        return done, left

    def _sweep(self, error: BaseException) -> list[str]:
        """Anything else half-made in MLflow (a run an interrupt left RUNNING before its id came back): the same
        repair the next registration would do, done now under the lock still held."""
        from mlflow.exceptions import MlflowException

        from medml.registry.repair import repair_locked

        try:
            return repair_locked(self.client, self.settings).done
        except (MlflowException, OSError) as e:
            error.add_note(f"medml could not check MLflow for what the failed registration left: {e}")
            return []


@contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold a Ctrl-C until the block ends (it is delivered then): taking a registration back is not cut short."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _quoted(text: str) -> str:
    """``text`` inside an MLflow filter string's single quotes."""
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _experiment(client: MlflowClient, settings: Settings) -> str:
    """The ``medml`` experiment, created with its artifacts under MEDML_HOME (not ./mlruns) when local."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is not None:
        return str(exp.experiment_id)
    local = settings.mlflow_uri.startswith(("sqlite:", "file:")) or "://" not in settings.mlflow_uri
    location = settings.mlflow_artifacts.resolve().as_uri() if local else None
    try:
        return str(client.create_experiment(EXPERIMENT, artifact_location=location))
    except MlflowException:  # created meanwhile by another process
        exp = client.get_experiment_by_name(EXPERIMENT)
        if exp is None:
            raise
        return str(exp.experiment_id)


def _registered_model_exists(client: MlflowClient, name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as e:
        if e.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return True


def _tags(bundle: ModelBundle) -> dict[str, str]:
    m = bundle.metadata
    tags = {
        "dataset": m.dataset,
        "task": m.task,
        "target": m.target,
        "model_kind": m.model_kind,
        "data_hash": m.data_hash,
        "code_version": m.code_version,
        "intended_use": m.intended_use,
        "population": m.population,
        "calibration": m.calibration,
        "medml.model_name": m.name,
    }
    return {k: _clip(v) for k, v in tags.items()}


def _params(bundle: ModelBundle) -> dict[str, str]:
    m = bundle.metadata
    flat: dict[str, Any] = {
        "model_kind": m.model_kind,
        "calibration": m.calibration,
        "seed": m.seed,
        "n_features": len(bundle.features),
    }
    flat |= _flatten(m.params, "")
    flat |= _flatten(m.split_sizes, "split_size.")
    return {_key(k): str(v)[:_MAX_PARAM] for k, v in flat.items()}


def _metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Headline numbers: plain numbers, and ``{"value", "low", "high"}`` dicts as key, key_low, key_high."""
    out: dict[str, float] = {}
    for key, v in metrics.items():
        parts = v if isinstance(v, Mapping) else {"value": v}
        for part, x in parts.items():
            if isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x):
                out[_key(key if part == "value" else f"{key}_{part}")] = float(x)
    return out


def _flatten(d: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out |= _flatten(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def _key(key: str) -> str:
    return _KEY_BAD.sub("_", key)[:250]


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_TAG else text[: _MAX_TAG - 1] + "…"


def _signature(bundle: ModelBundle) -> Any:
    """Input schema from the feature specs (numeric -> double, categorical -> string); no data needed."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    cols: list[ColSpec | TensorSpec] = [
        ColSpec("double" if f.kind == "numeric" else "string", f.name) for f in bundle.features
    ]
    return ModelSignature(inputs=Schema(cols))


def _serialization(model: Any) -> tuple[str, list[str] | None]:
    """skops (MLflow's safe default) with the model's own types trusted; cloudpickle if skops cannot."""
    import mlflow.sklearn

    try:
        import skops.io

        trusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    except Exception as e:  # skops refuses some objects; the MLflow copy then uses cloudpickle instead
        log.debug("skops cannot serialise %s (%s); MLflow gets a cloudpickle copy", type(model).__name__, e)
        return mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE, None
    return mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS, trusted


def _requirements(model: Any, serialization: str) -> list[str]:
    """Pinned pip requirements from the modules the pickled model refers to.

    Passing them stops MLflow inferring them by loading the model in a subprocess (about 5 s a call).
    """
    import pickle

    import mlflow.sklearn

    modules: set[str] = set()

    class _Recorder(pickle.Pickler):
        def reducer_override(self, obj: Any) -> Any:
            modules.add(type(obj).__module__)
            if isinstance(obj, type) or callable(obj):
                modules.add(getattr(obj, "__module__", None) or "builtins")
            return NotImplemented

    _Recorder(_Discard(), protocol=pickle.HIGHEST_PROTOCOL).dump(model)
    reqs: list[str] = mlflow.sklearn.get_default_pip_requirements(
        include_cloudpickle=serialization == mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
        include_skops=serialization == mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
    )
    have = {r.split("==")[0].lower() for r in reqs}
    for top in sorted({m.split(".")[0] for m in modules}):
        if top in sys.stdlib_module_names or top in ("builtins", "medml", "__main__"):
            continue
        pinned = _pinned(top)
        if pinned and pinned.split("==")[0].lower() not in have:
            reqs.append(pinned)
            have.add(pinned.split("==")[0].lower())
    return reqs


_DISTRIBUTION_OF = {"sklearn": "scikit-learn", "skimage": "scikit-image", "yaml": "PyYAML", "PIL": "pillow"}


@functools.cache
def _pinned(module: str) -> str | None:
    """``dist==version`` for a top-level module; the full scan of installed packages only as a last resort."""
    from importlib.metadata import PackageNotFoundError, packages_distributions, version

    candidates = [_DISTRIBUTION_OF.get(module, module)]
    for name in candidates + packages_distributions().get(module, []):
        try:
            return f"{name}=={version(name)}"
        except PackageNotFoundError:
            continue
    return None


class _Discard:
    def write(self, data: Any) -> int:
        # protocol 5 hands a large array's buffer over as a PickleBuffer, which has no len()
        return memoryview(data).nbytes


@contextmanager
def _mlflow_at(uri: str) -> Iterator[None]:
    """Point MLflow's global tracking and registry URIs at ``uri`` for the block, then put them back.

    ``mlflow.set_tracking_uri`` also writes ``MLFLOW_TRACKING_URI`` into the environment, which
    ``Settings.mlflow_uri`` reads; left there, one MEDML_HOME's database would leak into the next.
    """
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    before = (getattr(tracking_utils, "_tracking_uri", None), getattr(registry_utils, "_registry_uri", None))
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        tracking_utils._tracking_uri, registry_utils._registry_uri = before
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def _quiet_mlflow() -> Iterator[None]:
    """No MLflow INFO lines, "Created version" messages, progress bars, run links or telemetry meanwhile.

    MLflow's warnings still reach stderr. Its event messages (``eprint``) write to a module-level stream
    that MLflow itself re-enables on some lazy imports, so that stream is swapped for a null one instead.
    """
    from mlflow.utils import logging_utils

    quiet_env = {
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
        "MLFLOW_DISABLE_TELEMETRY": os.environ.get("MLFLOW_DISABLE_TELEMETRY", "true"),
    }
    with ExitStack() as stack:
        for name in ("mlflow", "alembic"):
            logger = logging.getLogger(name)
            stack.callback(logger.setLevel, logger.level)
            logger.setLevel(logging.WARNING)
        stack.callback(setattr, logging_utils, "MLFLOW_LOGGING_STREAM", logging_utils.MLFLOW_LOGGING_STREAM)
        setattr(logging_utils, "MLFLOW_LOGGING_STREAM", io.StringIO())  # noqa: B010 (not the declared type)
        for k, v in quiet_env.items():
            stack.callback(_restore_env, k, os.environ.get(k))
            os.environ[k] = v
        yield


def _restore_env(key: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


# --- aliases: which version is the champion (serving) and which the challenger (under test) --------------------

#: MLflow registered-model aliases medml moves: ``champion`` serves; ``challenger`` is scored in its shadow
CHAMPION, CHALLENGER = "champion", "challenger"
ALIASES = (CHAMPION, CHALLENGER)


class MlflowRegistryUnavailable(IntegrityError):
    """MLflow could not be asked about a model's aliases (a remote tracking server down, a locked database)."""


def get_aliases(name: str, settings: Settings) -> dict[str, int]:
    """``{"champion": 3, "challenger": 4}``: the aliases MLflow holds for the registered model ``name`` ({} when it
    has none, or when MLflow does not know the model)."""
    from mlflow.exceptions import MlflowException

    with _alias_client(settings) as client:
        try:
            model = client.get_registered_model(name)
        except MlflowException as e:
            if e.error_code == "RESOURCE_DOES_NOT_EXIST":
                return {}
            raise _unavailable(e, name) from None
        return {str(k): int(v) for k, v in (model.aliases or {}).items()}


def set_aliases(name: str, moves: Mapping[str, int | None], settings: Settings) -> dict[str, int]:
    """Point each alias of ``moves`` at its version (None: remove the alias), under the store lock so that a
    registration cannot interleave; returns the aliases after. Only ``champion`` and ``challenger`` are moved."""
    from mlflow.exceptions import MlflowException

    for alias in moves:
        if alias not in ALIASES:
            raise ValueError(f"medml moves only the {' and '.join(ALIASES)} aliases, not {alias!r}")
    with store_lock(settings), _alias_client(settings) as client:
        try:
            for alias, version in moves.items():
                if version is None:
                    if alias in (client.get_registered_model(name).aliases or {}):
                        client.delete_registered_model_alias(name, alias)
                else:
                    client.set_registered_model_alias(name, alias, str(version))
        except MlflowException as e:
            raise _unavailable(e, name) from None
    return get_aliases(name, settings)


@contextmanager
def _alias_client(settings: Settings) -> Iterator[MlflowClient]:
    import mlflow

    uri = settings.mlflow_uri
    with _quiet_mlflow(), _mlflow_at(uri):
        yield mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def _unavailable(e: Exception, name: str) -> MlflowRegistryUnavailable:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return MlflowRegistryUnavailable(
        f"MLflow could not be asked about the aliases of {name!r}: {first[:200]}",
        "check MLFLOW_TRACKING_URI (or MEDML_HOME's mlflow.db) and try again; no alias was moved",
    )
