"""The image dataset every reader returns: N x H x W x C pixels with their labels, ids, patients and official split.

numpy only; the training step turns an :class:`ImageDataset` into tensors itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from medml.data.splits import Split, patient_split
from medml.errors import DataError

TaskKind = Literal["binary", "multiclass", "multilabel"]
Array = npt.NDArray[Any]

#: the three parts of a MedMNIST file, in the order rows are concatenated
NPZ_SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ImageDataset:
    """Images with their labels, ready for a model: ``images`` is N x H x W x C, uint8 (0-255) or float32 (0-1).

    ``labels`` is int64, shape (N,) of class indices for binary and multiclass, (N, K) of 0/1 for multilabel.
    ``groups`` holds patient (or study) ids when the source has them; ``official_split`` the source's own
    "train" / "val" / "test" part of each row when it has one.
    """

    images: Array
    labels: Array
    task: TaskKind
    class_names: tuple[str, ...]
    ids: Array
    groups: Array | None = None
    official_split: Array | None = None
    provenance: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.ndim != 4 or self.images.shape[-1] not in (1, 3):
            raise DataError(f"images have shape {self.images.shape}; expected N x H x W x C with C 1 or 3")
        if self.images.dtype not in (np.uint8, np.float32):
            raise DataError(f"images are {self.images.dtype}; expected uint8 or float32")
        if self.task not in ("binary", "multiclass", "multilabel"):
            raise DataError(f"unknown task kind {self.task!r}", "use binary, multiclass or multilabel")
        want_ndim = 2 if self.task == "multilabel" else 1
        if self.labels.ndim != want_ndim or len(self.labels) != n:
            raise DataError(f"labels of shape {self.labels.shape} do not fit {n} images of a {self.task} task")
        k = self.labels.shape[1] if self.task == "multilabel" else int(self.labels.max(initial=0)) + 1
        if len(self.class_names) < k or (self.task == "multilabel" and len(self.class_names) != k):
            raise DataError(f"{len(self.class_names)} class names for {k} classes")
        for name, arr in (("ids", self.ids), ("groups", self.groups), ("official_split", self.official_split)):
            if arr is not None and len(arr) != n:
                raise DataError(f"{name} has {len(arr)} entries for {n} images")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def channels(self) -> int:
        return int(self.images.shape[-1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])

    def label_counts(self) -> dict[str, int]:
        """Images per class (for multilabel: images carrying each label)."""
        if self.task == "multilabel":
            counts = self.labels.sum(axis=0)
        else:
            counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(c) for name, c in zip(self.class_names, counts, strict=True)}

    def subset(self, rows: npt.ArrayLike) -> ImageDataset:
        """The same dataset restricted to ``rows`` (positions)."""
        r = np.asarray(rows)

        def take(a: Array | None) -> Array | None:
            return None if a is None else a[r]

        return replace(
            self,
            images=self.images[r],
            labels=self.labels[r],
            ids=self.ids[r],
            groups=take(self.groups),
            official_split=take(self.official_split),
        )

    def split(self, *, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2), seed: int = 0) -> Split:
        """The source's official split when it has one (its "val" part as calibration), else patients to parts.

        Without patient or study ids each image is its own group: say so in a report, since images of one patient
        could then land on both sides.
        """
        if self.official_split is not None:
            return Split(*(np.flatnonzero(self.official_split == part) for part in NPZ_SPLITS))
        groups = self.groups if self.groups is not None else self.ids
        y = self.labels.any(axis=1) if self.task == "multilabel" else self.labels
        return patient_split(groups, y, fractions=fractions, seed=seed)
