"""register: save a bundle and record it in MLflow (tracking run + model registry) under one version number.

MLflow hands out the version: the model is logged with ``mlflow.sklearn.log_model(...,
registered_model_name=name)``, and the number MLflow gives the new registered model version becomes the
bundle's version. All of it runs under the store lock, so on one machine two registrations cannot interleave.
If any step fails, the staged folder is removed and the MLflow run, logged model and model version are
deleted, so neither store keeps half a registration. MLflow never reuses a deleted version number, so a
failed registration leaves a gap (1, 2, 4); the bundle and MLflow numbers still agree.

mlflow is imported inside the functions: importing medml.registry stays cheap.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
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

log = logging.getLogger(__name__)


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
        undo = _Undo(client, name)
        try:
            return _register_locked(mlflow, client, undo, bundle, settings, files)
        except BaseException as error:
            undo.run(error)
            raise


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
        with mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=_tags(bundle)) as run:
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
        commit(tmp, settings, name, version)
    return saved


def _register_bundle_artifacts(client: MlflowClient, undo: _Undo, name: str, run_id: str) -> int:
    """A registered model version whose source is the run's ``bundle/`` folder: for artifacts (a torch
    state_dict) that no MLflow flavour logs without pickling code; returns the version MLflow gave."""
    if not undo.model_existed:
        client.create_registered_model(name)
    mv = client.create_model_version(name, source=f"runs:/{run_id}/{BUNDLE_ARTIFACT}", run_id=run_id)
    return int(mv.version)


class _Undo:
    """What a registration created in MLflow so far, and how to take it back after a failure."""

    def __init__(self, client: MlflowClient, name: str) -> None:
        self.client = client
        self.name = name
        self.model_existed = True
        self.run_id: str | None = None
        self.model_id: str | None = None
        self.version: int | None = None

    def run(self, error: BaseException) -> None:
        from mlflow.exceptions import MlflowException

        name, version, model_id, run_id = self.name, self.version, self.model_id, self.run_id
        steps: list[tuple[str, Callable[[], None]]] = []
        if version is not None:
            if self.model_existed:
                steps.append(("model version", lambda: self.client.delete_model_version(name, str(version))))
            else:
                steps.append(("registered model", lambda: self.client.delete_registered_model(name)))
        if model_id is not None:
            steps.append(("logged model", lambda: self.client.delete_logged_model(model_id)))
        if run_id is not None:
            steps.append(("run", lambda: self.client.delete_run(run_id)))
        for what, step in steps:
            try:
                step()
            except (MlflowException, OSError) as e:  # keep the original error; say what is left behind
                error.add_note(f"medml could not delete the MLflow {what} of the failed registration: {e}")


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
    def write(self, data: bytes) -> int:
        return len(data)


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
