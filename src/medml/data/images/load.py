"""One entry point for training data: :func:`load_images` picks the reader by what the path is."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from medml.data.images.dataset import ImageDataset
from medml.data.images.dicom import load_dicom_folder
from medml.data.images.npz import load_npz
from medml.data.images.pictures import load_image_folder
from medml.errors import ConfigError, InputFileError

__all__ = ["load_images"]


def load_images(
    path: str | Path,
    *,
    labels_csv: str | Path | None = None,
    size: int | tuple[int, int] | None = None,
    channels: Literal[1, 3] | None = None,
    window: tuple[float, float] | None = None,
    frame: int | None = None,
    class_names: Sequence[str] | None = None,
) -> ImageDataset:
    """Pick the loader by what ``path`` is: a ``.npz`` file, a DICOM folder (with ``labels_csv``, or a
    ``labels.csv`` inside it), or a folder of class sub-folders of PNG/JPEG images."""
    p = Path(path)

    def refuse(options: dict[str, object], kind: str) -> None:
        given = [k for k, v in options.items() if v is not None]
        if given:
            raise ConfigError(f"option(s) {', '.join(given)} do not apply to {kind} {p}", "leave them out")

    if p.is_file() and p.suffix.lower() == ".npz":
        refuse(
            {"labels_csv": labels_csv, "size": size, "channels": channels, "window": window, "frame": frame},
            "the .npz file",
        )
        return load_npz(p, class_names=class_names)
    if p.is_dir():
        csv = Path(labels_csv) if labels_csv is not None else p / "labels.csv"
        if labels_csv is not None or csv.is_file():
            refuse({"channels": channels, "class_names": class_names}, "the DICOM folder")
            return load_dicom_folder(p, csv, window=window, frame=frame, size=size)
        refuse({"window": window, "frame": frame, "class_names": class_names}, "the image folder")
        return load_image_folder(p, size, channels=channels)
    if p.exists():
        raise InputFileError(
            f"{p} is neither a .npz file nor a folder",
            "give a MedMNIST .npz, a folder of class sub-folders, or a DICOM folder with labels",
        )
    raise InputFileError(f"no file or folder at {p}", "check the path")
