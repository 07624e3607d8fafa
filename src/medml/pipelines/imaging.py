"""Image classifiers through the spine: load, split, train, predict the held-out test split, evaluate, register
the weights (a torch ``state_dict``, never a pickled module) with their network config, and write the report.

Binary, multiclass and multilabel tasks: a binary model is evaluated like a tabular one; a multiclass or multilabel
model per class one-vs-rest (with the macro mean AUROC and the accuracy MedMNIST reports) and on all (image, class)
pairs pooled, which the report's curves show. torch and MONAI are imported only when a model is trained or run.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from medml import __version__
from medml.config import Settings
from medml.data import Predictions
from medml.data.images import ImageDataset, load_images
from medml.data.splits import Split
from medml.errors import ConfigError, DataError, IntegrityError
from medml.evaluate import EvaluationReport, evaluate_binary, headline
from medml.evaluate.multiclass import evaluate_classes, one_hot, pooled_pairs
from medml.models.imaging.calibration import PlattScaling
from medml.pipelines.tabular import report_inputs
from medml.registry import BundleMetadata, ModelBundle, register
from medml.report import write_report

if TYPE_CHECKING:
    import torch

    from medml.models.imaging import EpochRecord, ImageNetConfig, ImageTrainConfig, ImageTrainResult

Step = Callable[[str, float], None]
FloatArray = npt.NDArray[np.float64]
#: model_kind prefix of image bundles, e.g. "image-resnet"
KIND_PREFIX = "image-"
INSTALL_HINT = "install the imaging extra: pip install -e '.[imaging]'"


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

    def stored(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "channels": self.channels,
            "window": list(self.window) if self.window is not None else None,
            "frame": self.frame,
        }


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


def net_config_of(bundle: ModelBundle) -> Any:
    """The ``ImageNetConfig`` stored with an image bundle's weights."""
    from medml.models.imaging import ImageNetConfig

    md = bundle.metadata
    raw = md.params.get("net")
    if bundle.artifact != "torch-state-dict" or not isinstance(raw, Mapping):
        raise ConfigError(
            f"{md.ref} is a {md.model_kind} model, not an image classifier",
            "give an image model (trained with `medml image train`)",
        )
    try:
        return ImageNetConfig(**{**raw, "image_size": tuple(raw["image_size"]), "widths": tuple(raw["widths"])})
    except (TypeError, KeyError) as e:
        raise IntegrityError(
            f"{md.ref}: the stored network config is not valid ({e})", "retrain the model with this version of medml"
        ) from None


def predict_bundle(bundle: ModelBundle, images: npt.ArrayLike, *, batch_size: int = 256) -> FloatArray:
    """Probabilities for N x H x W x C images from a registered image bundle: shape (N,) of the positive class for
    a binary model, (N, K) of the classes (``bundle.metadata.extra["class_names"]``) otherwise; an ensemble's
    members averaged."""
    from medml.models.imaging import predict_images

    raw = average_members(predict_images, bundle.model, net_config_of(bundle), images, batch_size=batch_size)
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
    from medml.models.imaging import ImageNetConfig, ImageTrainConfig, predict_images, train_image_model

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

    def predict(images: npt.NDArray[Any]) -> FloatArray:
        return average_members(predict_images, state, net, images)

    platt = None
    if config.calibrate:
        val = ds.subset(split.calibration)
        platt = PlattScaling.fit(predict(val.images), val.labels)
    test = ds.subset(split.test)
    scores = predict(test.images)
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
        saliency = explain_test_images(
            networks_of(state, net), net, test, scores, n_images=config.explain_images, seed=config.seed
        )

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
            "input": inputs.stored(),
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


#: key prefix of each member's tensors in an ensemble's state dict: "member0.", "member1.", ...
MEMBER = "member"


