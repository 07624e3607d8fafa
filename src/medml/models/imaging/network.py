"""MONAI networks sized for small medical images, built from a frozen config so a service can rebuild them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from medml.data.images import ImageDataset, TaskKind
from medml.errors import ConfigError, DataError

if TYPE_CHECKING:
    import torch

Architecture = Literal["resnet", "densenet"]
ARCHITECTURES: tuple[str, ...] = ("resnet", "densenet")


@dataclass(frozen=True)
class ImageNetConfig:
    """What rebuilds a network: its architecture and widths, and the images and classes it takes.

    ``widths`` are the channels of the four ResNet stages (``blocks`` residual blocks each) or, for DenseNet,
    ``(initial features, growth rate)``. ``seed`` fixes the initial weights. ``tta`` averages each prediction
    with that of the left-right mirrored image.
    """

    task: TaskKind
    n_classes: int
    in_channels: int = 1
    image_size: tuple[int, int] = (28, 28)
    architecture: Architecture = "resnet"
    widths: tuple[int, ...] = (16, 32, 64, 128)
    blocks: int = 1
    seed: int = 0
    tta: bool = False

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(f"unknown architecture {self.architecture!r}", f"use one of {', '.join(ARCHITECTURES)}")
        if self.task not in ("binary", "multiclass", "multilabel"):
            raise ConfigError(f"unknown task kind {self.task!r}", "use binary, multiclass or multilabel")
        if self.task == "binary" and self.n_classes != 2:
            raise ConfigError(f"a binary task has 2 classes, not {self.n_classes}")
        if self.n_classes < 2:
            raise ConfigError(f"{self.n_classes} classes", "a task needs 2 or more classes (or labels)")
        if self.in_channels not in (1, 3):
            raise ConfigError(f"{self.in_channels} input channels", "images must be grayscale (1) or RGB (3)")
        if min(self.image_size) < 8:
            raise ConfigError(f"image size {self.image_size} is too small", "give images of at least 8 x 8 pixels")
        want = 4 if self.architecture == "resnet" else 2
        if len(self.widths) != want or min(self.widths) < 1 or self.blocks < 1:
            raise ConfigError(
                f"widths {self.widths} (blocks {self.blocks}) do not fit a {self.architecture}",
                f"give {want} positive widths and at least 1 block",
            )

    @classmethod
    def for_dataset(cls, dataset: ImageDataset, **options: Any) -> ImageNetConfig:
        """A config whose task, classes, channels and image size are those of ``dataset``."""
        n_classes = dataset.labels.shape[1] if dataset.task == "multilabel" else max(len(dataset.class_names), 2)
        return cls(
            task=dataset.task,
            n_classes=n_classes,
            in_channels=dataset.channels,
            image_size=dataset.image_size,
            **options,
        )

    @property
    def n_outputs(self) -> int:
        """Logits per image: one per class (softmax) or per label (sigmoid)."""
        return self.n_classes


def build_network(config: ImageNetConfig) -> torch.nn.Module:
    """A fresh network with initial weights fixed by ``config.seed``.

    ResNet: a 3 x 3 first convolution of stride 1 and no max-pool, so a 28 x 28 image keeps its detail.
    DenseNet: MONAI's DenseNet with its 7 x 7 stride-2 stem and pool swapped for a 3 x 3 convolution.
    """
    import torch
    from monai.networks.nets import DenseNet, ResNet

    torch.manual_seed(config.seed)
    if config.architecture == "resnet":
        return ResNet(
            block="basic",
            layers=[config.blocks] * 4,
            block_inplanes=list(config.widths),
            spatial_dims=2,
            n_input_channels=config.in_channels,
            conv1_t_size=3,
            conv1_t_stride=1,
            no_max_pool=True,
            num_classes=config.n_outputs,
        )
    init_features, growth = config.widths
    net = DenseNet(
        spatial_dims=2,
        in_channels=config.in_channels,
        out_channels=config.n_outputs,
        init_features=init_features,
        growth_rate=growth,
        block_config=(config.blocks * 2,) * 3,
    )
    net.features.conv0 = torch.nn.Conv2d(config.in_channels, init_features, 3, stride=1, padding=1, bias=False)
    net.features.pool0 = torch.nn.Identity()
    return net


def as_network_input(images: npt.ArrayLike, config: ImageNetConfig) -> npt.NDArray[np.float32]:
    """N x H x W x C images (uint8 0-255 or float 0-1) -> N x C x H x W float32 in 0-1, checked against config."""
    x = np.asarray(images)
    if x.ndim == 3 and config.in_channels == 1:
        x = x[..., None]
    want = (*config.image_size, config.in_channels)
    if x.ndim != 4 or x.shape[1:] != want:
        raise DataError(
            f"images have shape {x.shape}; this model takes N x {want[0]} x {want[1]} x {want[2]}",
            "resize the images and convert their channels to those the model was trained on",
        )
    if x.dtype == np.uint8:
        out = x.astype(np.float32) / 255.0
    elif np.issubdtype(x.dtype, np.floating):
        out = x.astype(np.float32)
    else:
        raise DataError(f"images are {x.dtype}", "give uint8 (0-255) or float (0-1) images")
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))
