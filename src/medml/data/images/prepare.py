"""New images prepared as a model's training images were: one path for prediction from files and the image service.

A model stores how its training images were read (:class:`ImagePreparation`: a size they were resized to, the
channels pictures were converted to, the DICOM window and frame). :func:`prepare_image` reads a picture or a DICOM
file (or its bytes) with the same readers the training loaders use (:func:`read_picture`, :func:`read_dicom`),
resizes with the same rule (:func:`resize_image`, on the pixels as read) and scales to float32 in 0-1, so a file
gives the same array whether it is a training image, a file to predict or an upload.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medml.data.images.dataset import Array
from medml.data.images.dicom import read_dicom
from medml.data.images.npz import load_npz
from medml.data.images.pictures import IMAGE_SUFFIXES, read_picture
from medml.data.images.resize import resize_image, target_size
from medml.errors import DataError, IntegrityError

__all__ = [
    "RESIZE_METHOD",
    "ChannelMismatch",
    "ImagePreparation",
    "PreparedImage",
    "prepare_files",
    "prepare_image",
    "to_unit_float",
]

Resize = Literal["as-trained", "always"]
ImageFormat = Literal["picture", "dicom", "npz"]
RESIZE_METHOD = "bilinear (Pillow), channel by channel, as medml resizes training images"
#: a DICOM Part 10 file has this after its 128-byte preamble
_DICM = (128, b"DICM")


@dataclass(frozen=True)
class ImagePreparation:
    """How a model's training images were read, stored with the model (``params["input"]``) so that prediction and
    the image service read new images the same way: ``size`` they were resized to (None: not resized), the
    ``channels`` pictures were converted to, the DICOM ``window`` (center, width) and the ``frame`` taken."""

    size: int | tuple[int, int] | None = None
    channels: Literal[1, 3] | None = None
    window: tuple[float, float] | None = None
    frame: int | None = None

    @property
    def resized(self) -> bool:
        """Whether the training images were resized, so that new images of another size are resized too."""
        return self.size is not None

    def with_frame(self, frame: int | None) -> ImagePreparation:
        """The same preparation taking ``frame`` of a multi-frame file (an upload's ``?frame=N``)."""
        return replace(self, frame=frame)

    def to_dict(self) -> dict[str, Any]:
        """What the bundle stores: ``{"size", "channels", "window", "frame"}``, JSON-ready."""
        return {
            "size": self.size if self.size is None or isinstance(self.size, int) else list(self.size),
            "channels": self.channels,
            "window": list(self.window) if self.window is not None else None,
            "frame": self.frame,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> ImagePreparation:
        """Read :meth:`to_dict`'s output; missing keys (or no dict: a model stored before this was kept) are None."""
        d = d or {}
        try:
            size, window = d.get("size"), d.get("window")
            return cls(
                size=None if size is None else int(size) if isinstance(size, int) else target_size(size),
                channels=d.get("channels"),
                window=None if not window else (float(window[0]), float(window[1])),
                frame=None if d.get("frame") is None else int(d["frame"]),
            )
        except (TypeError, ValueError, IndexError) as e:
            raise IntegrityError(
                f"the stored image input {dict(d)} is not valid ({e})", "retrain the model with this version of medml"
            ) from None


@dataclass(frozen=True)
class PreparedImage:
    """One image as a network takes it (``pixels``: H x W x C float32 in 0-1), with where it came from and what was
    done to it: its size and channels as read, the DICOM frame and window, and the size it was resized from."""

    pixels: Array
    label: str
    format: ImageFormat
    rows: int
    columns: int
    channels: int
    path: Path | None = None
    frames: int = 1
    frame: int | None = None
    window: str | None = None
    resized_from: tuple[int, int] | None = None
    patient_id: str = ""
    study_id: str = ""

    @property
    def resized_to(self) -> tuple[int, int] | None:
        """The size it was resized to, or None when it was not resized."""
        return None if self.resized_from is None else (int(self.pixels.shape[0]), int(self.pixels.shape[1]))

    def preparation(self) -> dict[str, Any]:
        """What was done, as plain data (the image service's ``preparation``): rows, columns, frames, frame,
        channels, window, and ``resized`` (None, or from, to, method and a note for the reader)."""
        resized: dict[str, Any] | None = None
        if self.resized_from is not None and self.resized_to is not None:
            (h0, w0), (h, w) = self.resized_from, self.resized_to
            resized = {
                "from": [h0, w0],
                "to": [h, w],
                "method": RESIZE_METHOD,
                "note": (
                    f"the network takes {h} x {w} images, so the {h0} x {w0} image was resized"
                    + ("" if h0 * w == w0 * h else " (its aspect ratio changed)")
                    + "; detail finer than the network's input is lost"
                ),
            }
        return {
            "rows": self.rows,
            "columns": self.columns,
            "frames": self.frames,
            "frame": self.frame,
            "channels": self.channels,
            "window": self.window,
            "resized": resized,
        }


class ChannelMismatch(DataError):
    """An image whose channel count is not the network's (``image_channels``, ``model_channels``): a grayscale
    model sent an RGB DICOM, say. Pictures never are: they are converted to the model's channels."""

    def __init__(self, what: str, fix: str, *, image_channels: int, model_channels: int) -> None:
        super().__init__(what, fix)
        self.image_channels = image_channels
        self.model_channels = model_channels


def to_unit_float(pixels: Array) -> Array:
    """H x W x C (or N x H x W x C) uint8 0-255 or float 0-1 as float32 in 0-1, as the network takes them."""
    a = np.asarray(pixels)
    return a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)


def _fit(
    pixels: Array,
    *,
    label: str,
    image_size: Sequence[int],
    in_channels: int,
    resize: bool,
    model: str,
) -> tuple[Array, tuple[int, int] | None]:
    """The one rule after reading: the channels must be the network's; resize (as read) when asked and the size
    differs, else the size must be the network's; then float32 in 0-1."""
    target = (int(image_size[0]), int(image_size[1]))
    want = " x ".join(map(str, (*target, in_channels)))
    fix = "resize the image (and convert its channels) to the model's input"
    if pixels.shape[-1] != in_channels:
        raise ChannelMismatch(
            f"{label} is {' x '.join(map(str, pixels.shape))} but {model} takes {want}",
            fix,
            image_channels=int(pixels.shape[-1]),
            model_channels=in_channels,
        )
    resized_from = None
    if resize and pixels.shape[:2] != target:
        resized_from = (int(pixels.shape[0]), int(pixels.shape[1]))
        pixels = resize_image(pixels, target)
    if pixels.shape[:2] != target:
        raise DataError(f"{label} is {' x '.join(map(str, pixels.shape))} but {model} takes {want}", fix)
    return to_unit_float(pixels), resized_from


def _kind(source: str | Path | bytes) -> Literal["picture", "dicom"]:
    if isinstance(source, bytes):
        start, magic = _DICM
        return "dicom" if source[start : start + len(magic)] == magic else "picture"
    return "picture" if Path(source).suffix.lower() in IMAGE_SUFFIXES else "dicom"


def prepare_image(
    source: str | Path | bytes,
    how: ImagePreparation,
    *,
    image_size: Sequence[int],
    in_channels: int,
    resize: Resize = "as-trained",
    kind: Literal["picture", "dicom"] | None = None,
    name: str = "",
    model: str = "the model",
) -> PreparedImage:
    """A picture or DICOM file (a path, or its bytes: an upload) as the network's input, read as ``how`` says.

    Pictures are converted to ``in_channels``; DICOM images are windowed with ``how.window`` and take
    ``how.frame``. ``resize="as-trained"`` resizes to ``image_size`` only when the training images were resized
    (else another size is refused, naming ``model``); ``"always"`` resizes any size (the image service, which says
    so in its answer). ``kind`` is "picture" or "dicom" (default: by suffix, or for bytes by the DICOM preamble);
    ``name`` names the image in errors and in ``label`` (default: the path, or "the uploaded file")."""
    kind = kind or _kind(source)
    label = name or ("the uploaded file" if isinstance(source, bytes) else str(Path(source)))
    path = None if isinstance(source, bytes) else Path(source)
    do_resize = resize == "always" or how.resized
    if kind == "picture":
        picture = read_picture(source, 1 if in_channels == 1 else 3, name=label)
        pixels, resized_from = _fit(
            picture, label=label, image_size=image_size, in_channels=in_channels, resize=do_resize, model=model
        )
        h, w, c = picture.shape
        return PreparedImage(pixels, label, "picture", h, w, c, path, resized_from=resized_from)
    dicom = read_dicom(source, window=how.window, frame=how.frame, name=label)
    pixels, resized_from = _fit(
        dicom.pixels, label=label, image_size=image_size, in_channels=in_channels, resize=do_resize, model=model
    )
    h, w, c = dicom.pixels.shape
    return PreparedImage(
        pixels,
        label,
        "dicom",
        h,
        w,
        c,
        path,
        frames=dicom.frames,
        frame=dicom.frame,
        window=dicom.window,
        resized_from=resized_from,
        patient_id=dicom.patient_id,
        study_id=dicom.study_id,
    )


def prepare_files(
    paths: Sequence[str | Path],
    how: ImagePreparation,
    *,
    image_size: Sequence[int],
    in_channels: int,
    resize: Resize = "as-trained",
    model: str = "the model",
) -> list[PreparedImage]:
    """PNG/JPEG, DICOM and MedMNIST ``.npz`` files as prepared images, in order: each image of an ``.npz``
    labelled ``file[i]``, prepared by the same rule as a file (:func:`prepare_image`)."""
    out: list[PreparedImage] = []
    for raw in paths:
        p = Path(raw)
        if p.suffix.lower() != ".npz":
            out.append(
                prepare_image(p, how, image_size=image_size, in_channels=in_channels, resize=resize, model=model)
            )
            continue
        resize_all = resize == "always" or how.resized
        for i, image in enumerate(load_npz(p).images):
            label = f"{p}[{i}]"
            pixels, resized_from = _fit(
                image, label=label, image_size=image_size, in_channels=in_channels, resize=resize_all, model=model
            )
            h, w, c = image.shape
            out.append(PreparedImage(pixels, label, "npz", h, w, c, p, resized_from=resized_from))
    return out
