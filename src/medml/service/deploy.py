"""Which registered models are CDS services: ``medml deploy MODEL[@VERSION]`` and ``medml undeploy ID``.

A tabular risk model becomes a ``patient-view`` CDS service (kind ``cds-hook``); an image model (``medml image
train``) an image service (kind ``image``) at ``POST /imaging/{id}``, which takes a DICOM file and is not a hook.

A deployment pins one model version and keeps, typed, everything the service needs to score from FHIR without task
code: the bundle's serving contract (feature definition, index-time rule), the thresholds of the card's indicator
and the bundle's headline evaluation (calibration, evaluation population) to show. Deployments live in
``MEDML_HOME/service/deployments.json``, written atomically under a lock, so a crash never leaves the file
half-written.
"""

from __future__ import annotations

import fcntl
import math
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from medml.config import Settings
from medml.errors import ConfigError, DataError, IntegrityError, NotFoundError, clip, quote
from medml.evaluate.schema import CalibrationCurve, Estimate, Headline
from medml.fhir.features import ServingSpec
from medml.registry import BundleMetadata, ModelBundle, load_bundle, show_model
from medml.registry.serving import ImageServing
from medml.registry.store import WEIGHTS
from medml.service.config import ServiceConfig
from medml.service.survival import survival_serving, survival_thresholds

SERVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
RISK_ASSESSMENT_MODES = ("suggestion", "system-action", "none")
#: a CDS Hooks service scored from FHIR, or an image service that takes a DICOM file
HOOK_KIND, IMAGE_KIND = "cds-hook", "image"
#: the probability at which an image model calls its finding present (as its report and FHIR output do)
IMAGE_THRESHOLD = 0.5


@dataclass(frozen=True)
class HookService:
    """What a CDS hook needs beyond its model, typed: how it reads a patient from FHIR (from the bundle's serving
    contract) and the test-set evaluation every card shows (the bundle's headline; None for a deployment stored
    without one)."""

    spec: ServingSpec
    evaluation: Headline | None

    def to_dict(self) -> dict[str, Any]:
        evaluation = None if self.evaluation is None else self.evaluation.to_dict()
        return {"serving": self.spec.to_dict(), "evaluation": evaluation}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HookService:
        """Read :meth:`to_dict`'s output, or a deployment stored before hooks were typed (``spec`` and a summary)."""
        stored = d.get("evaluation")
        if stored is None or stored == {}:
            evaluation = None
        elif isinstance(stored, Mapping) and "calibration_curve" in stored:
            evaluation = _legacy_summary(stored)
        else:
            evaluation = Headline.from_dict(stored)
        return cls(ServingSpec.from_dict(d["serving"] if "serving" in d else d["spec"]), evaluation)


@dataclass(frozen=True)
class ImageService:
    """What an image service takes and returns (input size, channels, task, classes and how images are read) and
    the test-set evaluation sent with every answer, as the JSON the image API sends."""

    spec: dict[str, Any]
    evaluation: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, "evaluation": self.evaluation}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ImageService:
        if not isinstance(d["spec"], Mapping) or not isinstance(d["evaluation"], Mapping):
            raise TypeError("an image service's spec and evaluation must be JSON objects")
        return cls(dict(d["spec"]), dict(d["evaluation"]))


