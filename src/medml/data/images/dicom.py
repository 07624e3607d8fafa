"""DICOM images: stored values to modality values (rescale), VOI windowing to 0-1, MONOCHROME1 inverted; a folder
of DICOM files with a labels CSV is a dataset.

:func:`read_dicom` is the one DICOM reader, for training, prediction and uploads (a file's bytes) alike.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from medml.data.images.dataset import Array, ImageDataset, TaskKind
from medml.data.images.resize import stack_images, target_size
from medml.errors import ConfigError, DataError, InputFileError

__all__ = [
    "DicomHeader",
    "DicomImage",
    "apply_window",
    "load_dicom_folder",
    "modality_values",
    "read_dicom",
    "read_dicom_header",
]

#: columns of a DICOM labels CSV that are not labels
_ID_COLUMNS = ("file", "patient_id", "study_id")
#: what pydicom raises for a file that is not DICOM, or is cut short
_UNREADABLE = (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError)


@dataclass(frozen=True)
class DicomImage:
    """One DICOM image after rescale, windowing and MONOCHROME1 inversion: H x W x C float32 in 0-1.

    ``window`` says how it was windowed; ``frames`` is the file's frame count and ``frame`` the one taken from a
    multi-frame file (None for a single frame)."""

    pixels: Array
    patient_id: str
    study_id: str
    window: str
    frames: int = 1
    frame: int | None = None


@dataclass(frozen=True)
class DicomHeader:
    """What a DICOM file's header says about its image, read without its pixels (to check a file cheaply)."""

    rows: int
    columns: int
    frames: int
    samples_per_pixel: int
    photometric: str
    patient_id: str
    study_id: str


def _source_name(source: str | Path | bytes, name: str) -> str:
    return name or ("the uploaded file" if isinstance(source, bytes) else str(Path(source)))


