"""Which registered models are CDS services: ``medml deploy MODEL[@VERSION]`` and ``medml undeploy ID``.

A tabular risk model becomes a ``patient-view`` CDS service (kind ``cds-hook``); an image model (``medml image
train``) an image service (kind ``image``) at ``POST /imaging/{id}``, which takes a DICOM file and is not a hook.

A deployment pins one model version and stores everything the service needs to score from FHIR without task code:
the feature definition, the index-time rule, the thresholds of the card's indicator and the calibration and
evaluation population to show. Deployments live in ``MEDML_HOME/service/deployments.json``, written atomically
under a lock, so a crash never leaves the file half-written.
"""

from __future__ import annotations

import fcntl
import math
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from medml.config import Settings
from medml.errors import ConfigError, IntegrityError, NotFoundError
from medml.fhir.tasks import ServingSpec, serving_spec
from medml.registry import BundleMetadata, ModelBundle, load_bundle, show_model
from medml.registry.store import WEIGHTS
from medml.service.config import ServiceConfig

SERVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
RISK_ASSESSMENT_MODES = ("suggestion", "system-action", "none")
#: a CDS Hooks service scored from FHIR, or an image service that takes a DICOM file
HOOK_KIND, IMAGE_KIND = "cds-hook", "image"
#: the probability at which an image model calls its finding present (as its report and FHIR output do)
IMAGE_THRESHOLD = 0.5


@dataclass(frozen=True)
class Deployment:
    """A model served as a ``patient-view`` CDS service or, ``kind == "image"``, as an image service.

    For an image service ``spec`` holds what the network takes and returns (input size, channels, task, classes)
    and ``thresholds`` is the decision threshold twice (no card indicator)."""

    service_id: str
    model: str
    title: str
    description: str
    #: risk at or above ``thresholds[0]`` is a warning, at or above ``thresholds[1]`` critical; below is info
    thresholds: tuple[float, float]
    thresholds_note: str
    spec: dict[str, Any]
    #: the test-set evaluation summary shown on every card: calibration, discrimination, population
    evaluation: dict[str, Any]
    intended_use: str
    #: how the card offers the FHIR RiskAssessment
    risk_assessment: str = "suggestion"
    hook: str = "patient-view"
    deployed: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    #: deployments stored before image services existed have no kind: they are hooks
    kind: str = HOOK_KIND

    @property
    def is_hook(self) -> bool:
        return self.kind == HOOK_KIND

    @property
    def serving(self) -> ServingSpec:
        return ServingSpec.from_dict(self.spec)

    @property
    def name(self) -> str:
        return self.model.split("@")[0]

    @property
    def version(self) -> int:
        return int(self.model.split("@")[1])

    def category(self, risk: float) -> str:
        """The card indicator for a risk: info, warning or critical."""
        low, high = self.thresholds
        return "critical" if risk >= high else "warning" if risk >= low else "info"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Deployment:
        try:
            dep = cls(**{**d, "thresholds": tuple(d["thresholds"])})
        except (TypeError, KeyError) as e:
            raise IntegrityError(
                f"a stored deployment is not valid: {e}", "undeploy it and deploy the model again"
            ) from None
        if dep.kind not in (HOOK_KIND, IMAGE_KIND):
            raise IntegrityError(
                f"deployment {dep.service_id!r} is of unknown kind {dep.kind!r}",
                "undeploy it and deploy the model again with this medml version",
            )
        if dep.is_hook:
            dep.serving  # noqa: B018 - validates the stored spec now, not on the first request
        return dep


def check_thresholds(thresholds: tuple[float, float]) -> tuple[float, float]:
    low, high = (float(t) for t in thresholds)
    if not (0 < low < high < 1) or math.isnan(low + high):
        raise ConfigError(
            f"thresholds must be two risks with 0 < warning < critical < 1, got {low:g}, {high:g}",
            "pass e.g. --thresholds 0.15,0.40 (warning, critical)",
        )
    return low, high


def default_thresholds(bundle: ModelBundle) -> tuple[tuple[float, float], str]:
    """Warning at the test-set event rate (above-average risk), critical at three times it (at most 0.5)."""
    rate = _event_rate(bundle.metadata.evaluation)
    if rate is None or not 0 < rate < 0.3:
        return (0.15, 0.40), "medml's defaults: the model's evaluation has no usable event rate"
    low = round(rate, 2)
    high = round(min(3 * rate, 0.5), 2)
    return (low, high), (
        "warning at the event rate of the model's test set (above-average risk), critical at three times it"
    )


