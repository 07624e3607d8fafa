"""Image services: ``POST /imaging/{id}`` takes one DICOM file and answers with the deployed image model's
probabilities, its Grad-CAM heat map and what the model's evaluation says; ``GET /imaging`` lists the services.

Calls are verified like hook calls (the EHR's JWT, ``aud`` the endpoint's URL; a refused call is a bare 401) and
audited in the same hash-chained log: model, the file's sha256, the DICOM PatientID, status, duration and caller,
never the pixels. torch and MONAI are imported when the first image is scored, so the service starts and serves
hooks without them. Errors are JSON ``{"error": ...}`` that say what was wrong and what to do.
"""

from __future__ import annotations

import base64
import hashlib
import io
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from medml.errors import ConfigError, MedmlError
from medml.service import audit
from medml.service.auth import Caller
from medml.service.core import (
    HookError,
    ServiceState,
    audit_caller,
    authenticate,
    failure,
    json_response,
    record_call,
    state_of,
    unauthorised,
)
from medml.service.deploy import Deployment

#: Content-Types taken as a DICOM Part 10 file (application/dicom is the registered one, PS3.18)
DICOM_TYPES = ("application/dicom", "application/octet-stream")
DECISION_SUPPORT = (
    "Decision support, not a diagnosis: the model's probabilities and heat map inform, and do not "
    "replace, a clinician's reading of the image. Validate locally before use with other scanners, "
    "sites or populations."
)
_load_lock = threading.Lock()


@dataclass
class LoadedImageModel:
    """A deployed image model ready to score: its :class:`~medml.models.imaging.ImagePredictor` (networks built),
    which one request at a time may use (Grad-CAM hooks into the networks)."""

    deployment: Deployment
    bundle: Any
    predictor: Any
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class Upload:
    """What the caller sent: the DICOM bytes, the frame to take and the answer's format."""

    data: bytes
    frame: int | None
    fhir: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def listing(state: ServiceState) -> dict[str, Any]:
    """``GET /imaging``: each image service, what it takes and where to POST."""
    services = []
    for sid, dep in state.images.items():
        spec = dep.spec
        services.append(
            {
                "id": sid,
                "title": dep.title,
                "description": dep.description,
                "model": dep.model,
                "url": state.config.imaging_url(sid),
                "task": spec.get("task"),
                "classes": _classes(dep),
                "input": {
                    "image_size": spec.get("image_size"),
                    "channels": spec.get("in_channels"),
                    "content_type": "application/dicom",
                    "max_bytes": state.config.max_dicom_bytes,
                },
                "usageRequirements": (
                    "POST one DICOM file (Content-Type: application/dicom) with the EHR's JWT; "
                    "?frame=N for a multi-frame file, ?format=fhir for a FHIR R4 Bundle"
                ),
            }
        )
    return {"services": services}


router = APIRouter()
State = Annotated[ServiceState, Depends(state_of)]


@router.get("/imaging")
async def services(state: State) -> Response:
    state.refresh()
    return json_response(listing(state))


@router.post("/imaging/{service_id}")
async def score(service_id: str, request: Request, state: State) -> Response:
    started = time.perf_counter()
    caller = Caller.anonymous()
    model: str | None = None
    upload: Upload | None = None
    seen: dict[str, str] = {}
    try:
        state.refresh()
        dep = state.images.get(service_id)
        if dep is None:
            what = "a CDS Hooks service, not an image service" if service_id in state.scorers else "no image service"
            raise HookError(404, f"'{service_id}' is {what}; GET /imaging lists the image services")
        model = dep.model
        caller = await authenticate(state, request, state.config.imaging_url(service_id))
        upload = _upload(request, await request.body())
        response = await run_in_threadpool(answer, state, dep, upload, seen)
        status = 200
    except Exception as e:  # the caller gets a message or a reference; the call is audited either way
        response, status = failure(e, f"scoring an image for {service_id}", "the image was not scored")
    record_call(
        state,
        event="imaging",
        service=service_id,
        started=started,
        status=status,
        caller=audit_caller(caller, request),
        request=request,
        response=response if status == 200 else None,
        model=model,
        error=None if status == 200 else response.get("error", "unauthorised"),
        details=audit.EntryDetails(
            patient=seen.get("patient_id") or None,
            study_uid=seen.get("study_uid") or None,
            input_sha256=upload.sha256 if upload is not None else None,
            input_bytes=len(upload.data) if upload is not None else None,
        ),
    )
    if status == 401:
        return unauthorised("imaging")
    return json_response(response, status)


