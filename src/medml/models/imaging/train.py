"""Training an image classifier on CPU: MONAI augmentation, class-weighted loss, AdamW with a one-cycle or cosine
schedule, early stopping on validation AUROC, a fixed seed and a wall-clock budget."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from medml.data.images import ImageDataset
from medml.data.splits import Split
from medml.errors import ConfigError, DataError
from medml.models.imaging.network import ImageNetConfig, as_network_input, build_network
from medml.models.imaging.predict import predict_with
from medml.models.imaging.weights import save_weights

if TYPE_CHECKING:
    import torch

StopReason = Literal["epochs", "early_stopping", "budget"]


@dataclass(frozen=True)
class ImageTrainConfig:
    """How to train ``net``. Augmentation (when ``augment``): a left-right flip when ``flip``, a rotation up to
    ``rotate_degrees``, a zoom within 1 +/- ``zoom``, an intensity scaling within 1 +/- ``intensity``."""

    net: ImageNetConfig
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    schedule: Literal["onecycle", "cosine"] = "onecycle"
    patience: int = 5
    augment: bool = True
    flip: bool = True
    rotate_degrees: float = 10.0
    zoom: float = 0.1
    intensity: float = 0.1
    class_weighted: bool = True
    #: cross-entropy targets of 1 - s for the true class and s / K for every class (0: none); against
    #: over-confident probabilities. Multilabel losses take no smoothing.
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing={self.label_smoothing}", "give a value from 0 up to (not) 1, e.g. 0.1")
        if self.batch_size < 2 or self.learning_rate <= 0 or self.weight_decay < 0 or self.patience < 1:
            raise ConfigError(
                "batch_size >= 2, learning_rate > 0, weight_decay >= 0 and patience >= 1 are needed",
                f"got {self.batch_size}, {self.learning_rate}, {self.weight_decay}, {self.patience}",
            )
        if self.schedule not in ("onecycle", "cosine"):
            raise ConfigError(f"unknown schedule {self.schedule!r}", "use onecycle or cosine")


@dataclass(frozen=True)
class EpochRecord:
    """One epoch: its mean training loss, the validation AUROC after it, and its seconds (validation included)."""

    epoch: int
    train_loss: float
    val_auroc: float
    seconds: float


@dataclass(frozen=True)
class ImageTrainResult:
    """The best weights by validation AUROC (``model_state``, a ``state_dict``), with the split they were found on.

    ``split.calibration`` was used for early stopping; ``split.test`` was not touched.
    """

    model_state: dict[str, Any]
    config: ImageNetConfig
    split: Split
    history: tuple[EpochRecord, ...]
    best_epoch: int
    val_auroc: float
    stopped_by: StopReason
    seconds: float

    def save_weights(self, path: str | Path) -> str:
        """Write the weights to ``path``; return their sha256."""
        return save_weights(self.model_state, path)


def train_image_model(
    dataset: ImageDataset,
    config: ImageTrainConfig,
    *,
    budget_minutes: float | None = None,
    epochs: int = 20,
    split: Split | None = None,
) -> ImageTrainResult:
    """Train on ``split.train`` (default ``dataset.split()``, the official one when the source has it) and keep the
    epoch with the best AUROC on ``split.calibration``. Stops after ``epochs``, after ``config.patience`` epochs
    without improvement, or, between two batches, when ``budget_minutes`` of wall clock have passed."""
    import torch
    from monai.utils import set_determinism

    start = time.perf_counter()
    net_cfg = config.net
    _check_fits(dataset, net_cfg)
    if epochs < 1:
        raise ConfigError(f"epochs={epochs}", "train for at least 1 epoch")
    if budget_minutes is not None and budget_minutes < 0:
        raise ConfigError(f"budget_minutes={budget_minutes}", "give a budget of 0 minutes or more")
    split = dataset.split(seed=net_cfg.seed) if split is None else split
    y_all = _one_hot(dataset, net_cfg)
    if len(split.train) < 2:
        raise DataError(f"{len(split.train)} training image(s)", "give a dataset with more images")
    if not _scorable(y_all[split.calibration]):
        raise DataError(
            "the validation part has no class with both events and non-events",
            "give a split whose validation part holds every class",
        )

    torch.set_num_threads(os.cpu_count() or 1)
    set_determinism(seed=net_cfg.seed)
    x = as_network_input(dataset.images, net_cfg)
    x_train, x_val, y_val = x[split.train], x[split.calibration], y_all[split.calibration]
    target = _targets(dataset, net_cfg)[split.train]
    net = build_network(net_cfg)
    loss_fn = _loss(net_cfg, y_all[split.train], config.class_weighted, config.label_smoothing)
    augment = _augmentation(config) if config.augment else None
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    steps = epochs * math.ceil(len(x_train) / config.batch_size)
    scheduler: torch.optim.lr_scheduler.LRScheduler
    if config.schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.learning_rate, total_steps=steps)
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    rng = np.random.default_rng(net_cfg.seed)
    deadline = math.inf if budget_minutes is None else start + 60.0 * budget_minutes

    history: list[EpochRecord] = []
    best: tuple[float, int, dict[str, Any]] | None = None
    stopped_by: StopReason = "epochs"
    for epoch in range(1, epochs + 1):
        epoch_start = time.perf_counter()
        losses, out_of_time = [], False
        net.train()
        order = rng.permutation(len(x_train))
        for at in range(0, len(order), config.batch_size):
            if time.perf_counter() >= deadline:
                out_of_time = True
                break
            rows = order[at : at + config.batch_size]
            if len(rows) < 2:  # batch norm needs 2 images in training mode
                continue
            batch = torch.from_numpy(x_train[rows])
            if augment is not None:
                batch = torch.stack([_plain(augment(image)) for image in batch])
            loss = loss_fn(net(batch), torch.from_numpy(target[rows]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        if out_of_time:
            stopped_by = "budget"
            if not losses and best is not None:  # nothing learnt since the last validation
                break
        val = _mean_auroc(y_val, predict_with(net, x_val, net_cfg))
        history.append(
            EpochRecord(epoch, float(np.mean(losses)) if losses else math.nan, val, time.perf_counter() - epoch_start)
        )
        if best is None or val > best[0]:
            best = (val, epoch, {k: v.detach().clone() for k, v in net.state_dict().items()})
        elif epoch - best[1] >= config.patience:
            stopped_by = "early_stopping"
            break
        if out_of_time:
            break
    assert best is not None  # the first epoch always validates
    return ImageTrainResult(
        model_state=best[2],
        config=net_cfg,
        split=split,
        history=tuple(history),
        best_epoch=best[1],
        val_auroc=best[0],
        stopped_by=stopped_by,
        seconds=time.perf_counter() - start,
    )


def _check_fits(dataset: ImageDataset, config: ImageNetConfig) -> None:
    if dataset.task != config.task:
        raise DataError(
            f"the dataset is a {dataset.task} task but the config is for {config.task}",
            "build the config with ImageNetConfig.for_dataset(dataset)",
        )
    if dataset.image_size != config.image_size or dataset.channels != config.in_channels:
        raise DataError(
            f"the images are {dataset.image_size[0]} x {dataset.image_size[1]} x {dataset.channels} "
            f"but the network takes {config.image_size[0]} x {config.image_size[1]} x "
            f"{config.in_channels}",
            "resize the images (load_images(size=...)) or rebuild the config",
        )


def _one_hot(dataset: ImageDataset, config: ImageNetConfig) -> npt.NDArray[np.int64]:
    """N x K 0/1 labels (K classes or labels), the form the AUROC and class weights are taken on."""
    if config.task == "multilabel":
        return dataset.labels.astype(np.int64)
    if int(dataset.labels.max(initial=0)) >= config.n_classes:
        raise DataError(
            f"labels reach {int(dataset.labels.max())} but the config has {config.n_classes} classes",
            "build the config with ImageNetConfig.for_dataset(dataset)",
        )
    return np.eye(config.n_classes, dtype=np.int64)[dataset.labels]


def _targets(dataset: ImageDataset, config: ImageNetConfig) -> npt.NDArray[Any]:
    """What the loss takes: class indices (int64), or 0/1 floats per label for multilabel."""
    return dataset.labels.astype(np.float32) if config.task == "multilabel" else dataset.labels.astype(np.int64)


def _loss(config: ImageNetConfig, y: npt.NDArray[np.int64], weighted: bool, smoothing: float = 0.0) -> torch.nn.Module:
    """Cross-entropy, each class weighted by n / (K n_k); for multilabel, each label's events by n_neg / n_pos."""
    import torch

    counts = y.sum(axis=0).astype(np.float64)
    if config.task == "multilabel":
        pos_weight = (len(y) - counts) / np.maximum(counts, 1) if weighted else np.ones(len(counts))
        return torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight, dtype=torch.float32))
    weight = len(y) / (len(counts) * np.maximum(counts, 1)) if weighted else np.ones(len(counts))
    return torch.nn.CrossEntropyLoss(weight=torch.tensor(weight, dtype=torch.float32), label_smoothing=smoothing)