def _event_rate(evaluation: Mapping[str, Any]) -> float | None:
    n = evaluation.get("n")
    events = evaluation.get("n_events")
    if isinstance(n, int | float) and isinstance(events, int | float) and n > 0:
        return float(events) / float(n)
    return None


def evaluation_summary(bundle: ModelBundle) -> dict[str, Any]:
    """What a card says about how the model did: AUROC, calibration (with the decile curve) and the population."""
    md = bundle.metadata
    ev = md.evaluation
    cal = _mapping(ev.get("calibration"))
    curve = _mapping(cal.get("curve"))
    return {
        "auroc": [md.metrics.get("auroc"), md.metrics.get("auroc_low"), md.metrics.get("auroc_high")],
        "calibration_slope": _value(cal.get("slope")),
        "calibration_intercept": _value(cal.get("intercept")),
        "ici": _value(cal.get("ici")),
        "calibration_curve": {k: list(curve.get(k, [])) for k in ("predicted", "observed", "count")},
        "n": ev.get("n"),
        "n_events": ev.get("n_events"),
        "split": ev.get("split", "test"),
        "population": md.population or ev.get("population", ""),
        "dataset": md.dataset,
        "calibration_method": md.calibration,
    }


def _mapping(v: Any) -> Mapping[str, Any]:
    return v if isinstance(v, Mapping) else {}


def _value(v: Any) -> list[float | None]:
    """[value, low, high] from a number or an ``{"value", "low", "high"}`` dict."""
    if isinstance(v, Mapping):
        return [v.get("value"), v.get("low"), v.get("high")]
    return [v if isinstance(v, int | float) else None, None, None]


def deployable(bundle: ModelBundle) -> ServingSpec:
    """The model's FHIR serving spec, or a ConfigError saying why this model cannot be a CDS service."""
    if bundle.artifact != "joblib":
        raise ConfigError(
            f"{bundle.ref} is an image model; the patient-view service scores tabular risk models",
            "deploy a risk model trained from FHIR, e.g. one from `medml train physionet-2012-fhir`",
        )
    stored = bundle.metadata.extra.get("serving")
    spec = ServingSpec.from_dict(stored) if isinstance(stored, Mapping) else serving_spec(bundle.metadata.dataset)
    if spec is None:
        raise ConfigError(
            f"{bundle.ref} was trained on table columns of '{bundle.metadata.dataset}', which has no FHIR reading",
            "deploy a model trained on physionet-2012 or physionet-2012-fhir",
        )
    columns = spec.definition.columns()
    if sorted(columns) != sorted(bundle.feature_names):
        missing = sorted(set(bundle.feature_names) - set(columns))[:5]
        raise ConfigError(
            f"{bundle.ref} reads columns the FHIR definition does not build ({missing})",
            "retrain the model with this medml version",
        )
    return spec


def deploy(
    settings: Settings,
    config: ServiceConfig,
    ref: str,
    *,
    service_id: str | None = None,
    thresholds: tuple[float, float] | None = None,
    title: str | None = None,
    risk_assessment: str = "suggestion",
) -> Deployment:
    """Make a registered model a CDS service, or an image model an image service (replacing a deployment of the
    same id); returns the deployment. An image model's weights are not read, so deploying needs no torch."""
    shown = show_model(ref, settings)
    if WEIGHTS in {f["name"] for f in shown["files"]}:
        if thresholds is not None or risk_assessment != "suggestion":
            raise ConfigError(
                f"{shown['ref']} is an image model: its service answers with probabilities, not "
                "cards, so --thresholds and --risk-assessment do not apply",
                "leave them out",
            )
        metadata = BundleMetadata.from_dict(shown["metadata"], f"{shown['ref']} metadata")
        return _store(config, image_deployment(metadata, _service_id(service_id or metadata.name), title))
    bundle = load_bundle(ref, settings)
    spec = deployable(bundle)
    sid = _service_id(service_id or bundle.name)
    if risk_assessment not in RISK_ASSESSMENT_MODES:
        raise ConfigError(
            f"unknown RiskAssessment mode {risk_assessment!r}", f"use one of {', '.join(RISK_ASSESSMENT_MODES)}"
        )
    if thresholds is None:
        chosen, note = default_thresholds(bundle)
    else:
        chosen, note = check_thresholds(thresholds), "set at deployment"
    md = bundle.metadata
    dep = Deployment(
        service_id=sid,
        model=bundle.ref,
        thresholds=chosen,
        thresholds_note=note,
        spec=spec.to_dict(),
        title=title or f"Risk of {spec.outcome} ({md.name})",
        description=(
            f"{md.task}: the calibrated risk from model {bundle.ref}, with its top factors, calibration "
            "and evaluation population. Decision support, not a diagnosis."
        ),
        evaluation=evaluation_summary(bundle),
        intended_use=md.intended_use,
        risk_assessment=risk_assessment,
    )
    return _store(config, dep)


