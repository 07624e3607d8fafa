"""The one resize rule for images: training, prediction and the image service all resize with :func:`resize_image`.

Bilinear (Pillow), channel by channel, on the pixels as read: uint8 pictures stay uint8 (0-255), DICOM images stay
float32 (0-1), so a picture is resized before it is scaled to 0-1, for training and prediction alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medml.data.images.dataset import Array
from medml.errors import ConfigError, DataError

__all__ = ["resize_image", "stack_images", "target_size"]


def resize_image(a: Array, target: tuple[int, int]) -> Array:
    """Bilinear resize of one H x W x C image with Pillow, channel by channel (mode L for uint8, F for float32,
    kept in 0-1): how images are resized for training and, the same way, for prediction and the image service."""
    from PIL import Image

    if a.shape[:2] == tuple(target):
        return a
    h, w = target
    planes = [
        np.asarray(Image.fromarray(a[..., c]).resize((w, h), Image.Resampling.BILINEAR)) for c in range(a.shape[-1])
    ]
    out = np.stack(planes, axis=-1).astype(a.dtype)
    # bilinear weights are a convex combination, so this only guards the 0-1 contract against rounding
    return out if out.dtype == np.uint8 else np.clip(out, 0.0, 1.0).astype(a.dtype)


def target_size(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """``size`` (an int or (height, width)) as (height, width), or None when no resize is asked for."""
    if size is None:
        return None
    h, w = (size, size) if isinstance(size, int) else size
    if h < 1 or w < 1:
        raise ConfigError(f"size {size} is not a positive image size", "give an int or (height, width)")
    return int(h), int(w)


def stack_images(arrays: Sequence[Array], files: Sequence[Path], target: tuple[int, int] | None) -> Array:
    """One N x H x W x C array of the images read from ``files``, resized to ``target`` when given; the first file
    sets the channel count (and the size when no ``target`` is given)."""
    first = arrays[0]
    for a, f in zip(arrays, files, strict=True):
        if a.shape[-1] != first.shape[-1]:
            raise DataError(
                f"{f} has {a.shape[-1]} channel(s) but {files[0]} has {first.shape[-1]}",
                "convert all images to one channel count (channels=1 or 3; --channels on the command line)",
            )
        if target is None and a.shape[:2] != first.shape[:2]:
            raise DataError(
                f"{f} is {a.shape[0]}x{a.shape[1]} but {files[0]} is {first.shape[0]}x{first.shape[1]}",
                "make the images one size, or resize them (size=(height, width); --size on the command line)",
            )
    if target is not None:
        arrays = [resize_image(a, target) for a in arrays]
    return np.stack(arrays)