def _upload(request: Request, body: bytes) -> Upload:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in DICOM_TYPES:
        raise HookError(
            415,
            f"the body is {content_type or 'of no stated type'}; send one DICOM file with "
            "Content-Type: application/dicom",
        )
    if not body:
        raise HookError(400, "the body is empty; send one DICOM file with Content-Type: application/dicom")
    query = request.query_params
    unknown = sorted(set(query) - {"frame", "format"})
    if unknown:
        raise HookError(400, f"unknown query parameter(s) {unknown}; use frame=N and format=fhir")
    frame: int | None = None
    if "frame" in query:
        text = query["frame"]
        if not text.isdigit():
            raise HookError(400, f"frame={text!r} is not a frame index; give ?frame=N with N from 0")
        frame = int(text)
    fmt = query.get("format", "json")
    if fmt not in ("json", "fhir"):
        raise HookError(400, f"format={fmt!r} is not known; use format=json (the default) or format=fhir")
    return Upload(body, frame, fmt == "fhir")


def answer(state: ServiceState, dep: Deployment, upload: Upload, seen: dict[str, str]) -> dict[str, Any]:
    """Read the DICOM file, prepare its pixels for the network, score them and explain the score. ``seen`` gets
    the file's PatientID and StudyInstanceUID for the audit log as soon as they are read."""
    loaded = _model(state, dep)
    prepared = read_upload(upload, dep, loaded.predictor)
    seen.update(patient_id=prepared.patient_id, study_uid=prepared.study_id)
    image = prepared.pixels
    preparation = prepared.preparation()
    with loaded.lock:
        probabilities = np.asarray(loaded.predictor.predict(image[None]))[0]
        if upload.fhir:
            return _fhir(loaded, image, prepared, probabilities, upload)
        explained, heatmap = _heatmap(loaded, image, probabilities)
    md = loaded.bundle.metadata
    ensemble = int(md.params.get("ensemble") or 1)
    evaluation = dict(dep.evaluation)
    if state.config.pages_on:
        evaluation["model_card"] = f"{state.config.base_url}/models/{dep.name}/{dep.version}"
    return {
        "service": dep.service_id,
        "model": dep.model,
        "model_kind": md.model_kind,
        "task": dep.spec["task"],
        "task_description": md.task,
        "intended_use": dep.intended_use,
        "evaluation": evaluation,
        "probabilities": class_probabilities(dep, probabilities),
        "threshold": dep.thresholds[0] if dep.spec["task"] != "multiclass" else None,
        "dicom": {"study_instance_uid": prepared.study_id or None, "patient_id": prepared.patient_id or None},
        "preparation": preparation,
        "heatmap": {
            "method": f"Grad-CAM (MONAI) of the class '{explained}'"
            + (f", averaged over the ensemble's {ensemble} networks" if ensemble > 1 else ""),
            "class": explained,
            **heatmap,
        },
        "decision_support": DECISION_SUPPORT,
        # false only in a loopback demo run with --insecure-no-auth, as the hook cards say
        "authenticated": state.config.auth == "jwt",
    }


def _model(state: ServiceState, dep: Deployment) -> LoadedImageModel:
    """The deployment's model, loaded (and torch imported) on its first request."""
    loaded = state.image_models.get(dep.service_id)
    if loaded is not None and loaded.deployment == dep:
        return loaded
    with _load_lock:
        loaded = state.image_models.get(dep.service_id)
        if loaded is not None and loaded.deployment == dep:
            return loaded
        from medml.models.imaging import ImagePredictor, require_imaging
        from medml.registry import load_bundle

        try:
            require_imaging()
        except ConfigError as e:
            raise HookError(503, f"this service cannot score images: {e}") from None
        bundle = load_bundle(dep.model, state.settings)
        predictor = ImagePredictor.from_bundle(bundle)
        predictor.networks  # noqa: B018 (built now, under the load lock, not on the first Grad-CAM)
        loaded = LoadedImageModel(dep, bundle, predictor)
        state.image_models[dep.service_id] = loaded
        return loaded


def read_upload(upload: Upload, dep: Deployment, predictor: Any) -> Any:
    """The uploaded file read and prepared as the model's training images were (one preparation path,
    :meth:`~medml.models.imaging.ImagePredictor.prepare`, resized when its size differs); HookError 400 when it is
    not a DICOM image this service can read, 422 when its channels are not the model's."""
    from medml.data.images import ChannelMismatch, read_dicom_header

    try:
        header = read_dicom_header(upload.data)
    except MedmlError as e:
        raise HookError(
            400,
            f"the body is not a readable DICOM file ({e}); send one DICOM Part 10 file "
            "(with its 'DICM' header) as Content-Type: application/dicom",
        ) from None
    frames = header.frames
    if frames > 1 and upload.frame is None:
        raise HookError(
            400,
            f"the file is multi-frame ({frames} frames) and the model takes one image; "
            f"pass ?frame=N with N from 0 to {frames - 1}",
        )
    if upload.frame is not None and upload.frame >= frames:
        raise HookError(
            400,
            f"frame={upload.frame} is out of range: the file has {frames} frame(s); pass "
            f"?frame=N with N from 0 to {frames - 1}",
        )
    try:
        return predictor.prepare(
            upload.data,
            resize="always",
            kind="dicom",
            frame=upload.frame if frames > 1 else None,
            name="the uploaded file",
        )
    except ChannelMismatch as e:
        raise HookError(
            422,
            f"the image has {e.image_channels} channel(s) ({_channel_word(e.image_channels)}) but model "
            f"{dep.model} takes {e.model_channels} ({_channel_word(e.model_channels)}); send a "
            f"{_channel_word(e.model_channels)} image",
        ) from None
    except MedmlError as e:
        raise HookError(400, str(e)) from None


