"""ModelBundle: a fitted model with its feature schema and the metadata that says what it is for.

A bundle is what the registry stores and the service loads: never a bare pickle. ``BundleMetadata`` is
validated when it is built (``ConfigError``: the caller passed something wrong) and when it is read back
from disk (``IntegrityError``: the stored file is not a bundle this code wrote).
"""

from __future__ import annotations

import math
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from medml.errors import ConfigError, IntegrityError

if TYPE_CHECKING:
    from medml.data.task import FeatureSpec, ServingContract
    from medml.evaluate.schema import Headline

#: how the model is stored: a joblib pickle of a scikit-learn-style classifier, or a torch ``state_dict`` (tensors
#: only, loaded with ``weights_only=True``) whose network is rebuilt from config in the metadata
ArtifactKind = Literal["joblib", "torch-state-dict"]
ARTIFACT_KINDS: tuple[str, ...] = ("joblib", "torch-state-dict")

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def check_name(name: object) -> str:
    """A model name is a folder name and an MLflow registered model name: letters, digits, ``_ . -``."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ConfigError(
            f"invalid model name {name!r}",
            "use 1-100 letters, digits, '_', '.' or '-', starting with a letter or digit",
        )
    return name


def code_version() -> str:
    """``medml.__version__``, plus ``+git.<commit>`` (and ``.dirty``) when medml runs from a git checkout.

    Never fails: without git, outside a checkout, or from an installed wheel it is just the version.
    """
    import medml

    version = medml.__version__
    here = Path(medml.__file__).resolve().parent
    if "site-packages" in here.parts:  # an installed copy: a surrounding repository is not its source
        return version
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no", "--", "."],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    if not commit:
        return version
    return f"{version}+git.{commit}" + (".dirty" if changes else "")


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _plain(value: Any, where: str) -> Any:
    """``value`` as JSON-ready Python (numpy scalars and arrays become numbers and lists), or ConfigError."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays, without importing numpy
    if callable(tolist) and type(value).__module__ == "numpy":
        return _plain(tolist(), where)
    raise ConfigError(
        f"bundle metadata {where} holds a {type(value).__name__}, which cannot be stored as JSON",
        "pass numbers, strings, lists and dicts (convert reports with .to_dict())",
    )


_TEXT = (
    "name",
    "model_kind",
    "dataset",
    "task",
    "target",
    "intended_use",
    "population",
    "created",
    "code_version",
    "data_hash",
    "calibration",
)
_DICTS = ("params", "split_sizes", "excluded_columns", "metrics", "evaluation", "extra")
#: typed parts, stored as JSON objects; bundles saved before they existed lack them and still load
_TYPED = ("serving", "headline")


@dataclass(frozen=True, kw_only=True)
class BundleMetadata:
    """What a model is, what it was trained on, for whom it is meant and how well it did.

    ``version`` is ``None`` (or 0) until the registry assigns one. ``evaluation`` is an
    ``EvaluationReport`` as a plain dict (``report.to_dict()``); ``headline`` is what every view of the model
    shows of it, typed; ``metrics`` holds the headline numbers as MLflow logs them, each a number or an
    ``{"value", "low", "high"}`` dict. ``serving`` is how the deployed model reads its input (a FHIR feature
    definition and index-time rule, an image preparation), written at training time. ``data_hash`` is the sha256
    of the training data, from the caller. A bundle stored before ``serving`` and ``headline`` existed gets them
    from its other metadata where that has what they need.
    """

    name: str
    version: int | None = None
    model_kind: str
    dataset: str
    task: str
    target: str
    intended_use: str
    population: str
    created: str = field(default_factory=utc_now)
    code_version: str = field(default_factory=code_version)
    data_hash: str
    params: dict[str, Any] = field(default_factory=dict)
    calibration: str = "none"
    seed: int | None = None
    split_sizes: dict[str, int] = field(default_factory=dict)
    excluded_columns: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    serving: ServingContract | None = None
    headline: Headline | None = None

    def __post_init__(self) -> None:
        problems = _problems(self.__dict__) + _typed_problems(self.serving, self.headline)
        if problems:
            raise ConfigError(
                f"invalid bundle metadata for {self.name!r}: " + "; ".join(problems),
                "fix the values passed to BundleMetadata",
            )
        # Defensive JSON-ready copies: later changes to the caller's dicts do not reach a saved bundle.
        for key in _DICTS:
            object.__setattr__(self, key, _plain(getattr(self, key), key))
        for key in ("version", "seed"):
            if getattr(self, key) is not None:
                object.__setattr__(self, key, int(getattr(self, key)))
        if self.serving is None:
            try:
                object.__setattr__(self, "serving", _legacy_serving(self.params, self.extra))
            except ValueError as e:
                raise ConfigError(f"invalid bundle metadata for {self.name!r}: {e}", "retrain the model") from None
        if self.headline is None:
            object.__setattr__(self, "headline", _legacy_headline(self.metrics, self.evaluation, self.population))

    @property
    def ref(self) -> str:
        """``name@version`` (or just the name before registration)."""
        return f"{self.name}@{self.version}" if self.version else self.name

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _TYPED}
        for key in _TYPED:
            value = getattr(self, key)
            out[key] = None if value is None else value.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "metadata") -> BundleMetadata:
        """Read stored metadata; every key must be present and of the right type, else IntegrityError."""
        if not isinstance(d, Mapping):
            raise IntegrityError(
                f"{source} is a {type(d).__name__}, not a JSON object",
                "retrain the model or restore the bundle from MLflow",
            )
        names = [f.name for f in fields(cls)]
        missing = [k for k in names if k not in d and k not in _TYPED]
        unknown = sorted(set(d) - set(names))
        problems = [f"missing key {k!r}" for k in missing] + [f"unknown key {k!r}" for k in unknown]
        if not problems:
            problems = _problems(d)
        if problems:
            raise IntegrityError(
                f"{source} is not valid bundle metadata: " + "; ".join(problems),
                "retrain the model, or restore the bundle from MLflow with a matching medml",
            )
        typed = _read_typed(d, source)
        return cls(**{k: d[k] for k in names if k not in _TYPED}, **typed)

    def with_version(self, version: int, **changes: Any) -> BundleMetadata:
        return replace(self, version=version, **changes)