def _augmentation(config: ImageTrainConfig) -> Any:
    """MONAI transforms for one C x H x W image, seeded by the network's seed."""
    from monai.transforms import Compose, RandFlip, RandRotate, RandScaleIntensity, RandZoom

    steps: list[Any] = [RandFlip(prob=0.5, spatial_axis=1)] if config.flip else []
    if config.rotate_degrees > 0:
        steps.append(RandRotate(range_x=math.radians(config.rotate_degrees), prob=0.5, padding_mode="zeros"))
    if config.zoom > 0:
        steps.append(RandZoom(prob=0.5, min_zoom=1 - config.zoom, max_zoom=1 + config.zoom, padding_mode="constant"))
    if config.intensity > 0:
        steps.append(RandScaleIntensity(factors=config.intensity, prob=0.5))
    compose = Compose(steps)
    compose.set_random_state(seed=config.net.seed)
    return compose


def _plain(image: Any) -> torch.Tensor:
    """A transform's output as a plain float32 tensor (MONAI may return a MetaTensor)."""
    import torch
    from monai.data import MetaTensor

    out = image.as_tensor() if isinstance(image, MetaTensor) else torch.as_tensor(image)
    return out.float()


def _scorable(y: npt.NDArray[np.int64]) -> bool:
    return bool(((y.min(axis=0) == 0) & (y.max(axis=0) == 1)).any()) if len(y) else False


def _mean_auroc(y: npt.NDArray[np.int64], p: npt.NDArray[np.float64]) -> float:
    """AUROC of the positive class (binary), else the mean one-vs-rest AUROC over classes holding both values."""
    from sklearn.metrics import roc_auc_score

    if p.ndim == 1:
        return float(roc_auc_score(y[:, 1], p))
    cols = [k for k in range(y.shape[1]) if 0 < y[:, k].sum() < len(y)]
    return float(np.mean([roc_auc_score(y[:, k], p[:, k]) for k in cols]))