def _service_id(sid: str) -> str:
    if not SERVICE_ID.match(sid):
        raise ConfigError(f"service id {sid!r} is not valid", "use letters, digits, '.', '_' or '-' (64 at most)")
    return sid


def _store(config: ServiceConfig, dep: Deployment) -> Deployment:
    with _locked(config):
        current = _read(config)
        current[dep.service_id] = dep
        _write(config, current)
    return dep


def image_deployment(md: BundleMetadata, service_id: str, title: str | None = None) -> Deployment:
    """An image model as an image service, from its metadata alone: what the network takes and returns, and the
    test evaluation to show with every answer."""
    net = md.params.get("net")
    if not md.model_kind.startswith("image-") or not isinstance(net, Mapping):
        raise ConfigError(
            f"{md.ref} has image weights but no image network config (model kind {md.model_kind})",
            "retrain the model with `medml image train`",
        )
    try:
        spec = {
            "task": str(net["task"]),
            "image_size": [int(v) for v in net["image_size"]],
            "in_channels": int(net["in_channels"]),
            "n_classes": int(net["n_classes"]),
            "class_names": [str(c) for c in md.extra.get("class_names", [])],
            "target": md.target,
            "model_kind": md.model_kind,
            # how the training images were read (DICOM window, frame, resizing): new images are read the same way
            "input": dict(md.params.get("input") or {}),
        }
    except (KeyError, TypeError, ValueError) as e:
        raise IntegrityError(
            f"{md.ref}: the stored network config is not valid ({e})", "retrain the model with this medml version"
        ) from None
    ev = md.evaluation
    m = md.metrics
    evaluation = {
        "auroc": [m.get("auroc"), m.get("auroc_low"), m.get("auroc_high")],
        "auroc_of": "the positive class" if spec["task"] == "binary" else "each class against the rest, macro mean",
        # the calibration of the probabilities returned (for multiclass and multilabel: over all (image, class) pairs)
        "calibration": {
            "slope": m.get("calibration_slope"),
            "intercept": m.get("calibration_intercept"),
            "brier": m.get("brier"),
        },
        "n": m.get("n", ev.get("n")),
        "n_events": m.get("n_events", ev.get("n_events")),
        "split": ev.get("split", "test"),
        "population": md.population or ev.get("population", ""),
        "dataset": md.dataset,
        "calibration_method": md.calibration,
        "report": f"medml image report {md.ref}",
    }
    return Deployment(
        service_id=service_id,
        model=md.ref,
        kind=IMAGE_KIND,
        hook="",
        spec=spec,
        evaluation=evaluation,
        thresholds=(IMAGE_THRESHOLD, IMAGE_THRESHOLD),
        thresholds_note=f"the finding is called present at probability {IMAGE_THRESHOLD:g}, as in the model's report",
        title=title or f"{md.target} on an image ({md.name})",
        description=(
            f"{md.task}: POST a DICOM file; the probabilities from model {md.ref} with a Grad-CAM heat "
            "map. Decision support, not a diagnosis."
        ),
        intended_use=md.intended_use,
        risk_assessment="none",
    )


def undeploy(config: ServiceConfig, service_id: str) -> Deployment:
    with _locked(config):
        current = _read(config)
        if service_id not in current:
            raise NotFoundError(
                f"no deployed service {service_id!r}",
                f"deployed: {', '.join(current) or 'none'} (see `medml deployments`)",
            )
        gone = current.pop(service_id)
        _write(config, current)
    return gone


def deployments(config: ServiceConfig) -> dict[str, Deployment]:
    """The deployed services, by id (empty when nothing is deployed)."""
    return _read(config)


def _read(config: ServiceConfig) -> dict[str, Deployment]:
    path = config.deployments_path
    if not path.is_file():
        return {}
    try:
        raw = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as e:
        raise IntegrityError(f"{path} is not valid JSON ({e})", "restore it, or remove it and deploy again") from None
    if not isinstance(raw, dict):
        raise IntegrityError(f"{path} is not a JSON object", "remove it and deploy again")
    return {k: Deployment.from_dict(v) for k, v in raw.items()}


def _write(config: ServiceConfig, deps: Mapping[str, Deployment]) -> None:
    path = config.deployments_path
    data = orjson.dumps({k: d.to_dict() for k, d in deps.items()}, option=orjson.OPT_INDENT_2)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".deployments.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def _locked(config: ServiceConfig) -> Iterator[None]:
    config.home.mkdir(parents=True, exist_ok=True)
    with open(config.home / ".deployments.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