def _problems(d: Mapping[str, Any]) -> list[str]:
    """Type problems in a metadata mapping, as short phrases; empty when all is well."""
    out = []
    for key in _TEXT:
        if not isinstance(d.get(key), str):
            out.append(f"{key} must be text, got {type(d.get(key)).__name__}")
    for key in _DICTS:
        if not isinstance(d.get(key), Mapping):
            out.append(f"{key} must be a dict, got {type(d.get(key)).__name__}")
    for key in ("version", "seed"):
        v = d.get(key)
        if v is not None and (isinstance(v, bool) or not _is_int(v)):
            out.append(f"{key} must be an integer or null, got {v!r}")
    v = d.get("version")
    if v is not None and _is_int(v) and not isinstance(v, bool) and int(v) < 0:
        out.append(f"version must be 1 or more (0 or null before registration), got {v}")
    if isinstance(d.get("name"), str) and not NAME_PATTERN.match(d["name"]):
        out.append(f"name {d['name']!r} is not a valid model name (letters, digits, '_', '.', '-')")
    created = d.get("created")
    if isinstance(created, str):
        try:
            when = datetime.fromisoformat(created)
        except ValueError:
            when = None
        if when is None or when.utcoffset() is None:
            out.append(f"created must be an ISO time with a UTC offset, got {created!r}")
    sizes = d.get("split_sizes")
    if isinstance(sizes, Mapping) and not all(_is_int(n) for n in sizes.values()):
        out.append("split_sizes values must be integers (rows per split)")
    if isinstance(d.get("excluded_columns"), Mapping) and not all(
        isinstance(r, str) for r in d["excluded_columns"].values()
    ):
        out.append("excluded_columns values must be text (the reason each column was left out)")
    return out


def _typed_problems(serving: Any, headline: Any) -> list[str]:
    """Problems with the typed parts a caller passed, as short phrases."""
    from medml.evaluate.schema import Headline

    out = []
    if serving is not None and not (isinstance(getattr(serving, "kind", None), str) and hasattr(serving, "to_dict")):
        out.append(f"serving must be a serving contract (a ServingSpec, say), got {type(serving).__name__}")
    if headline is not None and not isinstance(headline, Headline):
        out.append(f"headline must be a Headline (Headline.of(report)), got {type(headline).__name__}")
    return out


