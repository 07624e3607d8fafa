"""Image classifiers through the spine: load, split, train, predict the held-out test split, evaluate, register
the weights (a torch ``state_dict``, never a pickled module) with their network config, and write the report.

Binary tasks only for now: multiclass and multilabel image models train (``medml.models.imaging``) but their
evaluation report is not written yet. torch and MONAI are imported only when a model is trained or run.
"""

from __future__ import annotations

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
from medml.registry import BundleMetadata, ModelBundle, register
from medml.workflow import write_model_report

if TYPE_CHECKING:
    from medml.models.imaging import EpochRecord, ImageTrainConfig

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

    return predict_images(bundle.model, net_config_of(bundle), images, batch_size=batch_size)


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
    test = ds.subset(split.test)
    scores = predict_images(result.model_state, net, test.images)
    pred = Predictions(ids=test.ids, y_true=test.labels, scores=scores, model=name)
    population = _population(ds, split)
    evaluation = evaluate_binary(pred, dataset=Path(source_path).name, split="test", population=population,
                                 n_boot=config.n_boot, seed=config.seed)
    reference = evaluation.prevalence
    accuracy = {"0.5": accuracy_at(test.labels, scores, 0.5), "reference": accuracy_at(test.labels, scores, reference)}

    step("registering", 0.85)
    metrics: dict[str, Any] = {**headline(evaluation), "accuracy_at_0_5": accuracy["0.5"],
                               "accuracy_at_reference": accuracy["reference"], "reference_threshold": reference}
    metadata = BundleMetadata(
        name=name, version=0, model_kind=f"{KIND_PREFIX}{net.architecture}", dataset=Path(source_path).name,
        task=f"image classification ({ds.task}): {ds.class_names[1]} vs {ds.class_names[0]}",
        target=ds.class_names[1], intended_use=image_intended_use(ds), population=population,
        code_version=__version__, data_hash=image_data_hash(ds), seed=config.seed,
        params={"net": asdict(net), "train": _train_params(train_cfg, epochs, budget_minutes),
                "best_epoch": result.best_epoch, "stopped_by": result.stopped_by, "val_auroc": result.val_auroc},
        split_sizes={**split.sizes(), "images": len(ds)}, metrics=metrics, evaluation=evaluation.to_dict(),
        extra={"provenance": ds.provenance, "class_names": list(ds.class_names),
               "history": [asdict(r) for r in result.history], "medml_version": __version__,
               "explanation_method": "none (image saliency is not in the report yet)"},
    )
    bundle = register(ModelBundle(model=result.model_state, features=[], metadata=metadata,
                                  artifact="torch-state-dict"), settings)

    step("writing report", 0.95)
    report_path = write_model_report(bundle, settings)
    return ImageTrainOutcome(bundle, evaluation, pred, accuracy, report_path, result.history, result.stopped_by,
                             time.perf_counter() - t0)


def _train_params(cfg: ImageTrainConfig, epochs: int, budget_minutes: float | None) -> dict[str, Any]:
    d = {k: v for k, v in asdict(cfg).items() if k != "net"}
    return {**d, "epochs": epochs, "budget_minutes": budget_minutes}


def read_image_files(paths: Sequence[str | Path], bundle: ModelBundle) -> tuple[npt.NDArray[Any], list[str]]:
    """PNG/JPEG, DICOM or MedMNIST ``.npz`` files as one N x H x W x C array sized for ``bundle``'s network, with
    a label per image (the file, or ``file[i]`` for each image of an ``.npz``)."""
    from medml.data.images import read_dicom

    net = net_config_of(bundle)
    arrays: list[npt.NDArray[Any]] = []
    labels: list[str] = []
    for raw in paths:
        p = Path(raw)
        if p.suffix.lower() == ".npz":
            images = load_images(p).images
            arrays += [img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img for img in images]
            labels += [f"{p}[{i}]" for i in range(len(images))]
        elif p.suffix.lower() in (".png", ".jpg", ".jpeg"):
            arrays.append(_read_picture(p, net.in_channels))
            labels.append(str(p))
        else:
            arrays.append(read_dicom(p).pixels)
            labels.append(str(p))
    want = (*net.image_size, net.in_channels)
    for a, label in zip(arrays, labels, strict=True):
        if a.shape != want:
            got = " x ".join(map(str, a.shape))
            raise DataError(f"{label} is {got} but {bundle.ref} takes {' x '.join(map(str, want))}",
                            "resize the image (and convert its channels) to the model's input")
    return (np.stack(arrays) if arrays else np.zeros((0, *want), np.float32)), labels


def _read_picture(path: Path, channels: int) -> npt.NDArray[np.float32]:
    from PIL import Image, UnidentifiedImageError

    from medml.errors import InputFileError

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("L" if channels == 1 else "RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as e:
        raise InputFileError(f"{path} is not a readable image ({e})", "replace or remove the file") from None
    return arr[..., None] if arr.ndim == 2 else arr

