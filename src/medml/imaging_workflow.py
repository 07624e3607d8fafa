"""Image classifiers through the spine: load, split, train, predict the held-out test split, evaluate, register
the weights (a torch ``state_dict``, never a pickled module) with their network config, and write the report.

Binary tasks only for now: multiclass and multilabel image models train (``medml.models.imaging``) but their
evaluation report is not written yet. torch and MONAI are imported only when a model is trained or run.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from medml import __version__
from medml.config import Settings
from medml.data import Predictions
from medml.data.images import ImageDataset, load_images
from medml.data.splits import Split
from medml.errors import ConfigError, DataError, IntegrityError
from medml.evaluate import EvaluationReport, evaluate_binary, headline
from medml.models.imaging.calibration import PlattScaling
from medml.registry import BundleMetadata, ModelBundle, register
from medml.report import write_report
from medml.workflow import report_inputs

if TYPE_CHECKING:
    import torch

    from medml.models.imaging import EpochRecord, ImageNetConfig, ImageTrainConfig

Step = Callable[[str, float], None]
FloatArray = npt.NDArray[np.float64]
#: model_kind prefix of image bundles, e.g. "image-resnet"
KIND_PREFIX = "image-"
INSTALL_HINT = "install the imaging extra: pip install -e '.[imaging]'"


@dataclass(frozen=True)
class ImageWorkflowConfig:
    """How to build and train the network; the rest (task, classes, channels, size) comes from the data."""

    architecture: str = "resnet"
    widths: tuple[int, ...] = (16, 32, 64, 128)
    blocks: int = 1
    seed: int = 0
    tta: bool = False
    batch_size: int = 64
    learning_rate: float = 3e-3
    augment: bool = True
    n_boot: int = 1000
    name: str | None = None
    explain_images: int = 64  # test images given Grad-CAM and the deletion check (0: none)
    #: Platt scaling fitted on the validation split. Off by default: on PneumoniaMNIST it made the test split's
    #: calibration worse (its prevalence, 62.5%, is not the validation split's 74.2%): recalibrate on local data
    calibrate: bool = False


@dataclass(frozen=True)
class ImageTrainOutcome:
    """What ``train_images`` produced: the registered bundle, its test evaluation, the test predictions, the
    accuracy at 0.5 and at the evaluation's reference threshold, and where the report is."""

    bundle: ModelBundle
    evaluation: EvaluationReport
    test_predictions: Predictions
    accuracy: dict[str, float]  # {"0.5": ..., "reference": ...}: at 0.5 and at the test prevalence
    report_path: Path
    history: tuple[EpochRecord, ...]
    stopped_by: str
    seconds: float


def require_imaging() -> None:
    """ConfigError naming the install command when torch or MONAI cannot be imported."""
    import importlib

    for module in ("torch", "monai"):
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise ConfigError(f"image models need {module}, which cannot be imported ({e})", INSTALL_HINT) from None


def image_data_hash(ds: ImageDataset) -> str:
    """sha256 over pixels, labels and ids: which images a model saw, checkable later."""
    h = hashlib.sha256()
    for a in (ds.images, ds.labels, ds.ids.astype(str)):
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def image_intended_use(ds: ImageDataset) -> str:
    positive = ds.class_names[1]
    return (
        f"Decision support for image triage, not a diagnosis: estimates the probability that an image shows "
        f"'{positive}', for images like those it was developed on ({ds.provenance.get('source', 'unknown source')}, "
        f"{ds.image_size[0]} x {ds.image_size[1]} pixels, {ds.channels} channel(s)). It informs, and does not "
        "replace, a clinician's reading. Validate locally before use with other scanners, sites or populations."
    )


def _population(ds: ImageDataset, split: Split) -> str:
    how = ("the source's official train/val/test split" if ds.official_split is not None
           else "split by patient" if ds.groups is not None else "split by image (no patient ids in the source)")
    sizes = split.sizes()
    return (f"{len(ds):,} images ({ds.provenance.get('format', 'images')}: {ds.provenance.get('source', '?')}); "
            f"{how}: train {sizes['train']:,}, validation {sizes['calibration']:,}, test {sizes['test']:,}")


def _check_binary_parts(ds: ImageDataset, split: Split) -> None:
    if ds.task != "binary":
        raise ConfigError(f"the data is a {ds.task} task ({len(ds.class_names)} classes); evaluation, registration "
                          "and reports of image models support binary tasks only so far",
                          "give a dataset with two classes, or train with medml.models.imaging directly")
    for part, rows in (("training", split.train), ("validation", split.calibration), ("test", split.test)):
        y = ds.labels[rows]
        if len(np.unique(y)) < 2:
            raise DataError(f"the {part} split has {len(y)} image(s) of {len(np.unique(y))} class(es); "
                            "a model needs both classes in every split",
                            "give more images of each class, or check the labels")


