"""Image classifiers through the spine: load, split, train, predict the held-out test split, evaluate, register
the weights (a torch ``state_dict``, never a pickled module) with their network config, and write the report.

Binary, multiclass and multilabel tasks: a binary model is evaluated like a tabular one; a multiclass or multilabel
model per class one-vs-rest (with the macro mean AUROC and the accuracy MedMNIST reports) and on all (image, class)
pairs pooled, which the report's curves show. torch and MONAI are imported only when a model is trained or run.

Reading new images and predicting live below this layer, where the image service can use them too:
:mod:`medml.data.images` (``prepare_image``) and :class:`medml.models.imaging.ImagePredictor`.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from medml import __version__
from medml.config import Settings
from medml.data import Predictions
from medml.data.images import ImageDataset, ImagePreparation, load_images
from medml.data.splits import Split
from medml.errors import ConfigError, DataError
from medml.evaluate import EvaluationReport, evaluate_binary, headline
from medml.evaluate.multiclass import evaluate_classes, one_hot, pooled_pairs
from medml.models.imaging.calibration import PlattScaling
from medml.models.imaging.ensemble import ensemble_state
from medml.models.imaging.predictor import ImagePredictor, require_imaging
from medml.pipelines.tabular import report_inputs
from medml.registry import BundleMetadata, ModelBundle, register
from medml.registry.serving import ImageServing
from medml.report import write_report

if TYPE_CHECKING:
    from medml.models.imaging import EpochRecord, ImageTrainConfig, ImageTrainResult

__all__ = [
    "KIND_PREFIX",
    "ImageInput",
    "ImageTrainOutcome",
    "ImageWorkflowConfig",
    "explain_test_images",
    "heatmap_overlays",
    "train_images",
    "write_image_report",
]

Step = Callable[[str, float], None]
FloatArray = npt.NDArray[np.float64]
#: model_kind prefix of image bundles, e.g. "image-resnet"
KIND_PREFIX = "image-"


@dataclass(frozen=True)
class ImageWorkflowConfig:
    """How to build and train the network; the rest (task, classes, channels, size) comes from the data."""

    architecture: str = "resnet"
    #: channels of the ResNet's 4 stages. Twice as wide, (32, 64, 128, 256), gave the same PneumoniaMNIST test AUROC
    #: over 3 seeds (0.963 against 0.964) at 1.5 times the time per epoch: benchmarks/results-imaging.md
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
    #: Platt scaling fitted on the validation split (binary tasks). Off by default: on PneumoniaMNIST it made the
    #: test split's calibration worse (its prevalence, 62.5%, is not the validation split's 74.2%)
    calibrate: bool = False
    #: networks trained with seeds seed, seed+1, ...; their probabilities are averaged (a deep ensemble)
    ensemble: int = 1
    #: label smoothing of the cross-entropy loss (binary and multiclass), against over-confident probabilities
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if self.ensemble < 1:
            raise ConfigError(f"ensemble={self.ensemble}", "train 1 network or more")


@dataclass(frozen=True)
class ImageInput:
    """How images are read: the labels CSV of a DICOM folder, a size to resize to, a channel count to convert
    PNG/JPEG images to, a DICOM window (center, width) and the frame of multi-frame files, and class names for a
    MedMNIST file. All but ``labels_csv`` and ``class_names`` are stored with the model, so that prediction and
    the image service prepare new images the same way."""

    labels_csv: str | None = None
    size: int | None = None
    channels: Literal[1, 3] | None = None
    window: tuple[float, float] | None = None
    frame: int | None = None
    class_names: tuple[str, ...] | None = None

    def load(self, path: str | Path) -> ImageDataset:
        return load_images(
            path,
            labels_csv=self.labels_csv,
            size=self.size,
            channels=self.channels,
            window=self.window,
            frame=self.frame,
            class_names=self.class_names,
        )

    @property
    def preparation(self) -> ImagePreparation:
        """What is stored with the model, so that new images are prepared as these were."""
        return ImagePreparation(size=self.size, channels=self.channels, window=self.window, frame=self.frame)


@dataclass(frozen=True)
class ImageTrainOutcome:
    """What ``train_images`` produced: the registered bundle, its test evaluation (for multiclass and multilabel
    tasks: of the pooled (image, class) pairs, with ``classes`` per class), the test predictions, the accuracy,
    and where the report is."""

    bundle: ModelBundle
    evaluation: EvaluationReport
    test_predictions: Predictions
    #: binary: {"0.5": ..., "reference": ...} (at 0.5 and at the test prevalence); else {"accuracy": ...}
    accuracy: dict[str, float]
    report_path: Path
    history: tuple[EpochRecord, ...]
    stopped_by: str
    seconds: float
    classes: dict[str, Any] | None = None  # evaluate_classes() of the test split (multiclass and multilabel)


def image_data_hash(ds: ImageDataset) -> str:
    """sha256 over pixels, labels and ids: which images a model saw, checkable later."""
    h = hashlib.sha256()
    for a in (ds.images, ds.labels, ds.ids.astype(str)):
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def image_intended_use(ds: ImageDataset) -> str:
    if ds.task == "binary":
        what = f"the probability that an image shows '{ds.class_names[1]}'"
    elif ds.task == "multiclass":
        what = f"the probability of each of {len(ds.class_names)} classes ({_names(ds.class_names)}) for an image"
    else:
        what = f"the probability of each of {len(ds.class_names)} findings ({_names(ds.class_names)}) in an image"
    return (
        f"Decision support for image triage, not a diagnosis: estimates {what}, for images like those it was "
        f"developed on ({ds.provenance.get('source', 'unknown source')}, "
        f"{ds.image_size[0]} x {ds.image_size[1]} pixels, {ds.channels} channel(s)). It informs, and does not "
        "replace, a clinician's reading. Validate locally before use with other scanners, sites or populations."
    )


def _population(ds: ImageDataset, split: Split) -> str:
    how = (
        "the source's official train/val/test split"
        if ds.official_split is not None
        else "split by patient"
        if ds.groups is not None
        else "split by image (no patient ids in the source)"
    )
    sizes = split.sizes()
    return (
        f"{len(ds):,} images ({ds.provenance.get('format', 'images')}: {ds.provenance.get('source', '?')}); "
        f"{how}: train {sizes['train']:,}, validation {sizes['calibration']:,}, test {sizes['test']:,}"
    )


def _names(names: Sequence[str], n: int = 6) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def _check_parts(ds: ImageDataset, split: Split) -> None:
    """Every split must let the model learn and be judged: both classes of a binary task in each; every class
    (or label, present and absent) in training; some class with events and non-events in validation and test."""
    if ds.task == "binary":
        for part, rows in (("training", split.train), ("validation", split.calibration), ("test", split.test)):
            y = ds.labels[rows]
            if len(np.unique(y)) < 2:
                raise DataError(
                    f"the {part} split has {len(y)} image(s) of {len(np.unique(y))} class(es); "
                    "a model needs both classes in every split",
                    "give more images of each class, or check the labels",
                )
        return
    k = len(ds.class_names)
    onehot = one_hot(ds.labels, ds.task, k)
    train = onehot[split.train]
    unseen = [ds.class_names[j] for j in range(k) if train[:, j].sum() == 0]
    if unseen:
        raise DataError(
            f"the training split has no image of {_names(unseen)}", "give images of every class, or drop the class"
        )
    for part, rows in (("validation", split.calibration), ("test", split.test)):
        y = onehot[rows]
        if not ((y.sum(axis=0) > 0) & (y.sum(axis=0) < len(y))).any():
            raise DataError(
                f"the {part} split has no class with both events and non-events ({len(y)} images)",
                "give more images of each class, or check the labels",
            )


def accuracy_at(y: npt.ArrayLike, p: npt.ArrayLike, threshold: float) -> float:
    """Fraction of images whose prediction ``p >= threshold`` equals the label."""
    yy, pp = np.asarray(y), np.asarray(p)
    return float(np.mean((pp >= threshold).astype(int) == yy))


def train_images(
    source_path: str | Path,
    config: ImageWorkflowConfig,
    settings: Settings,
    *,
    epochs: int,
    budget_minutes: float | None,
    progress: Step | None = None,
    inputs: ImageInput | None = None,
) -> ImageTrainOutcome:
    """Load images (read as ``inputs`` says), split (official split when present, else by patient), train,
    evaluate the test split, register the weights and write the report. Nothing is registered when any step
    before it fails.

    The data are checked before torch is imported, so bad input fails fast."""
    step = progress or (lambda _d, _f: None)
    t0 = time.perf_counter()
    step("loading images", 0.0)
    inputs = inputs or ImageInput()
    ds = inputs.load(source_path)
    split = ds.split(seed=config.seed)
    _check_parts(ds, split)
    if config.calibrate and ds.task != "binary":
        raise ConfigError(
            f"--calibrate (Platt scaling) is for binary tasks; this is a {ds.task} task", "train without --calibrate"
        )
    require_imaging()
    from medml.models.imaging import ImageNetConfig, ImageTrainConfig, train_image_model

    members: list[ImageTrainResult] = []
    per_member = None if budget_minutes is None else budget_minutes / config.ensemble
    for m in range(config.ensemble):
        net = ImageNetConfig.for_dataset(
            ds,
            architecture=config.architecture,
            widths=tuple(config.widths),
            blocks=config.blocks,
            seed=config.seed + m,
            tta=config.tta,
        )
        train_cfg = ImageTrainConfig(
            net=net,
            batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            augment=config.augment,
            label_smoothing=config.label_smoothing,
        )
        which = f"network {m + 1} of {config.ensemble}, " if config.ensemble > 1 else ""
        step(f"training ({which}{epochs} epochs at most)", 0.1 + 0.6 * m / config.ensemble)
        members.append(train_image_model(ds, train_cfg, budget_minutes=per_member, epochs=epochs, split=split))
    result = members[0]
    net = result.config
    state = members[0].model_state if len(members) == 1 else ensemble_state([r.model_state for r in members])

    step("evaluating the test split", 0.7)
    name = config.name or f"{Path(source_path).stem}-{KIND_PREFIX}{net.architecture}"

    predictor = ImagePredictor(state, net, preparation=inputs.preparation, ref=name, class_names=ds.class_names)
    platt = None
    if config.calibrate:
        val = ds.subset(split.calibration)
        platt = PlattScaling.fit(predictor.predict(val.images), val.labels)
    test = ds.subset(split.test)
    scores = predictor.predict(test.images)
    if platt is not None:
        scores = platt.apply(scores)
    population = _population(ds, split)
    dataset = Path(source_path).name
    classes: dict[str, Any] | None = None
    if ds.task == "binary":
        pred = Predictions(ids=test.ids, y_true=test.labels, scores=scores, model=name)
        evaluation = evaluate_binary(
            pred, dataset=dataset, split="test", population=population, n_boot=config.n_boot, seed=config.seed
        )
        reference = evaluation.prevalence
        accuracy = {
            "0.5": accuracy_at(test.labels, scores, 0.5),
            "reference": accuracy_at(test.labels, scores, reference),
        }
        metrics: dict[str, Any] = {
            **headline(evaluation),
            "accuracy_at_0_5": accuracy["0.5"],
            "accuracy_at_reference": accuracy["reference"],
            "reference_threshold": reference,
        }
    else:
        classes = evaluate_classes(
            test.labels, scores, task=ds.task, class_names=ds.class_names, n_boot=config.n_boot, seed=config.seed
        )
        y_pairs, p_pairs, pair_ids = pooled_pairs(test.labels, scores, ds.task, test.ids, ds.class_names)
        pred = Predictions(ids=pair_ids.astype(object), y_true=y_pairs.astype(np.int8), scores=p_pairs, model=name)
        evaluation = evaluate_binary(
            pred,
            dataset=dataset,
            split="test",
            n_boot=config.n_boot,
            seed=config.seed,
            population=f"{population}; curves and calibration pool every (image, class) pair, one-vs-rest "
            f"(micro-average: {len(test):,} images x {len(ds.class_names)} classes), and their intervals "
            "resample pairs; per-class and macro intervals resample images",
        )
        accuracy = {"accuracy": classes["accuracy"]["value"]}
        pooled = headline(evaluation)
        metrics = {
            **pooled,
            "micro_auroc": pooled["auroc"],
            "auroc": classes["macro_auroc"]["value"],
            "auroc_low": classes["macro_auroc"]["low"],
            "auroc_high": classes["macro_auroc"]["high"],
            "accuracy": classes["accuracy"]["value"],
            "accuracy_low": classes["accuracy"]["low"],
            "accuracy_high": classes["accuracy"]["high"],
            "n": len(test),
            "n_events": None,
        }
    saliency: dict[str, Any] = {}
    if config.explain_images > 0:
        step(f"explaining {min(config.explain_images, len(test))} test images (Grad-CAM)", 0.8)
        saliency = explain_test_images(predictor, test, scores, n_images=config.explain_images, seed=config.seed)

    step("registering", 0.85)
    train_cfg = ImageTrainConfig(
        net=net,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        augment=config.augment,
        label_smoothing=config.label_smoothing,
    )
    history = [asdict(r) | {"network": m + 1} for m, member in enumerate(members) for r in member.history]
    metadata = BundleMetadata(
        name=name,
        version=0,
        model_kind=f"{KIND_PREFIX}{net.architecture}",
        dataset=dataset,
        task=f"image classification ({ds.task}): "
        + (f"{ds.class_names[1]} vs {ds.class_names[0]}" if ds.task == "binary" else _names(ds.class_names)),
        target=ds.class_names[1]
        if ds.task == "binary"
        else ("most probable class" if ds.task == "multiclass" else "each finding"),
        intended_use=image_intended_use(ds),
        population=population,
        code_version=__version__,
        data_hash=image_data_hash(ds),
        seed=config.seed,
        params={
            "net": asdict(net),
            "train": _train_params(train_cfg, epochs, budget_minutes),
            "input": inputs.preparation.to_dict(),
            "ensemble": config.ensemble,
            "best_epoch": result.best_epoch,
            "stopped_by": result.stopped_by,
            "val_auroc": result.val_auroc,
            "members": [
                {
                    "seed": r.config.seed,
                    "best_epoch": r.best_epoch,
                    "val_auroc": r.val_auroc,
                    "stopped_by": r.stopped_by,
                    "seconds": r.seconds,
                }
                for r in members
            ],
            **({"calibration": platt.to_dict()} if platt is not None else {}),
        },
        calibration="sigmoid (Platt, validation split)" if platt is not None else "none",
        # the serving contract, written at training time: how a new image is read (issue 12, item 3)
        serving=ImageServing(inputs.preparation),
        split_sizes={**split.sizes(), "images": len(ds)},
        metrics=metrics,
        evaluation=evaluation.to_dict(),
        extra={
            "provenance": ds.provenance,
            "class_names": list(ds.class_names),
            "image_task": ds.task,
            "history": history,
            "medml_version": __version__,
            "explanation_method": saliency.get("method", "none (no test images were explained)"),
            "saliency": saliency,
            **({"classes": classes} if classes is not None else {}),
        },
    )
    bundle = register(ModelBundle(model=state, features=[], metadata=metadata, artifact="torch-state-dict"), settings)

    step("writing report", 0.95)
    report_path = write_image_report(bundle, settings)
    all_history = tuple(r for member in members for r in member.history)
    stopped = ", ".join(sorted({r.stopped_by for r in members}))
    return ImageTrainOutcome(
        bundle, evaluation, pred, accuracy, report_path, all_history, stopped, time.perf_counter() - t0, classes
    )


def explain_test_images(
    predictor: ImagePredictor,
    test: ImageDataset,
    scores: FloatArray,
    *,
    n_images: int = 64,
    per_row: int = 8,
    seed: int = 0,
) -> dict[str, Any]:
    """Grad-CAM of the predicted class on up to ``n_images`` test images (a seeded sample), the deletion check of
    the maps' faithfulness, and a grid of correct and incorrect images with their heat maps: plain data for the
    bundle and the report (``ReportInputs.saliency``). Binary: correct at 0.5; multiclass: the most probable
    class; multilabel: every label right at 0.5. An ensemble is explained and scored as a whole."""
    from medml.explain.saliency import deletion_curve, ensemble_grad_cam, saliency_grid_png, target_layer_of

    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(test), size=min(n_images, len(test)), replace=False))
    images, y, p = test.images[rows], test.labels[rows], scores[rows]
    x = predictor.network_input(images)
    networks = predictor.networks
    layer = target_layer_of(networks[0])
    maps = ensemble_grad_cam(networks, x, score=predictor.score)
    curve = deletion_curve(predictor.score, x, maps, steps=20, n_random=3, seed=seed)
    names = test.class_names
    if test.task == "binary":
        right, kind = (p >= 0.5).astype(int) == y, y
        confidence = np.abs(p - 0.5)
        captions = [f"true {names[int(t)]}\nP({names[1]}) {q:.2f}" for t, q in zip(y, p, strict=True)]
    elif test.task == "multiclass":
        guess = p.argmax(axis=1)
        right, kind, confidence = guess == y, y, p.max(axis=1)
        captions = [f"true {names[int(t)]}\n{names[int(g)]} {q.max():.2f}" for t, g, q in zip(y, guess, p, strict=True)]
    else:
        right = ((p >= 0.5).astype(int) == y).all(axis=1)
        kind, confidence = y.any(axis=1).astype(int), np.abs(p - 0.5).max(axis=1)
        captions = [
            f"true {_label_set(t, names)}\ncalled {_label_set((q >= 0.5).astype(int), names)}"
            for t, q in zip(y, p, strict=True)
        ]
    # correct: a seeded sample balanced by class; incorrect: the most confident errors, which a reviewer needs most
    by_class = [rng.permutation(np.flatnonzero(right & (kind == k))) for k in np.unique(kind)]
    correct = [i for group in zip(*by_class, strict=False) for i in group][:per_row]
    if len(correct) < per_row:  # classes of unequal size: fill from what is left
        rest = [i for i in rng.permutation(np.flatnonzero(right)) if i not in correct]
        correct += rest[: per_row - len(correct)]
    wrong = np.flatnonzero(~right)
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")][:per_row]
    grid = {
        f"Correct ({len(correct)})": [int(i) for i in correct],
        f"Incorrect ({len(wrong)}, most confident first)": [int(i) for i in wrong],
    }
    png = saliency_grid_png(images, maps, captions, grid) if len(correct) + len(wrong) else b""
    ensemble = f", averaged over {len(networks)} networks" if len(networks) > 1 else ""
    return {
        "method": f"Grad-CAM (MONAI) of the predicted class at layer {layer}{ensemble}; faithfulness by deletion curve",
        "target_layer": layer,
        "threshold": 0.5,
        "test_rows": [int(r) for r in rows],
        "deletion": curve.summary(),
        "grid_png": base64.b64encode(png).decode("ascii"),
    }


def _label_set(row: npt.NDArray[Any], names: Sequence[str]) -> str:
    on = [names[int(j)] for j in np.flatnonzero(row)]
    return ", ".join(on[:2]) + ("..." if len(on) > 2 else "") if on else "none"


def write_image_report(bundle: ModelBundle, settings: Settings) -> Path:
    """The HTML report of an image model from its bundle alone, with its saliency grid and deletion check."""
    md = bundle.metadata
    return write_report(report_inputs(bundle), settings.reports_dir / f"{md.name}@{md.version}.html")


def _train_params(cfg: ImageTrainConfig, epochs: int, budget_minutes: float | None) -> dict[str, Any]:
    d = {k: v for k, v in asdict(cfg).items() if k != "net"}
    return {**d, "epochs": epochs, "budget_minutes": budget_minutes}


def heatmap_overlays(predictor: ImagePredictor, images: npt.NDArray[Any], probabilities: npt.ArrayLike) -> list[bytes]:
    """Each image with its Grad-CAM map of the predicted class over it (an ensemble's maps averaged), as PNG bytes
    titled with the model's result: the heat maps ``medml image predict --fhir`` attaches to its reports."""
    from medml.explain.saliency import ensemble_grad_cam, overlay_png

    if not len(images):
        return []
    maps = ensemble_grad_cam(predictor.networks, predictor.network_input(images), score=predictor.score)
    return [
        overlay_png(img, m, title=predictor.headline(p))
        for img, m, p in zip(images, maps, np.asarray(probabilities), strict=True)
    ]