def _open(source: str | Path | bytes, name: str, *, pixels: bool = True) -> Any:
    """The pydicom Dataset of a file or of a file's bytes; InputFileError naming it when it is not DICOM."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(
            io.BytesIO(source) if isinstance(source, bytes) else Path(source), stop_before_pixels=not pixels
        )
    except (InvalidDicomError, *_UNREADABLE) as e:
        raise InputFileError(f"{name} is not a readable DICOM file ({e})", "replace or remove the file") from e


def read_dicom_header(source: str | Path | bytes, *, name: str = "") -> DicomHeader:
    """The header of a DICOM file (a path, or its bytes, e.g. an upload): size, frames, channels, patient, study."""
    ds = _open(source, _source_name(source, name), pixels=False)
    try:
        return DicomHeader(
            rows=int(ds.get("Rows") or 0),
            columns=int(ds.get("Columns") or 0),
            frames=int(ds.get("NumberOfFrames") or 1),
            samples_per_pixel=int(ds.get("SamplesPerPixel") or 1),
            photometric=str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper(),
            patient_id=_tag(ds, "PatientID"),
            study_id=_tag(ds, "StudyInstanceUID"),
        )
    except _UNREADABLE as e:
        what = _source_name(source, name)
        raise InputFileError(f"{what} is not a readable DICOM file ({e})", "replace or remove the file") from e


def modality_values(ds: Any, frame: int | None = None, *, source: str = "") -> Array:
    """Stored pixel values -> modality values (Hounsfield units for CT): ``value * RescaleSlope + RescaleIntercept``.

    ``ds`` is a pydicom Dataset. Multi-frame data is refused unless ``frame`` (from 0) picks one frame.
    """
    name = source or str(getattr(ds, "filename", "") or "the DICOM dataset")
    if "PixelData" not in ds:
        raise InputFileError(f"{name} has no PixelData", "it is not an image (a report or structured set?): remove it")
    if ds.get("ModalityLUTSequence"):
        raise InputFileError(
            f"{name} uses a Modality LUT Sequence, which medml does not apply",
            "convert it to rescale slope/intercept, or leave it out",
        )
    n_frames = int(ds.get("NumberOfFrames") or 1)
    if n_frames > 1 and frame is None:
        raise InputFileError(f"{name} is multi-frame ({n_frames} frames)", "pass frame=<index from 0> to take one")
    if frame is not None and not 0 <= frame < n_frames:
        raise ConfigError(
            f"frame {frame} is out of range for {name}, which has {n_frames} frame(s)",
            f"give a frame from 0 to {n_frames - 1}",
        )
    try:
        arr = np.asarray(ds.pixel_array)
    except (ValueError, RuntimeError, NotImplementedError, AttributeError, TypeError, KeyError) as e:
        raise InputFileError(
            f"the pixel data of {name} cannot be read ({e})",
            "the file is corrupt or needs a decoder (pylibjpeg, gdcm): fix or remove it",
        ) from e
    if n_frames > 1:
        arr = arr[frame]
    samples = int(ds.get("SamplesPerPixel") or 1)
    if samples != 1:
        return arr.astype(np.float64)
    slope = float(ds.get("RescaleSlope") if ds.get("RescaleSlope") is not None else 1.0)
    intercept = float(ds.get("RescaleIntercept") if ds.get("RescaleIntercept") is not None else 0.0)
    return arr.astype(np.float64) * slope + intercept


def apply_window(values: Array, center: float, width: float, *, function: str = "LINEAR") -> Array:
    """VOI windowing (DICOM PS3.3 C.11.2.1.2) of modality values to 0-1: LINEAR, LINEAR_EXACT or SIGMOID."""
    f = function.upper()
    if f == "SIGMOID":
        if width <= 0:
            raise DataError(f"window width {width} must be > 0 for SIGMOID")
        return np.asarray(1.0 / (1.0 + np.exp(-4.0 * (values - center) / width)))
    if f not in ("LINEAR", "LINEAR_EXACT"):
        raise DataError(f"VOI LUT function {function!r} is not LINEAR, LINEAR_EXACT or SIGMOID")
    if f == "LINEAR":
        if width < 1:
            raise DataError(f"window width {width} must be >= 1 for LINEAR windowing")
        center, width = center - 0.5, width - 1
    elif width <= 0:
        raise DataError(f"window width {width} must be > 0 for LINEAR_EXACT windowing")
    if width == 0:  # LINEAR with width 1: a threshold
        return (values > center).astype(np.float64)
    return np.clip((values - center) / width + 0.5, 0.0, 1.0)


def read_dicom(
    source: str | Path | bytes,
    *,
    window: tuple[float, float] | None = None,
    frame: int | None = None,
    name: str = "",
) -> DicomImage:
    """Read one DICOM image (a file, or its bytes) to H x W x C float32 in 0-1; ``name`` is its name in errors.

    Grayscale: rescale slope/intercept, then the window ``(center, width)`` given, else the file's first Window
    Center/Width, else the image's own min-max; MONOCHROME1 is inverted so that higher is brighter. RGB: / max value.
    """
    p = _source_name(source, name)
    ds = _open(source, p)
    values = modality_values(ds, frame, source=p)
    frames = int(ds.get("NumberOfFrames") or 1)
    taken = frame if frames > 1 else None
    patient, study = _tag(ds, "PatientID"), _tag(ds, "StudyInstanceUID")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    samples = int(ds.get("SamplesPerPixel") or 1)
    if samples == 3 and photometric == "RGB":
        top = float(2 ** int(ds.get("BitsStored") or 8) - 1)
        return DicomImage((values / top).astype(np.float32), patient, study, "colour / max", frames, taken)
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise InputFileError(
            f"{p} has {samples} samples per pixel, photometric {photometric}",
            "medml reads MONOCHROME1, MONOCHROME2 and RGB images",
        )
    how: str
    if window is not None:
        center, width = window
        how = f"given {center:g}/{width:g}"
    elif ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
        how = f"file {center:g}/{width:g}"
    else:
        center, width = float("nan"), float("nan")
        how = "min-max"
    if how == "min-max":
        lo, hi = float(values.min()), float(values.max())
        out = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    else:
        function = str(ds.get("VOILUTFunction") or "LINEAR") if window is None else "LINEAR"
        try:
            out = apply_window(values, center, width, function=function)
        except DataError as e:
            raise DataError(f"{p}: {e.what}", "pass window=(center, width) to override the file's window") from e
    if photometric == "MONOCHROME1":
        out = 1.0 - out
    return DicomImage(out.astype(np.float32)[..., None], patient, study, how, frames, taken)


def _first(value: Any) -> float:
    """The first of a multi-valued DICOM element (Window Center/Width may hold several windows)."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        return float(value)
    return float(value[0])


def _tag(ds: Any, keyword: str) -> str:
    return str(ds.get(keyword) or "")