def accuracy_at(y: npt.ArrayLike, p: npt.ArrayLike, threshold: float) -> float:
    """Fraction of images whose prediction ``p >= threshold`` equals the label."""
    yy, pp = np.asarray(y), np.asarray(p)
    return float(np.mean((pp >= threshold).astype(int) == yy))


def net_config_of(bundle: ModelBundle) -> Any:
    """The ``ImageNetConfig`` stored with an image bundle's weights."""
    from medml.models.imaging import ImageNetConfig

    md = bundle.metadata
    raw = md.params.get("net")
    if bundle.artifact != "torch-state-dict" or not isinstance(raw, Mapping):
        raise ConfigError(f"{md.ref} is a {md.model_kind} model, not an image classifier",
                          "give an image model (trained with `medml image train`)")
    try:
        return ImageNetConfig(**{**raw, "image_size": tuple(raw["image_size"]), "widths": tuple(raw["widths"])})
    except (TypeError, KeyError) as e:
        raise IntegrityError(f"{md.ref}: the stored network config is not valid ({e})",
                             "retrain the model with this version of medml") from None


def predict_bundle(bundle: ModelBundle, images: npt.ArrayLike, *, batch_size: int = 256) -> FloatArray:
    """Probabilities of the positive class for N x H x W x C images from a registered image bundle."""
    from medml.models.imaging import predict_images

    raw = predict_images(bundle.model, net_config_of(bundle), images, batch_size=batch_size)
    calibration = bundle.metadata.params.get("calibration")
    return PlattScaling.from_dict(calibration).apply(raw) if isinstance(calibration, Mapping) else raw


def train_images(
    source_path: str | Path,
    config: ImageWorkflowConfig,
    settings: Settings,
    *,
    epochs: int,
    budget_minutes: float | None,
    progress: Step | None = None,
) -> ImageTrainOutcome:
    """Load images, split (official split when present, else by patient), train, evaluate the test split,
    register the weights and write the report. Nothing is registered when any step before it fails.

    The data are checked before torch is imported, so bad input fails fast."""
    step = progress or (lambda _d, _f: None)
    t0 = time.perf_counter()
    step("loading images", 0.0)
    ds = load_images(source_path)
    split = ds.split(seed=config.seed)
    _check_binary_parts(ds, split)
    require_imaging()
    from medml.models.imaging import ImageNetConfig, ImageTrainConfig, predict_images, train_image_model

    net = ImageNetConfig.for_dataset(ds, architecture=config.architecture, widths=tuple(config.widths),
                                     blocks=config.blocks, seed=config.seed, tta=config.tta)
    train_cfg = ImageTrainConfig(net=net, batch_size=config.batch_size, learning_rate=config.learning_rate,
                                 augment=config.augment)

    step(f"training ({epochs} epochs at most)", 0.1)
    result = train_image_model(ds, train_cfg, budget_minutes=budget_minutes, epochs=epochs, split=split)

    step("evaluating the test split", 0.7)
    name = config.name or f"{Path(source_path).stem}-{KIND_PREFIX}{net.architecture}"
    platt = None
    if config.calibrate:
        val = ds.subset(split.calibration)
        platt = PlattScaling.fit(predict_images(result.model_state, net, val.images), val.labels)
    test = ds.subset(split.test)
    scores = predict_images(result.model_state, net, test.images)
    if platt is not None:
        scores = platt.apply(scores)
    pred = Predictions(ids=test.ids, y_true=test.labels, scores=scores, model=name)
    population = _population(ds, split)
    evaluation = evaluate_binary(pred, dataset=Path(source_path).name, split="test", population=population,
                                 n_boot=config.n_boot, seed=config.seed)
    reference = evaluation.prevalence
    accuracy = {"0.5": accuracy_at(test.labels, scores, 0.5), "reference": accuracy_at(test.labels, scores, reference)}
    saliency: dict[str, Any] = {}
    if config.explain_images > 0:
        step(f"explaining {min(config.explain_images, len(test))} test images (Grad-CAM)", 0.8)
        saliency = explain_test_images(network_of(result.model_state, net), net, test, scores,
                                       n_images=config.explain_images, seed=config.seed)

    step("registering", 0.85)
    metrics: dict[str, Any] = {**headline(evaluation), "accuracy_at_0_5": accuracy["0.5"],
                               "accuracy_at_reference": accuracy["reference"], "reference_threshold": reference}
    metadata = BundleMetadata(
        name=name, version=0, model_kind=f"{KIND_PREFIX}{net.architecture}", dataset=Path(source_path).name,
        task=f"image classification ({ds.task}): {ds.class_names[1]} vs {ds.class_names[0]}",
        target=ds.class_names[1], intended_use=image_intended_use(ds), population=population,
        code_version=__version__, data_hash=image_data_hash(ds), seed=config.seed,
        params={"net": asdict(net), "train": _train_params(train_cfg, epochs, budget_minutes),
                "best_epoch": result.best_epoch, "stopped_by": result.stopped_by, "val_auroc": result.val_auroc,
                **({"calibration": platt.to_dict()} if platt is not None else {})},
        calibration="sigmoid (Platt, validation split)" if platt is not None else "none",
        split_sizes={**split.sizes(), "images": len(ds)}, metrics=metrics, evaluation=evaluation.to_dict(),
        extra={"provenance": ds.provenance, "class_names": list(ds.class_names),
               "history": [asdict(r) for r in result.history], "medml_version": __version__,
               "explanation_method": saliency.get("method", "none (no test images were explained)"),
               "saliency": saliency},
    )
    bundle = register(ModelBundle(model=result.model_state, features=[], metadata=metadata,
                                  artifact="torch-state-dict"), settings)

    step("writing report", 0.95)
    report_path = write_image_report(bundle, settings)
    return ImageTrainOutcome(bundle, evaluation, pred, accuracy, report_path, result.history, result.stopped_by,
                             time.perf_counter() - t0)


