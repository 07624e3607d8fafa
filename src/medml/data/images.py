"""Image datasets: a MedMNIST-format ``.npz``, a folder of PNG/JPEG files per class, a folder of DICOM files with a
labels CSV. numpy, Pillow and pydicom only; the training step turns an :class:`ImageDataset` into tensors itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from medml.data.splits import Split, patient_split
from medml.errors import ConfigError, DataError, InputFileError

TaskKind = Literal["binary", "multiclass", "multilabel"]
Array = npt.NDArray[Any]

#: the three parts of a MedMNIST file, in the order rows are concatenated
NPZ_SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
#: Pillow modes read as they are, with their channel count; any other mode needs ``channels=`` to convert
_PIL_CHANNELS = {"L": 1, "RGB": 3}
#: columns of a DICOM labels CSV that are not labels
_ID_COLUMNS = ("file", "patient_id", "study_id")


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


# --- MedMNIST .npz --------------------------------------------------------------------------------------------------


def load_npz(path: str | Path, *, class_names: Sequence[str] | None = None) -> ImageDataset:
    """A MedMNIST-format file: ``{train,val,test}_images`` (N x H x W or N x H x W x 3) and ``*_labels``.

    Labels of shape (N, 1) make a binary or multiclass task (by the number of classes seen), (N, K) with K > 1 a
    multilabel one. The parts present are kept in ``official_split``.
    """
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"no file at {p}", "give the path of a MedMNIST .npz file")
    try:
        with np.load(p, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as e:
        raise InputFileError(f"{p} is not a readable .npz file ({e})", "check the file; re-download it") from e
    parts = [s for s in NPZ_SPLITS if f"{s}_images" in arrays]
    if not parts:
        raise InputFileError(
            f"{p} has no train_images, val_images or test_images (keys: {sorted(arrays)})",
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


# --- a folder of PNG / JPEG files, one sub-folder per class ---------------------------------------------------------


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
    target = _target_size(size)
    arrays = [_read_picture(f, channels) for f in files]
    images = _stack(arrays, files, target)
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


def _read_picture(path: Path, channels: Literal[1, 3] | None) -> Array:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if channels is None and im.mode not in _PIL_CHANNELS:
                raise InputFileError(
                    f"{path} has Pillow mode {im.mode} ({len(im.getbands())} channels)",
                    "use grayscale or RGB images, or convert them (channels=1 or 3; --channels on the command line)",
                )
            picture = im if channels is None else im.convert("L" if channels == 1 else "RGB")
            arr = np.asarray(picture, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise InputFileError(f"{path} is not a readable image ({e})", "replace or remove the file") from e
    return arr[..., None] if arr.ndim == 2 else arr


def _target_size(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    h, w = (size, size) if isinstance(size, int) else size
    if h < 1 or w < 1:
        raise ConfigError(f"size {size} is not a positive image size", "give an int or (height, width)")
    return int(h), int(w)


def _stack(arrays: list[Array], files: Sequence[Path], target: tuple[int, int] | None) -> Array:
    """One N x H x W x C array; the first file sets the channel count (and the size when none is asked for)."""
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


def resize_image(a: Array, target: tuple[int, int]) -> Array:
    """Bilinear resize of one H x W x C image with Pillow, channel by channel (mode L for uint8, F for float32):
    how images are resized for training and, the same way, for prediction and the image service."""
    from PIL import Image

    if a.shape[:2] == target:
        return a
    h, w = target
    planes = [
        np.asarray(Image.fromarray(a[..., c]).resize((w, h), Image.Resampling.BILINEAR)) for c in range(a.shape[-1])
    ]
    return np.stack(planes, axis=-1).astype(a.dtype)


# --- DICOM ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DicomImage:
    """One DICOM image after rescale, windowing and MONOCHROME1 inversion: H x W x C float32 in 0-1."""

    pixels: Array
    patient_id: str
    study_id: str
    window: str


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


def read_dicom(path: str | Path, *, window: tuple[float, float] | None = None, frame: int | None = None) -> DicomImage:
    """Read one DICOM image to H x W x C float32 in 0-1.

    Grayscale: rescale slope/intercept, then the window ``(center, width)`` given, else the file's first Window
    Center/Width, else the image's own min-max; MONOCHROME1 is inverted so that higher is brighter. RGB: / max value.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    p = Path(path)
    try:
        ds = pydicom.dcmread(p)
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError) as e:
        raise InputFileError(f"{p} is not a readable DICOM file ({e})", "replace or remove the file") from e
    values = modality_values(ds, frame, source=str(p))
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    samples = int(ds.get("SamplesPerPixel") or 1)
    if samples == 3 and photometric == "RGB":
        top = float(2 ** int(ds.get("BitsStored") or 8) - 1)
        return DicomImage(
            (values / top).astype(np.float32), _tag(ds, "PatientID"), _tag(ds, "StudyInstanceUID"), "colour / max"
        )
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
    return DicomImage(out.astype(np.float32)[..., None], _tag(ds, "PatientID"), _tag(ds, "StudyInstanceUID"), how)


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
    images = _stack([r.pixels for r in read], files, _target_size(size))
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


# --- one entry point ------------------------------------------------------------------------------------------------


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
