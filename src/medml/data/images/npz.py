"""MedMNIST-format ``.npz`` files: ``{train,val,test}_images`` and ``*_labels``, with the source's official split."""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medml.data.images.dataset import NPZ_SPLITS, Array, ImageDataset, TaskKind
from medml.errors import ConfigError, DataError, InputFileError, quote

__all__ = ["load_npz"]


def load_npz(path: str | Path, *, class_names: Sequence[str] | None = None) -> ImageDataset:
    """A MedMNIST-format file: ``{train,val,test}_images`` (N x H x W or N x H x W x 3) and ``*_labels``.

    Labels of shape (N, 1) make a binary or multiclass task (by the number of classes seen), (N, K) with K > 1 a
    multilabel one. The parts present are kept in ``official_split``.
    """
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"no file at {p}", "give the path of a MedMNIST .npz file")
    arrays = _read_arrays(p)
    parts = [s for s in NPZ_SPLITS if f"{s}_images" in arrays]
    if not parts:
        keys = sorted(arrays)
        shown = ", ".join(quote(k) for k in keys[:10]) + (f", ... {len(keys) - 10} more" if len(keys) > 10 else "")
        raise InputFileError(
            f"{p} has no train_images, val_images or test_images (keys: [{shown}])",
            "give a file in the MedMNIST layout",
        )
    images, labels, split = [], [], []
    for s in parts:
        if f"{s}_labels" not in arrays:
            raise InputFileError(f"{p} has {s}_images but no {s}_labels", "give a file in the MedMNIST layout")
        x, y = _npz_images(arrays[f"{s}_images"], p, s), np.asarray(arrays[f"{s}_labels"])
        if y.ndim == 1:
            y = y[:, None]
        if y.ndim != 2 or len(y) != len(x):
            raise DataError(
                f"{p}: {s}_labels has shape {y.shape} for {len(x)} images",
                "labels must be N x 1 (one class per image) or N x K (multilabel)",
            )
        images.append(x)
        labels.append(y)
        split += [s] * len(x)
    shapes = {x.shape[1:] for x in images}
    if len(shapes) > 1:
        raise DataError(
            f"{p}: the parts have images of different shapes {sorted(shapes)}",
            "every part of one file must have images of one size and channel count",
        )
    if len({y.shape[1] for y in labels}) > 1:
        raise DataError(f"{p}: the parts have labels of different widths", "fix the file")
    y_all = np.concatenate(labels).astype(np.int64)
    if (y_all < 0).any():
        raise DataError(f"{p}: negative labels", "labels must be class indices from 0")
    if y_all.shape[1] > 1:
        task: TaskKind = "multilabel"
        if not np.isin(y_all, (0, 1)).all():
            raise DataError(f"{p}: multilabel labels must be 0 or 1")
        y_out, k = y_all, y_all.shape[1]
    else:
        y_out = y_all[:, 0]
        k = int(y_out.max()) + 1
        task = "binary" if k <= 2 else "multiclass"
    names = _class_names(class_names, k, p)
    return ImageDataset(
        images=np.concatenate(images),
        labels=y_out,
        task=task,
        class_names=names,
        ids=np.array([f"{s}/{i}" for s, x in zip(parts, images, strict=True) for i in range(len(x))]),
        official_split=np.array(split),
        provenance={
            "source": str(p),
            "format": "medmnist-npz",
            "sha256": _sha256(p),
            "parts": ", ".join(f"{s} {len(x)}" for s, x in zip(parts, images, strict=True)),
        },
    )


def _read_arrays(p: Path) -> dict[str, Array]:
    """Every array of the file, read in full, so a damaged file fails here with what is wrong: empty, cut short
    (not a zip archive), a changed byte (the zip's CRC check, or the compressed stream), or a damaged header."""
    if p.stat().st_size == 0:
        raise InputFileError(f"{p} is empty (0 bytes)", "copy or download the .npz file again")
    try:
        with np.load(p, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except MemoryError:
        raise InputFileError(
            f"{p} declares arrays larger than this machine's memory (a damaged header, or too large a file)",
            "copy or download the .npz file again, or split it",
        ) from None
    except zipfile.BadZipFile as e:
        what = f"damaged ({e})" if "CRC" in str(e) else f"not a complete .npz (zip) archive ({e}): cut short?"
        raise InputFileError(f"{p} is {what}", "copy or download the .npz file again") from None
    except Exception as e:  # damaged bytes fail in numpy, zipfile, zlib or ast in many ways: all mean unreadable
        if isinstance(e, ValueError) and "allow_pickle" in str(e):
            raise InputFileError(
                f"{p} holds Python objects, not plain arrays", "save the images and labels as numeric arrays"
            ) from None
        kind = "zlib error" if isinstance(e, zlib.error) else type(e).__name__
        raise InputFileError(
            f"{p} is damaged or not a .npz file ({kind}: {quote(str(e))})", "copy or download the .npz file again"
        ) from None


def _npz_images(x: Array, path: Path, part: str) -> Array:
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim == 4 and x.shape[-1] in (2, 4):  # grey + alpha, RGBA: a channel count the networks do not take
        raise DataError(
            f"{path}: {part}_images has shape {x.shape}: {x.shape[-1]} channels per image",
            "store grayscale (N x H x W) or RGB (N x H x W x 3) images",
        )
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise DataError(
            f"{path}: {part}_images has shape {x.shape}",
            "expected N x H x W (grayscale) or N x H x W x 3 (RGB); 3D MedMNIST volumes are not 2D images",
        )
    if x.dtype == np.uint8:
        return x
    if np.issubdtype(x.dtype, np.floating):
        return x.astype(np.float32)
    raise DataError(f"{path}: {part}_images are {x.dtype}", "store images as uint8 (0-255) or float (0-1)")


def _class_names(given: Sequence[str] | None, k: int, source: Path) -> tuple[str, ...]:
    if given is None:
        return tuple(str(i) for i in range(k))
    if len(given) < k:
        raise ConfigError(f"{len(given)} class names for {k} classes in {source}", "give one name per class")
    return tuple(given)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