def network_of(model_state: Mapping[str, Any], net: ImageNetConfig) -> torch.nn.Module:
    """The network of ``net`` with ``model_state`` loaded, in eval mode."""
    from medml.models.imaging import build_network

    module = build_network(net)
    module.load_state_dict(dict(model_state))
    return module.eval()


def explain_test_images(network: torch.nn.Module, net: ImageNetConfig, test: ImageDataset, scores: FloatArray, *,
                        n_images: int = 64, per_row: int = 8, seed: int = 0) -> dict[str, Any]:
    """Grad-CAM of the predicted class on up to ``n_images`` test images (a seeded sample), the deletion check of
    the maps' faithfulness, and a grid of correct and incorrect images (at 0.5) with their heat maps: plain data
    for the bundle and the report (``ReportInputs.saliency``)."""
    from medml.explain.saliency import deletion_curve, grad_cam, saliency_grid_png, target_layer_of
    from medml.models.imaging import as_network_input
    from medml.models.imaging.predict import predict_with

    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(test), size=min(n_images, len(test)), replace=False))
    images, y, p = test.images[rows], test.labels[rows], scores[rows]
    x = as_network_input(images, net)
    layer = target_layer_of(network)
    maps = grad_cam(network, x, target_layer=layer)
    curve = deletion_curve(lambda a: predict_with(network, a, net), x, maps, steps=20, n_random=3, seed=seed)
    right = (p >= 0.5).astype(int) == y
    # correct: a seeded sample balanced by class; incorrect: the most confident errors, which a reviewer needs most
    correct = [i for pair in zip(*(rng.permutation(np.flatnonzero(right & (y == k))) for k in (1, 0)), strict=False)
               for i in pair][:per_row]
    wrong = np.flatnonzero(~right)
    wrong = wrong[np.argsort(-np.abs(p[wrong] - 0.5), kind="stable")][:per_row]
    positive = test.class_names[1]
    captions = [f"true {test.class_names[int(t)]}\nP({positive}) {q:.2f}" for t, q in zip(y, p, strict=True)]
    grid = {f"Correct ({len(correct)})": list(correct), f"Incorrect ({len(wrong)}, most confident first)": list(wrong)}
    png = saliency_grid_png(images, maps, captions, grid) if len(correct) + len(wrong) else b""
    return {"method": f"Grad-CAM (MONAI) of the predicted class at layer {layer}; faithfulness by deletion curve",
            "target_layer": layer, "threshold": 0.5, "test_rows": [int(r) for r in rows],
            "deletion": curve.summary(), "grid_png": base64.b64encode(png).decode("ascii")}


def write_image_report(bundle: ModelBundle, settings: Settings) -> Path:
    """The HTML report of an image model from its bundle alone, with its saliency grid and deletion check."""
    md = bundle.metadata
    return write_report(report_inputs(bundle), settings.reports_dir / f"{md.name}@{md.version}.html")