def load_dicom_folder(
    path: str | Path,
    labels_csv: str | Path,
    *,
    window: tuple[float, float] | None = None,
    frame: int | None = None,
    size: int | tuple[int, int] | None = None,
) -> ImageDataset:
    """DICOM files under ``path`` (``.dcm`` or no suffix) with labels from a CSV.

    The CSV has a ``file`` column (path relative to ``path``), optional ``patient_id`` / ``study_id`` columns, and
    either one ``label`` column (class names or indices; 2 classes make a binary task) or several 0/1 columns, one
    per label (multilabel). Patient ids come from the CSV, else the files' PatientID, else StudyInstanceUID.
    """
    root = Path(path)
    if not root.is_dir():
        raise InputFileError(f"no folder at {root}", "give the folder that holds the DICOM files")
    table = _read_labels_csv(Path(labels_csv))
    on_disk = {
        f.relative_to(root).as_posix()
        for f in root.rglob("*")
        if f.is_file()
        and (f.suffix.lower() == ".dcm" or f.suffix == "")
        and f.name != "DICOMDIR"
        and not f.name.startswith(".")
    }
    listed = [Path(str(f)).as_posix() for f in table["file"]]
    missing = [f for f in listed if f not in on_disk]
    if missing:
        raise InputFileError(
            f"{len(missing)} file(s) in {labels_csv} are not under {root}: {_few(missing)}",
            "fix the paths in the CSV (relative to the folder) or add the files",
        )
    extra = sorted(on_disk - set(listed))
    if extra:
        raise DataError(
            f"{len(extra)} DICOM file(s) under {root} have no row in {labels_csv}: {_few(extra)}",
            "add a row for each file, or move the unlabelled files out of the folder",
        )
    files = [root / f for f in listed]
    read = [read_dicom(f, window=window, frame=frame) for f in files]
    images = stack_images([r.pixels for r in read], files, target_size(size))
    labels, task, names = _labels_from_table(table, Path(labels_csv))
    groups, group_by = _dicom_groups(table, read)
    return ImageDataset(
        images=images,
        labels=labels,
        task=task,
        class_names=names,
        ids=np.array(listed),
        groups=groups,
        provenance={
            "source": str(root),
            "labels": str(labels_csv),
            "format": "dicom-folder",
            "group_by": group_by,
            "windows": ", ".join(sorted({r.window.split(" ")[0] for r in read})),
            "frame": "" if frame is None else str(frame),
        },
    )


def _read_labels_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise InputFileError(f"no labels CSV at {path}", "give a CSV with a file column and label column(s)")
    try:
        table = pd.read_csv(path, dtype={"file": str, "patient_id": str, "study_id": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InputFileError(f"{path} is not a readable CSV ({e})", "save it as comma-separated UTF-8") from e
    if "file" not in table.columns:
        raise DataError(
            f"{path} has no 'file' column (columns: {list(table.columns)})", "name the column of file paths 'file'"
        )
    if table.empty:
        raise DataError(f"{path} has no rows", "add one row per DICOM file")
    dup = table["file"][table["file"].duplicated()].unique().tolist()
    if dup:
        raise DataError(f"{path} lists {len(dup)} file(s) more than once: {_few(dup)}", "keep one row per file")
    return table


def _labels_from_table(table: pd.DataFrame, path: Path) -> tuple[Array, TaskKind, tuple[str, ...]]:
    label_cols = [c for c in table.columns if c not in _ID_COLUMNS]
    if not label_cols:
        raise DataError(f"{path} has no label column", "add a 'label' column, or one 0/1 column per label")
    blanks = table[label_cols].isna().any(axis=1)
    if blanks.any():
        raise DataError(
            f"{path}: {int(blanks.sum())} row(s) have no label, e.g. {table['file'][blanks].iloc[0]}",
            "fill in every label",
        )
    if label_cols == ["label"]:
        values = table["label"]
        names_sorted = sorted(values.unique().tolist())  # integers sort as numbers, text as text
        if len(names_sorted) < 2:
            raise DataError(f"{path}: every image has the label {names_sorted[0]!r}", "a task needs 2 or more classes")
        index = {v: i for i, v in enumerate(names_sorted)}
        labels = values.map(index).to_numpy(np.int64)
        task: TaskKind = "binary" if len(names_sorted) == 2 else "multiclass"
        return labels, task, tuple(str(v) for v in names_sorted)
    if len(label_cols) < 2:
        raise DataError(
            f"{path}: label column {label_cols[0]!r} is not named 'label'",
            "name a single label column 'label', or give one 0/1 column per label",
        )
    matrix = table[label_cols].to_numpy()
    if not np.isin(matrix, (0, 1)).all():
        raise DataError(f"{path}: multilabel columns {label_cols} must hold only 0 and 1")
    return matrix.astype(np.int64), "multilabel", tuple(str(c) for c in label_cols)


def _dicom_groups(table: pd.DataFrame, read: Sequence[DicomImage]) -> tuple[Array | None, str]:
    for column in ("patient_id", "study_id"):
        if column in table.columns and table[column].notna().all():
            return table[column].astype(str).to_numpy(), f"CSV {column}"
    for attr, tag in (("patient_id", "PatientID"), ("study_id", "StudyInstanceUID")):
        ids = [cast(str, getattr(r, attr)) for r in read]
        if all(ids):
            return np.array(ids), f"DICOM {tag}"
    return None, "none (each image its own group)"


def _few(items: Sequence[str], n: int = 5) -> str:
    shown = ", ".join(str(i) for i in items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")