def ensemble_state(states: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The state dicts of an ensemble's networks as one flat state dict (``member<i>.<tensor>``): still tensors
    only, so the registry saves and loads it like any other network's weights."""
    return {f"{MEMBER}{i}.{k}": v for i, state in enumerate(states) for k, v in state.items()}


def member_states(state: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The networks of a state dict: one for a single network, one per member for :func:`ensemble_state`."""
    if not state or not all(k.startswith(MEMBER) and "." in k for k in state):
        return [dict(state)]
    members: dict[int, dict[str, Any]] = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if not head[len(MEMBER) :].isdigit():
            return [dict(state)]
        members.setdefault(int(head[len(MEMBER) :]), {})[rest] = value
    return [members[i] for i in sorted(members)]


def average_members(
    predict: Callable[..., FloatArray],
    state: Mapping[str, Any],
    net: ImageNetConfig,
    images: npt.ArrayLike,
    **options: Any,
) -> FloatArray:
    """Mean of the members' probabilities (one member: its own)."""
    parts = [predict(s, net, images, **options) for s in member_states(state)]
    return parts[0] if len(parts) == 1 else np.mean(parts, axis=0)


def network_of(model_state: Mapping[str, Any], net: ImageNetConfig) -> torch.nn.Module:
    """The network of ``net`` with ``model_state`` loaded (an ensemble's first member), in eval mode."""
    return networks_of(model_state, net)[0]


def networks_of(model_state: Mapping[str, Any], net: ImageNetConfig) -> list[torch.nn.Module]:
    """Every network of ``model_state`` (one, or an ensemble's members), loaded and in eval mode."""
    from medml.models.imaging import build_network

    out = []
    for state in member_states(model_state):
        module = build_network(net)
        module.load_state_dict(state)
        out.append(module.eval())
    return out


def saliency_maps(
    networks: Sequence[torch.nn.Module],
    net: ImageNetConfig,
    x: npt.NDArray[np.float32],
    *,
    class_index: int | Sequence[int] | None = None,
) -> npt.NDArray[np.float32]:
    """Grad-CAM maps (N x H x W, 0-1) for network input ``x``, of ``class_index`` (one, or one per image) or by
    default of each image's predicted class; for an ensemble, the members' maps of the class the ensemble predicts,
    averaged and rescaled to 0-1."""
    from medml.explain.saliency import _unit_range, grad_cam, target_layer_of
    from medml.models.imaging.predict import predict_with

    if len(networks) == 1:
        return grad_cam(networks[0], x, class_index=class_index, target_layer=target_layer_of(networks[0]))
    if class_index is None:
        p = np.mean([predict_with(n, x, net) for n in networks], axis=0)
        class_index = [int(c) for c in ((p >= 0.5) if p.ndim == 1 else p.argmax(axis=1))]
    return _unit_range(
        np.mean([grad_cam(n, x, class_index=class_index, target_layer=target_layer_of(n)) for n in networks], axis=0)
    )


def explain_test_images(
    networks: Sequence[torch.nn.Module],
    net: ImageNetConfig,
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
    from medml.explain.saliency import deletion_curve, saliency_grid_png, target_layer_of
    from medml.models.imaging import as_network_input
    from medml.models.imaging.predict import predict_with

    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(test), size=min(n_images, len(test)), replace=False))
    images, y, p = test.images[rows], test.labels[rows], scores[rows]
    x = as_network_input(images, net)
    layer = target_layer_of(networks[0])
    maps = saliency_maps(networks, net, x)

    def score(a: npt.NDArray[np.float32]) -> FloatArray:
        return np.mean([predict_with(n, a, net) for n in networks], axis=0)

    curve = deletion_curve(score, x, maps, steps=20, n_random=3, seed=seed)
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
    """As :func:`read_image_files`, with each image's source (its DICOM study and patient when it has them).

    Images are prepared as the model's training images were: the DICOM window and frame it was trained with, and
    resized (bilinear) to its input size when it was trained on resized images; otherwise an image of another
    size is refused."""
    from medml.data.images import read_dicom, resize_image

    net = net_config_of(bundle)
    prep = input_preparation(bundle)
    window = tuple(prep["window"]) if prep.get("window") else None
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
            dicom = read_dicom(p, window=window, frame=prep.get("frame"))
            arrays.append(dicom.pixels)
            sources.append(ImageSource(str(p), p, dicom.study_id, dicom.patient_id))
    want = (*net.image_size, net.in_channels)
    if prep.get("size") is not None:
        arrays = [resize_image(a, net.image_size) if a.shape[-1] == net.in_channels else a for a in arrays]
    for a, source in zip(arrays, sources, strict=True):
        if a.shape != want:
            got = " x ".join(map(str, a.shape))
            raise DataError(
                f"{source.label} is {got} but {bundle.ref} takes {' x '.join(map(str, want))}",
                "resize the image (and convert its channels) to the model's input",
            )
    return (np.stack(arrays) if arrays else np.zeros((0, *want), np.float32)), sources


def input_preparation(bundle: ModelBundle) -> dict[str, Any]:
    """How the model's training images were read (``ImageInput.stored()``): size, channels, window, frame."""
    prep = bundle.metadata.params.get("input")
    return dict(prep) if isinstance(prep, Mapping) else {}


def fhir_reports(
    bundle: ModelBundle,
    images: npt.NDArray[Any],
    sources: Sequence[ImageSource],
    probabilities: FloatArray,
    *,
    heatmaps: bool = True,
) -> dict[str, Any]:
    """One FHIR R4 collection Bundle of DiagnosticReports, one per image, each referencing its ImagingStudy (the
    DICOM Study Instance UID, else the file's name) and, when ``heatmaps``, carrying its Grad-CAM overlay.

    Binary: the finding is the positive class at 0.5. Multiclass: the most probable class, with every class's
    probability. Multilabel: the most probable finding, with every finding's probability."""
    from medml.models.imaging.fhir import bundle_of, diagnostic_report, study_reference

    md = bundle.metadata
    pngs: list[bytes | None] = [None] * len(sources)
    names = [str(c) for c in md.extra.get("class_names", [])]
    if heatmaps and len(sources):
        from medml.explain.saliency import overlay_png
        from medml.models.imaging import as_network_input

        net = net_config_of(bundle)
        maps = saliency_maps(networks_of(bundle.model, net), net, as_network_input(images, net))
        pngs = [
            overlay_png(img, m, title=_headline(p, md.target, names))
            for img, m, p in zip(images, maps, probabilities, strict=True)
        ]
    reports = []
    for source, p, png in zip(sources, probabilities, pngs, strict=True):
        subject = (
            {
                "type": "Patient",
                "identifier": {"value": source.patient_id},
                "display": f"DICOM PatientID {source.patient_id}",
            }
            if source.patient_id
            else None
        )
        study = study_reference(study_uid=source.study_uid, file_name=source.label)
        row = np.atleast_1d(np.asarray(p, dtype=np.float64))
        if row.size == 1:
            finding, probability, others = md.target, float(row[0]), None
        else:
            top = int(row.argmax())
            finding, probability = names[top], float(row[top])
            others = {name: float(q) for name, q in zip(names, row, strict=True)}
        multiclass = others is not None and md.extra.get("image_task") == "multiclass"
        reports.append(
            diagnostic_report(
                probability,
                finding=finding,
                model=f"{md.name}@{md.version}",
                study=study,
                subject=subject,
                heatmap_png=png,
                class_probabilities=others,
                rule="most-probable" if multiclass else "threshold",
            )
        )
    return bundle_of(reports)


def _headline(p: Any, target: str, names: Sequence[str]) -> str:
    row = np.atleast_1d(np.asarray(p, dtype=np.float64))
    if row.size == 1:
        return f"P({target}) {row[0]:.2f}"
    return f"{names[int(row.argmax())]} {float(row.max()):.2f}"


def _read_picture(path: Path, channels: int) -> npt.NDArray[np.float32]:
    from PIL import Image, UnidentifiedImageError

    from medml.errors import InputFileError

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("L" if channels == 1 else "RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as e:
        raise InputFileError(f"{path} is not a readable image ({e})", "replace or remove the file") from None
    return arr[..., None] if arr.ndim == 2 else arr