def _train_params(cfg: ImageTrainConfig, epochs: int, budget_minutes: float | None) -> dict[str, Any]:
    d = {k: v for k, v in asdict(cfg).items() if k != "net"}
    return {**d, "epochs": epochs, "budget_minutes": budget_minutes}


@dataclass(frozen=True)
class ImageSource:
    """Where one image came from: ``label`` is the file, or ``file[i]`` for an ``.npz``; the DICOM Study Instance
    UID and Patient ID when the file is DICOM and has them, else empty."""

    label: str
    path: Path
    study_uid: str = ""
    patient_id: str = ""


def read_image_files(paths: Sequence[str | Path], bundle: ModelBundle) -> tuple[npt.NDArray[Any], list[str]]:
    """PNG/JPEG, DICOM or MedMNIST ``.npz`` files as one N x H x W x C array sized for ``bundle``'s network, with
    a label per image (the file, or ``file[i]`` for each image of an ``.npz``)."""
    images, sources = read_image_sources(paths, bundle)
    return images, [s.label for s in sources]


def read_image_sources(paths: Sequence[str | Path], bundle: ModelBundle) -> tuple[npt.NDArray[Any], list[ImageSource]]:
    """As :func:`read_image_files`, with each image's source (its DICOM study and patient when it has them)."""
    from medml.data.images import read_dicom

    net = net_config_of(bundle)
    arrays: list[npt.NDArray[Any]] = []
    sources: list[ImageSource] = []
    for raw in paths:
        p = Path(raw)
        if p.suffix.lower() == ".npz":
            images = load_images(p).images
            arrays += [img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img for img in images]
            sources += [ImageSource(f"{p}[{i}]", p) for i in range(len(images))]
        elif p.suffix.lower() in (".png", ".jpg", ".jpeg"):
            arrays.append(_read_picture(p, net.in_channels))
            sources.append(ImageSource(str(p), p))
        else:
            dicom = read_dicom(p)
            arrays.append(dicom.pixels)
            sources.append(ImageSource(str(p), p, dicom.study_id, dicom.patient_id))
    want = (*net.image_size, net.in_channels)
    for a, source in zip(arrays, sources, strict=True):
        if a.shape != want:
            got = " x ".join(map(str, a.shape))
            raise DataError(f"{source.label} is {got} but {bundle.ref} takes {' x '.join(map(str, want))}",
                            "resize the image (and convert its channels) to the model's input")
    return (np.stack(arrays) if arrays else np.zeros((0, *want), np.float32)), sources


def fhir_reports(bundle: ModelBundle, images: npt.NDArray[Any], sources: Sequence[ImageSource],
                 probabilities: FloatArray, *, heatmaps: bool = True) -> dict[str, Any]:
    """One FHIR R4 collection Bundle of DiagnosticReports, one per image, each referencing its ImagingStudy (the
    DICOM Study Instance UID, else the file's name) and, when ``heatmaps``, carrying its Grad-CAM overlay."""
    from medml.models.imaging.fhir import bundle_of, diagnostic_report, study_reference

    md = bundle.metadata
    pngs: list[bytes | None] = [None] * len(sources)
    if heatmaps and len(sources):
        from medml.explain.saliency import grad_cam, overlay_png
        from medml.models.imaging import as_network_input

        net = net_config_of(bundle)
        maps = grad_cam(network_of(bundle.model, net), as_network_input(images, net))
        pngs = [overlay_png(img, m, title=f"P({md.target}) {p:.2f}")
                for img, m, p in zip(images, maps, probabilities, strict=True)]
    reports = []
    for source, p, png in zip(sources, probabilities, pngs, strict=True):
        subject = ({"type": "Patient", "identifier": {"value": source.patient_id},
                    "display": f"DICOM PatientID {source.patient_id}"} if source.patient_id else None)
        study = study_reference(study_uid=source.study_uid, file_name=source.label)
        reports.append(diagnostic_report(float(p), finding=md.target, model=f"{md.name}@{md.version}", study=study,
                                         subject=subject, heatmap_png=png))
    return bundle_of(reports)


def _read_picture(path: Path, channels: int) -> npt.NDArray[np.float32]:
    from PIL import Image, UnidentifiedImageError

    from medml.errors import InputFileError

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("L" if channels == 1 else "RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as e:
        raise InputFileError(f"{path} is not a readable image ({e})", "replace or remove the file") from None
    return arr[..., None] if arr.ndim == 2 else arr

