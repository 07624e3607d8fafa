"""Pictures: PNG and JPEG files, read with Pillow; a folder of them, one sub-folder per class, is a dataset.

:func:`read_picture` is the one picture reader, for training, prediction and uploads alike.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Literal

import numpy as np

from medml.data.images.dataset import Array, ImageDataset
from medml.data.images.resize import stack_images, target_size
from medml.errors import DataError, InputFileError

__all__ = ["IMAGE_SUFFIXES", "load_image_folder", "read_picture"]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
#: Pillow modes read as they are, with their channel count; any other mode needs ``channels=`` to convert
_PIL_CHANNELS = {"L": 1, "RGB": 3}


def load_image_folder(
    path: str | Path, size: int | tuple[int, int] | None = None, *, channels: Literal[1, 3] | None = None
) -> ImageDataset:
    """``path/<class>/<image>.png|.jpg``: class names are the sub-folders, sorted; 2 classes make a binary task.

    Images must share one size unless ``size`` (an int or (height, width)) asks to resize them, and one channel
    count (grayscale or RGB) unless ``channels`` asks to convert them.
    """
    root = Path(path)
    if not root.is_dir():
        raise InputFileError(f"no folder at {root}", "give a folder with one sub-folder of images per class")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(class_dirs) < 2:
        raise DataError(
            f"{root} has {len(class_dirs)} class sub-folders",
            "put the images of each class in its own sub-folder (at least 2)",
        )
    files: list[Path] = []
    labels: list[int] = []
    for k, d in enumerate(class_dirs):
        found = sorted(f for f in d.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."))
        if not found:
            raise DataError(f"class folder {d} has no PNG or JPEG images", "add its images or remove the folder")
        files += found
        labels += [k] * len(found)
    target = target_size(size)
    arrays = [read_picture(f, channels) for f in files]
    images = stack_images(arrays, files, target)
    return ImageDataset(
        images=images,
        labels=np.array(labels, dtype=np.int64),
        task="binary" if len(class_dirs) == 2 else "multiclass",
        class_names=tuple(d.name for d in class_dirs),
        ids=np.array([f.relative_to(root).as_posix() for f in files]),
        provenance={
            "source": str(root),
            "format": "image-folder",
            "resized_to": "" if target is None else f"{target[0]}x{target[1]}",
        },
    )


def read_picture(source: str | Path | bytes, channels: Literal[1, 3] | None = None, *, name: str = "") -> Array:
    """One PNG/JPEG picture (a file, or its bytes) as H x W x C uint8: converted to grayscale (``channels=1``) or
    RGB (3) when asked, else as stored, which must then be grayscale or RGB. ``name`` is its name in errors."""
    from PIL import Image, UnidentifiedImageError

    what = name or ("the uploaded image" if isinstance(source, bytes) else str(source))
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            im.load()
            if channels is None and im.mode not in _PIL_CHANNELS:
                raise InputFileError(
                    f"{what} has Pillow mode {im.mode} ({len(im.getbands())} channels)",
                    "use grayscale or RGB images, or convert them (channels=1 or 3; --channels on the command line)",
                )
            picture = im if channels is None else im.convert("L" if channels == 1 else "RGB")
            arr = np.asarray(picture, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise InputFileError(f"{what} is not a readable image ({e})", "replace or remove the file") from e
    return arr[..., None] if arr.ndim == 2 else arr