def _channel_word(channels: int) -> str:
    return "grayscale" if channels == 1 else "RGB" if channels == 3 else f"{channels}-channel"


def _classes(dep: Deployment) -> list[str]:
    spec = dep.spec
    if spec.get("task") == "binary":
        return [str(spec.get("target"))]
    names = list(spec.get("class_names") or [])
    return names if len(names) == int(spec.get("n_classes", 0)) else [str(i) for i in range(int(spec["n_classes"]))]


def class_probabilities(dep: Deployment, probabilities: npt.NDArray[Any]) -> dict[str, float]:
    """Class -> probability: of the positive class for a binary model, of each class (multiclass, summing to 1)
    or each label (multilabel) otherwise."""
    values = np.atleast_1d(np.asarray(probabilities, dtype=np.float64))
    names = _classes(dep)
    if len(values) != len(names):
        raise HookError(
            500, f"model {dep.model} returned {len(values)} probabilities for {len(names)} classes; redeploy the model"
        )
    return {name: float(v) for name, v in zip(names, values, strict=True)}


def _explained_class(dep: Deployment, probabilities: npt.NDArray[Any]) -> int:
    """The class the heat map explains: binary, the class called at the threshold; else the most probable."""
    values = np.atleast_1d(probabilities)
    if dep.spec["task"] == "binary":
        return int(values[0] >= dep.thresholds[0])
    return int(np.argmax(values))


def _heatmap(
    loaded: LoadedImageModel, image: npt.NDArray[np.float32], probabilities: npt.NDArray[Any]
) -> tuple[str, dict[str, Any]]:
    from PIL import Image

    from medml.explain.saliency import ensemble_grad_cam, overlay_png

    dep = loaded.deployment
    predictor = loaded.predictor
    k = _explained_class(dep, probabilities)
    names = list(dep.spec.get("class_names") or [])
    explained = names[k] if k < len(names) else str(k)
    x = predictor.network_input(image[None])
    cam = ensemble_grad_cam(predictor.networks, x, class_index=k, score=predictor.score)[0]
    shown = float(np.atleast_1d(probabilities)[k if dep.spec["task"] != "binary" else 0])
    label = dep.spec["target"] if dep.spec["task"] == "binary" else explained
    overlay = overlay_png(image, cam, title=f"P({label}) {shown:.2f}")
    buffer = io.BytesIO()
    Image.fromarray(np.round(cam * 255).astype(np.uint8)).save(buffer, format="PNG")
    return explained, {
        "overlay_png": base64.b64encode(overlay).decode("ascii"),
        "map_png": base64.b64encode(buffer.getvalue()).decode("ascii"),
        "map_size": [int(cam.shape[0]), int(cam.shape[1])],
        "note": (
            "overlay_png: the prepared image with the heat map over it; map_png: the heat map alone at the "
            "network's input size, 0-255 (255 = most salient)"
        ),
    }


def _fhir(
    loaded: LoadedImageModel,
    image: npt.NDArray[np.float32],
    prepared: Any,
    probabilities: npt.NDArray[Any],
    upload: Upload,
) -> dict[str, Any]:
    """A FHIR R4 collection Bundle with the image's DiagnosticReport (its heat map as a presentedForm)."""
    from medml.explain.saliency import ensemble_grad_cam, overlay_png
    from medml.models.imaging import ImageSource

    predictor = loaded.predictor
    label = f"uploaded DICOM sha256:{upload.sha256[:16]}"
    source = ImageSource(label, Path(label), prepared.study_id, prepared.patient_id)
    maps = ensemble_grad_cam(predictor.networks, predictor.network_input(image[None]), score=predictor.score)
    png = overlay_png(image, maps[0], title=predictor.headline(probabilities))
    bundle: dict[str, Any] = predictor.fhir_bundle([source], np.asarray(probabilities)[None], heatmap_pngs=[png])
    return bundle


__all__ = ["answer", "listing", "router"]