@dataclass(frozen=True)
class Deployment:
    """A model served as a ``patient-view`` CDS service (``served`` a :class:`HookService`) or as an image service
    (an :class:`ImageService`), parsed once when the deployments are read."""

    service_id: str
    model: str
    title: str
    description: str
    #: risk at or above ``thresholds[0]`` is a warning, at or above ``thresholds[1]`` critical; below is info (an
    #: image service: its decision threshold twice, no card indicator)
    thresholds: tuple[float, float]
    thresholds_note: str
    served: HookService | ImageService
    intended_use: str
    #: how the card offers the FHIR RiskAssessment
    risk_assessment: str = "suggestion"
    hook: str = "patient-view"
    deployed: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    #: a challenger scored silently beside this model on every call (no card), its scores recorded as shadow
    shadow: Deployment | None = None

    @property
    def kind(self) -> str:
        return HOOK_KIND if isinstance(self.served, HookService) else IMAGE_KIND

    @property
    def is_hook(self) -> bool:
        return isinstance(self.served, HookService)

    @property
    def serving(self) -> ServingSpec:
        """A hook's FHIR reading of a patient: features, outcome and index-time rule."""
        return self._hook().spec

    @property
    def headline(self) -> Headline | None:
        """A hook's test-set evaluation, as its cards show it."""
        return self._hook().evaluation

    @property
    def spec(self) -> dict[str, Any]:
        """An image service's network: input size, channels, task, classes and how images are read."""
        return self._image().spec

    @property
    def evaluation(self) -> dict[str, Any]:
        """An image service's test-set evaluation, as sent with every answer."""
        return self._image().evaluation

    def _hook(self) -> HookService:
        if not isinstance(self.served, HookService):
            raise ConfigError(f"service {self.service_id!r} is an image service, not a CDS hook scored from FHIR")
        return self.served

    def _image(self) -> ImageService:
        if not isinstance(self.served, ImageService):
            raise ConfigError(f"service {self.service_id!r} is a CDS hook, not an image service")
        return self.served

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
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("served", "shadow")}
        if self.shadow is not None:
            out["shadow"] = self.shadow.to_dict()
        return {**out, "thresholds": list(self.thresholds), "kind": self.kind, **self.served.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Deployment:
        """A stored deployment, typed; one stored before image services (no kind) is a hook."""
        if not isinstance(d, Mapping):
            raise IntegrityError(f"a stored deployment is a {type(d).__name__}, not a JSON object", "deploy again")
        kind = d.get("kind", HOOK_KIND)
        if kind not in (HOOK_KIND, IMAGE_KIND):
            raise IntegrityError(
                f"deployment {d.get('service_id')!r} is of unknown kind {kind!r}",
                "undeploy it and deploy the model again with this medml version",
            )
        try:
            served = HookService.from_dict(d) if kind == HOOK_KIND else ImageService.from_dict(d)
            low, high = (float(t) for t in d["thresholds"])
            skip = ("serving", "spec", "evaluation", "kind", "thresholds", "shadow")
            rest = {k: v for k, v in d.items() if k not in skip}
            shadow = cls.from_dict(d["shadow"]) if d.get("shadow") is not None else None
            return cls(**rest, thresholds=(low, high), served=served, shadow=shadow)
        except (TypeError, KeyError, ValueError, ConfigError, DataError) as e:
            what = e.what if isinstance(e, ConfigError | DataError) else f"{type(e).__name__}: {e}"
            raise IntegrityError(
                f"a stored deployment is not valid: {what}", "undeploy it and deploy the model again"
            ) from None


def _legacy_summary(ev: Mapping[str, Any]) -> Headline:
    """The card summary of a deployment stored before hooks were typed (numbers as ``[value, low, high]``)."""

    def estimate(v: Any) -> Estimate:
        value, low, high = [*(v if isinstance(v, list) else [v]), None, None, None][:3]
        return Estimate.from_dict({"value": value, "low": low, "high": high})

    events = ev.get("n_events")
    return Headline(
        split=str(ev.get("split", "test")),
        population=str(ev.get("population", "")),
        n=int(ev["n"]),
        n_events=None if events is None else int(events),
        auroc=estimate(ev.get("auroc")),
        auprc=Estimate(math.nan),
        brier=Estimate(math.nan),
        calibration_slope=estimate(ev.get("calibration_slope")),
        calibration_intercept=estimate(ev.get("calibration_intercept")),
        ici=estimate(ev.get("ici")).value,
        curve=CalibrationCurve.from_dict(ev.get("calibration_curve") or {}),
    )


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
    h = bundle.metadata.headline
    rate = None if h is None else h.event_rate
    if rate is None or not 0 < rate < 0.3:
        return (0.15, 0.40), "medml's defaults: the model's evaluation has no usable event rate"
    low = round(rate, 2)
    high = round(min(3 * rate, 0.5), 2)
    return (low, high), (
        "warning at the event rate of the model's test set (above-average risk), critical at three times it"
    )


def deployable(bundle: ModelBundle) -> ServingSpec:
    """The model's FHIR serving contract, or a ConfigError saying why this model cannot be a CDS service."""
    if bundle.artifact != "joblib":
        raise ConfigError(
            f"{bundle.ref} is an image model; the patient-view service scores tabular risk models",
            "deploy a risk model trained from FHIR, e.g. one from `medml train physionet-2012-fhir`",
        )
    spec = bundle.metadata.serving
    if not isinstance(spec, ServingSpec):
        raise ConfigError(
            f"{bundle.ref} carries no FHIR reading: it was trained on table columns of "
            f"'{bundle.metadata.dataset}', which has none, or saved before bundles carried their serving contract",
            "deploy a model trained on physionet-2012 or physionet-2012-fhir with this medml version",
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
    replace_existing: bool = False,
) -> Deployment:
    """Make a registered model a CDS service, or an image model an image service; returns the deployment. An image
    model's weights are not read, so deploying needs no torch.

    Over a deployment of the same id that alerts differently (another model, thresholds, RiskAssessment mode or
    kind), only with ``replace_existing``: a redeployment must not change when clinicians are alerted without
    saying so. A new version of the same model with the same thresholds replaces the old one.
    """
    shown = show_model(ref, settings)
    if WEIGHTS in {f["name"] for f in shown["files"]}:
        if thresholds is not None or risk_assessment != "suggestion":
            raise ConfigError(
                f"{shown['ref']} is an image model: its service answers with probabilities, not "
                "cards, so --thresholds and --risk-assessment do not apply",
                "leave them out",
            )
        metadata = BundleMetadata.from_dict(shown["metadata"], f"{shown['ref']} metadata")
        return _store(
            config, image_deployment(metadata, _service_id(service_id or metadata.name), title), replace_existing
        )
    bundle = load_bundle(ref, settings)
    spec = deployable(bundle)
    survival = survival_serving(bundle)  # a survival model: its horizons must be servable (ConfigError if not)
    sid = _service_id(service_id or bundle.name)
    if risk_assessment not in RISK_ASSESSMENT_MODES:
        raise ConfigError(
            f"unknown RiskAssessment mode {quote(risk_assessment)}", f"use one of {', '.join(RISK_ASSESSMENT_MODES)}"
        )
    if thresholds is None:
        chosen, note = default_thresholds(bundle) if survival is None else survival_thresholds(survival)
    else:
        chosen, note = check_thresholds(thresholds), "set at deployment"
    md = bundle.metadata
    headline = md.headline
    if headline is not None and md.population:
        headline = replace(headline, population=md.population)  # the card names the development population
    dep = Deployment(
        service_id=sid,
        model=bundle.ref,
        thresholds=chosen,
        thresholds_note=note,
        served=HookService(spec, headline),
        title=title or f"Risk of {spec.outcome} ({md.name})",
        description=(
            f"{md.task}: the calibrated risk from model {bundle.ref}, with its top factors, calibration "
            "and evaluation population. Decision support, not a diagnosis."
        )
        if survival is None
        else (
            f"{md.task}: the risk of {survival.outcome} by "
            f"{', '.join(survival.label(h) for h in survival.horizons)} from survival model {bundle.ref}, with its "
            "top factors, evaluation at each horizon and censoring. Decision support, not a diagnosis."
        ),
        intended_use=md.intended_use,
        risk_assessment=risk_assessment,
    )
    return _store(config, dep, replace_existing)


def deploy_shadow(
    settings: Settings,
    config: ServiceConfig,
    ref: str,
    *,
    service_id: str | None = None,
    thresholds: tuple[float, float] | None = None,
) -> Deployment:
    """Score the registered model ``ref`` silently beside the model of the deployed service ``service_id`` (default:
    the model's name): on every call of that service, after the champion has answered, with no card; its scores are
    recorded in the monitoring store with ``shadow`` true, for the comparison before a promotion. Returns the
    champion's deployment, now with its shadow.

    The challenger must read nothing the champion's prefetch does not bring (it sees the same request)."""
    bundle = load_bundle(ref, settings)
    spec = deployable(bundle)
    sid = _service_id(service_id or bundle.name)
    if thresholds is None:
        chosen, note = default_thresholds(bundle)
    else:
        chosen, note = check_thresholds(thresholds), "set at deployment"
    with _locked(config):
        current = _read(config)
        champion = current.get(sid)
        if champion is None:
            raise NotFoundError(
                f"no deployed service {quote(sid)} to shadow",
                f"deploy the champion first (`medml deploy NAME@VERSION`), or name its service with --id "
                f"(deployed: {', '.join(current) or 'none'})",
            )
        if not champion.is_hook:
            raise ConfigError(f"service {quote(sid)} is an image service", "shadow a CDS hook service")
        if champion.model == bundle.ref:
            raise ConfigError(
                f"{bundle.ref} is the model service {quote(sid)} serves; a model cannot shadow itself",
                "give the challenger, another version or model",
            )
        uncovered = shadow_uncovered(champion.serving, spec)
        if uncovered:
            raise ConfigError(
                f"{bundle.ref} reads what the prefetch of {champion.model} does not bring: "
                f"{clip(', '.join(uncovered))}",
                "shadow a challenger built on the same FHIR definition (or a subset of it)",
            )
        md = bundle.metadata
        challenger = Deployment(
            service_id=sid,
            model=bundle.ref,
            thresholds=chosen,
            thresholds_note=note,
            served=HookService(spec, md.headline),
            title=f"shadow of {champion.title}",
            description=f"{md.task}: challenger {bundle.ref}, scored silently beside {champion.model}",
            intended_use=md.intended_use,
            risk_assessment="none",
        )
        current[sid] = replace(champion, shadow=challenger)
        _write(config, current)
    return current[sid]


def shadow_uncovered(champion: ServingSpec, challenger: ServingSpec) -> list[str]:
    """What the challenger reads that the champion's prefetch does not fetch: codes, or the encounters."""
    missing = sorted(set(challenger.definition.codes()) - set(champion.definition.codes()))
    if challenger.anchor == "encounter-start" and champion.anchor != "encounter-start":
        missing.insert(0, "the patient's encounters")
    return missing


def _service_id(sid: str) -> str:
    if not SERVICE_ID.match(sid):
        raise ConfigError(f"service id {quote(sid)} is not valid", "use letters, digits, '.', '_' or '-' (64 at most)")
    return sid


def _store(config: ServiceConfig, dep: Deployment, replace_existing: bool) -> Deployment:
    with _locked(config):
        current = _read(config)
        old = current.get(dep.service_id)
        changes = [] if old is None else changed(old, dep)
        if changes and not replace_existing:
            raise ConfigError(
                f"service {quote(dep.service_id)} is deployed already, and this deployment would change "
                f"{'; '.join(changes)}",
                "pass --replace to replace it, --thresholds to keep the old thresholds, or --id to deploy beside it",
            )
        if old is not None and old.shadow is not None and dep.is_hook and dep.shadow is None:
            # the challenger stays beside a new champion, unless it is the new champion (promoted)
            keep = old.shadow.model != dep.model and not shadow_uncovered(dep.serving, old.shadow.serving)
            dep = replace(dep, shadow=old.shadow if keep else None)
        current[dep.service_id] = dep
        _write(config, current)
    return dep


def changed(old: Deployment, new: Deployment) -> list[str]:
    """What a redeployment changes in when and how the service alerts, each ``what from old to new``."""
    out = []
    if old.kind != new.kind:
        out.append(f"its kind from {old.kind} to {new.kind}")
    if old.name != new.name:
        out.append(f"its model from {old.model} to {new.model}")
    if old.thresholds != new.thresholds:
        out.append(
            f"its thresholds (warning,critical) from {old.thresholds[0]:g},{old.thresholds[1]:g} to "
            f"{new.thresholds[0]:g},{new.thresholds[1]:g} ({new.thresholds_note})"
        )
    if old.risk_assessment != new.risk_assessment:
        out.append(f"its RiskAssessment mode from {old.risk_assessment} to {new.risk_assessment}")
    return out


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
            "input": md.serving.preparation.to_dict() if isinstance(md.serving, ImageServing) else {},
        }
    except (KeyError, TypeError, ValueError) as e:
        raise IntegrityError(
            f"{md.ref}: the stored network config is not valid ({e})", "retrain the model with this medml version"
        ) from None
    h = md.headline
    evaluation = {
        "auroc": _values(h.auroc) if h else [None, None, None],
        "auroc_of": "the positive class" if spec["task"] == "binary" else "each class against the rest, macro mean",
        # the calibration of the probabilities returned (for multiclass and multilabel: over all (image, class) pairs)
        "calibration": {
            "slope": _values(h.calibration_slope)[0] if h else None,
            "intercept": _values(h.calibration_intercept)[0] if h else None,
            "brier": _values(h.brier)[0] if h else None,
        },
        "n": h.n if h else None,
        "n_events": h.n_events if h else None,
        "split": h.split if h else "test",
        "population": md.population or (h.population if h else ""),
        "dataset": md.dataset,
        "calibration_method": md.calibration,
        "report": f"medml image report {md.ref}",
    }
    return Deployment(
        service_id=service_id,
        model=md.ref,
        hook="",
        served=ImageService(spec, evaluation),
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


def _values(e: Estimate) -> list[float | None]:
    """``[value, low, high]``, None where not measured: the shape the image API answers with."""
    d = e.to_dict()
    return [d["value"], d["low"], d["high"]]


def undeploy(config: ServiceConfig, service_id: str) -> Deployment:
    with _locked(config):
        current = _read(config)
        if service_id not in current:
            raise NotFoundError(
                f"no deployed service {quote(service_id)}",
                f"deployed: {', '.join(current) or 'none'} (see `medml deployments`)",
            )
        gone = current.pop(service_id)
        _write(config, current)
    return gone


def undeploy_shadow(config: ServiceConfig, service_id: str) -> Deployment:
    """Stop scoring the shadow of ``service_id``; returns the challenger that was removed."""
    with _locked(config):
        current = _read(config)
        dep = current.get(service_id)
        if dep is None or dep.shadow is None:
            raise NotFoundError(
                f"service {quote(service_id)} has no shadow" if dep else f"no deployed service {quote(service_id)}",
                "see `medml deployments`",
            )
        gone = dep.shadow
        current[service_id] = replace(dep, shadow=None)
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