def _read_typed(d: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The stored serving contract and headline, typed, or IntegrityError saying which does not parse."""
    from medml.errors import DataError
    from medml.evaluate.schema import Headline
    from medml.registry.serving import legacy_serving, read_serving

    fix = "retrain the model with this medml, or restore the bundle from MLflow"
    out: dict[str, Any] = {}
    try:
        stored = d.get("serving")
        out["serving"] = read_serving(stored) if stored is not None else legacy_serving(d["params"], d["extra"])
    except (ValueError, IntegrityError) as e:
        what = e.what if isinstance(e, IntegrityError) else str(e)
        raise IntegrityError(f"{source}: the serving contract is not valid: {what}", fix) from None
    try:
        stored = d.get("headline")
        out["headline"] = Headline.from_dict(stored) if stored is not None else None
    except DataError as e:
        raise IntegrityError(f"{source}: the headline metrics are not valid: {e.what}", fix) from None
    return out


def _legacy_serving(params: Mapping[str, Any], extra: Mapping[str, Any]) -> ServingContract | None:
    from medml.registry.serving import legacy_serving

    try:
        return legacy_serving(params, extra)
    except IntegrityError as e:
        raise ValueError(e.what) from None


def _legacy_headline(metrics: Mapping[str, Any], evaluation: Mapping[str, Any], population: str) -> Headline | None:
    """The headline of metadata written before headlines were typed, or None when it records too little."""
    from medml.errors import DataError
    from medml.evaluate.schema import Headline

    if not metrics:
        return None
    try:
        return Headline.from_flat(metrics, evaluation, population)
    except DataError:
        return None


def _is_int(v: Any) -> bool:
    if isinstance(v, int) and not isinstance(v, bool):
        return True
    return type(v).__module__ == "numpy" and getattr(getattr(v, "dtype", None), "kind", "") in ("i", "u")


def headline(metrics: Mapping[str, Any], key: str) -> float | None:
    """A headline number from ``metrics``, whether stored as a number or an ``{"value": ...}`` dict."""
    v = metrics.get(key)
    if isinstance(v, Mapping):
        v = v.get("value")
    if isinstance(v, bool) or not isinstance(v, int | float) or math.isnan(float(v)):
        return None
    return float(v)


@dataclass(frozen=True)
class ModelBundle:
    """A fitted model, its inputs and its metadata.

    ``artifact`` "joblib": ``model`` is a scikit-learn-compatible classifier (with ``predict_proba``) and
    ``features`` its non-empty input schema. "torch-state-dict": ``model`` is a network's ``state_dict`` (name ->
    tensor), stored as tensors only; the code that rebuilds the network reads its config from ``metadata.params``,
    and ``features`` may be empty (an image model has no named columns).
    """

    model: Any
    features: list[FeatureSpec]
    metadata: BundleMetadata
    artifact: ArtifactKind = "joblib"

    def __post_init__(self) -> None:
        from medml.data.task import FeatureSpec

        name = self.metadata.name
        if self.artifact not in ARTIFACT_KINDS:
            raise ConfigError(
                f"unknown artifact kind {self.artifact!r} for {name!r}", f"use one of {', '.join(ARTIFACT_KINDS)}"
            )
        feats = list(self.features)
        if self.artifact == "torch-state-dict":
            if (
                not isinstance(self.model, Mapping)
                or not self.model
                or not all(isinstance(k, str) and hasattr(v, "shape") for k, v in self.model.items())
            ):
                raise ConfigError(
                    f"model for {name!r} is not a state_dict of tensors",
                    "bundle net.state_dict() (or ImageTrainResult.model_state)",
                )
        else:
            if not callable(getattr(self.model, "predict_proba", None)):
                raise ConfigError(
                    f"model for {name!r} is a {type(self.model).__name__} without predict_proba",
                    "bundle a fitted classifier",
                )
            if not feats:
                raise ConfigError(
                    f"features for {name!r} must be a non-empty list of FeatureSpec", "pass task.features"
                )
        if not all(isinstance(f, FeatureSpec) for f in feats):
            raise ConfigError(f"features for {name!r} must be a list of FeatureSpec", "pass task.features")
        names = [f.name for f in feats]
        if len(set(names)) != len(names):
            raise ConfigError(f"features for {name!r} repeat a column name", "give each feature one spec")
        n_in = getattr(self.model, "n_features_in_", None)
        if isinstance(n_in, int) and n_in != len(feats):
            raise ConfigError(
                f"model for {name!r} was fitted on {n_in} columns but {len(feats)} features are declared",
                "pass the feature specs of the columns the model was fitted on",
            )
        object.__setattr__(self, "features", feats)

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def version(self) -> int | None:
        return self.metadata.version

    @property
    def ref(self) -> str:
        return self.metadata.ref

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def with_metadata(self, metadata: BundleMetadata) -> ModelBundle:
        """The same model and artifact kind with other metadata (a version assigned, MLflow ids added)."""
        return replace(self, metadata=metadata)

    def predict_proba(self, X: Any) -> Any:
        """The model's class probabilities for ``X`` (columns in ``feature_names`` order); joblib bundles only."""
        if self.artifact != "joblib":
            raise ConfigError(
                f"{self.ref} holds {self.artifact} weights, not a classifier with predict_proba",
                "predict with the model's own workflow (medml image predict for image models)",
            )
        return self.model.predict_proba(X)
