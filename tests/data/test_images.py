"""Image loading: MedMNIST .npz (the real PneumoniaMNIST and built multi-class / multi-label files), PNG folders,
DICOM through pydicom checked against pydicom's own LUT functions, and a clear error for each kind of bad input."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from medml.data.images import (
    ImageDataset,
    apply_window,
    load_dicom_folder,
    load_image_folder,
    load_images,
    load_npz,
    modality_values,
    read_dicom,
)
from medml.errors import ConfigError, DataError, InputFileError, MedmlError

try:  # pydicom >= 3
    from pydicom.pixels import apply_modality_lut, apply_voi_lut
except ImportError:  # pydicom 2.4
    from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut

CT = get_testdata_file("CT_small.dcm")  # 128x128, slope 1, intercept -1024, no window
MR = get_testdata_file("MR_small.dcm")  # 64x64, window 600/1600, no rescale
CR_MONO1 = get_testdata_file("6154")  # MONOCHROME1 CR, slope/intercept and window 1600/2800
MULTIFRAME = get_testdata_file("rtdose.dcm")  # 15 frames of 10x10
TRUNCATED = get_testdata_file("MR_truncated.dcm")  # PixelData shorter than Rows x Columns


def _expect(exc: type[MedmlError], *fragments: str):
    """pytest.raises that also checks the message names what is wrong; every such error exits the CLI with 2."""
    return pytest.raises(exc, match="(?s)" + ".*".join(map(re.escape, fragments)))


# --- MedMNIST .npz --------------------------------------------------------------------------------------------------


def test_pneumoniamnist_official_split_and_counts(data_root: Path) -> None:
    path = data_root / "imaging/medmnist/pneumoniamnist.npz"
    ds = load_npz(path)
    raw = np.load(path)
    assert ds.task == "binary" and ds.channels == 1 and ds.image_size == (28, 28)
    assert ds.images.shape == (4708 + 524 + 624, 28, 28, 1) and ds.images.dtype == np.uint8
    split = ds.split()
    assert split.sizes() == {"train": 4708, "calibration": 524, "test": 624}
    for part, rows in (("train", split.train), ("val", split.calibration), ("test", split.test)):
        want = np.bincount(raw[f"{part}_labels"].ravel(), minlength=2)
        assert np.array_equal(np.bincount(ds.labels[rows], minlength=2), want), part
        assert np.array_equal(ds.images[rows][..., 0], raw[f"{part}_images"])
    # The published v2 counts (Yang et al. 2023): normal / pneumonia per part.
    assert [np.bincount(ds.labels[r]).tolist() for r in (split.train, split.calibration, split.test)] == [
        [1214, 3494],
        [135, 389],
        [234, 390],
    ]
    assert ds.provenance["format"] == "medmnist-npz" and len(ds.provenance["sha256"]) == 64
    assert load_images(path).images.shape == ds.images.shape


def _write_npz(path: Path, images: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> Path:
    np.savez(path, **{f"{k}_images": v for k, v in images.items()}, **{f"{k}_labels": v for k, v in labels.items()})
    return path


def test_multiclass_rgb_npz(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    sizes = {"train": 12, "val": 4, "test": 5}
    images = {k: rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8) for k, n in sizes.items()}
    labels = {k: rng.integers(0, 4, (n, 1)).astype(np.uint8) for k, n in sizes.items()}
    labels["train"][:4, 0] = [0, 1, 2, 3]
    ds = load_npz(_write_npz(tmp_path / "blood.npz", images, labels), class_names=["a", "b", "c", "d"])
    assert ds.task == "multiclass" and ds.channels == 3 and ds.class_names == ("a", "b", "c", "d")
    assert np.array_equal(ds.images, np.concatenate(list(images.values())))
    assert np.array_equal(ds.labels, np.concatenate(list(labels.values()))[:, 0])
    assert ds.split().sizes() == {"train": 12, "calibration": 4, "test": 5}
    assert ds.ids[12] == "val/0"


def test_multilabel_npz(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    images = {k: rng.integers(0, 256, (6, 28, 28), dtype=np.uint8) for k in ("train", "val", "test")}
    labels = {k: rng.integers(0, 2, (6, 5)).astype(np.uint8) for k in images}
    ds = load_npz(_write_npz(tmp_path / "chest.npz", images, labels))
    assert ds.task == "multilabel" and ds.labels.shape == (18, 5) and ds.class_names == ("0", "1", "2", "3", "4")
    all_labels = np.concatenate(list(labels.values()))
    assert list(ds.label_counts().values()) == all_labels.sum(axis=0).tolist()


@pytest.mark.parametrize(
    ("shape", "fragment"), [((4, 28, 28, 2), "(4, 28, 28, 2)"), ((4, 28, 28, 28), "3D MedMNIST volumes")]
)
def test_npz_wrong_channel_count(tmp_path: Path, shape: tuple[int, ...], fragment: str) -> None:
    path = _write_npz(tmp_path / "bad.npz", {"train": np.zeros(shape, np.uint8)}, {"train": np.zeros((4, 1))})
    with _expect(DataError, "train_images", fragment):
        load_npz(path)


def test_npz_bad_layouts(tmp_path: Path) -> None:
    np.savez(tmp_path / "keys.npz", x=np.zeros(3))
    with _expect(InputFileError, "no train_images", "['x']"):
        load_npz(tmp_path / "keys.npz")
    np.savez(tmp_path / "nolabels.npz", train_images=np.zeros((3, 8, 8), np.uint8))
    with _expect(InputFileError, "no train_labels"):
        load_npz(tmp_path / "nolabels.npz")
    sizes = _write_npz(
        tmp_path / "sizes.npz",
        {"train": np.zeros((3, 8, 8), np.uint8), "test": np.zeros((3, 9, 9), np.uint8)},
        {"train": np.zeros((3, 1)), "test": np.zeros((3, 1))},
    )
    with _expect(DataError, "different shapes"):
        load_npz(sizes)
    short = _write_npz(tmp_path / "short.npz", {"train": np.zeros((3, 8, 8), np.uint8)}, {"train": np.zeros((2, 1))})
    with _expect(DataError, "for 3 images"):
        load_npz(short)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with _expect(InputFileError, "junk.npz"):
        load_npz(tmp_path / "junk.npz")


# --- PNG / JPEG folders ---------------------------------------------------------------------------------------------


def _png(path: Path, array: np.ndarray) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return array


@pytest.fixture
def png_folder(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(2)
    root = tmp_path / "xrays"
    written = {
        f"{cls}/{i}.png": _png(root / cls / f"{i}.png", rng.integers(0, 256, (16, 20), dtype=np.uint8))
        for cls, n in (("normal", 3), ("pneumonia", 2))
        for i in range(n)
    }
    return root, written


def test_png_folder(png_folder: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, written = png_folder
    ds = load_images(root)
    assert ds.task == "binary" and ds.class_names == ("normal", "pneumonia")
    assert ds.images.shape == (5, 16, 20, 1) and ds.images.dtype == np.uint8
    assert ds.labels.tolist() == [0, 0, 0, 1, 1] and ds.groups is None and ds.official_split is None
    for i, name in enumerate(ds.ids):
        assert np.array_equal(ds.images[i, ..., 0], written[name])
    split = ds.split(seed=0)
    assert sorted(np.concatenate([split.train, split.calibration, split.test]).tolist()) == list(range(5))


def test_png_folder_three_classes_is_multiclass(png_folder: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, _ = png_folder
    _png(root / "covid" / "0.png", np.zeros((16, 20), np.uint8))
    ds = load_image_folder(root)
    assert ds.task == "multiclass" and ds.class_names == ("covid", "normal", "pneumonia")


def test_png_folder_sizes_refused_unless_resized(png_folder: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, _ = png_folder
    _png(root / "normal" / "big.png", np.full((32, 40), 7, np.uint8))
    with _expect(DataError, "big.png is 32x40", "size="):
        load_image_folder(root)
    ds = load_image_folder(root, size=(8, 10))
    assert ds.images.shape == (6, 8, 10, 1)
    assert (ds.images[list(ds.ids).index("normal/big.png")] == 7).all()


def test_png_folder_channels(png_folder: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, _ = png_folder
    rgb = _png(root / "pneumonia" / "colour.png", np.full((16, 20, 3), (10, 200, 30), np.uint8))
    with _expect(DataError, "colour.png has 3 channel(s)", "channels=1"):
        load_image_folder(root)
    ds = load_image_folder(root, channels=1)
    grey = ds.images[list(ds.ids).index("pneumonia/colour.png"), 0, 0, 0]
    assert grey == round(0.299 * 10 + 0.587 * 200 + 0.114 * 30)  # Pillow's ITU-R 601-2 luma
    assert rgb.shape == (16, 20, 3)
    _png(root / "normal" / "alpha.png", np.zeros((16, 20, 4), np.uint8))
    with _expect(InputFileError, "alpha.png has Pillow mode RGBA (4 channels)", "channels=1 or 3"):
        load_image_folder(root)


def test_png_folder_bad_input(tmp_path: Path, png_folder: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, _ = png_folder
    (root / "empty").mkdir()
    with _expect(DataError, "class folder", "empty has no PNG or JPEG images"):
        load_image_folder(root)
    (root / "empty").rmdir()
    (root / "normal" / "broken.png").write_bytes(b"\x89PNG not really")
    with _expect(InputFileError, "broken.png is not a readable image"):
        load_image_folder(root)
    one = tmp_path / "one"
    _png(one / "only" / "0.png", np.zeros((4, 4), np.uint8))
    with _expect(DataError, "1 class sub-folders"):
        load_image_folder(one)
    with _expect(InputFileError, "no file or folder"):
        load_images(tmp_path / "nowhere")
    with _expect(ConfigError, "window", "image folder"):
        load_images(one, window=(40, 400))


# --- single DICOM files against pydicom's own LUT functions -----------------------------------------------------------


def test_rescale_matches_pydicom_modality_lut() -> None:
    for f in (CT, CR_MONO1):
        ds = pydicom.dcmread(f)
        assert np.allclose(modality_values(ds), apply_modality_lut(ds.pixel_array, ds))
    ct = pydicom.dcmread(CT)
    assert np.array_equal(modality_values(ct), ct.pixel_array - 1024.0)  # Hounsfield units: stored - 1024


def _pydicom_window_01(ds, values: np.ndarray) -> np.ndarray:
    """pydicom's apply_voi_lut, mapped from its output range (bits stored, through the rescale) to 0-1."""
    bits, signed = int(ds.BitsStored), int(ds.PixelRepresentation) == 1
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    if "RescaleSlope" in ds:
        lo, hi = (
            lo * float(ds.RescaleSlope) + float(ds.RescaleIntercept),
            hi * float(ds.RescaleSlope) + float(ds.RescaleIntercept),
        )
    return (apply_voi_lut(values.copy(), ds) - lo) / (hi - lo)


def test_window_from_file_matches_pydicom_voi_lut() -> None:
    ds = pydicom.dcmread(MR)
    img = read_dicom(MR)
    assert img.pixels.shape == (64, 64, 1) and img.pixels.dtype == np.float32 and img.window == "file 600/1600"
    assert np.allclose(img.pixels[..., 0], _pydicom_window_01(ds, modality_values(ds)), atol=1e-6)
    assert 0 < img.pixels.min() < img.pixels.max() <= 1


def test_given_window_matches_pydicom_voi_lut() -> None:
    ds = pydicom.dcmread(CT)
    img = read_dicom(CT, window=(40, 400))
    ds.WindowCenter, ds.WindowWidth = 40, 400
    hu = modality_values(ds)
    assert np.allclose(img.pixels[..., 0], _pydicom_window_01(ds, hu), atol=1e-6)
    assert (img.pixels[hu <= 40 - 0.5 - 399 / 2] == 0).all() and (img.pixels[hu > 40 - 0.5 + 399 / 2] == 1).all()


def test_no_window_scales_min_max() -> None:
    img = read_dicom(CT)
    assert img.window == "min-max" and img.pixels.min() == 0 and img.pixels.max() == 1


def test_monochrome1_is_inverted() -> None:
    ds = pydicom.dcmread(CR_MONO1)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    center, width = float(ds.WindowCenter), float(ds.WindowWidth)
    img = read_dicom(CR_MONO1).pixels[..., 0]
    raw = ds.pixel_array.astype(float)
    # By hand: in the linear window a value v maps to (v - (c - 0.5)) / (w - 1) + 0.5; MONOCHROME1 flips it, so the
    # lowest stored value is the brightest pixel and the highest the darkest.
    value = raw * slope + intercept
    assert (center, width) == (1600, 2800) and value.min() > 200 and value.max() < 3000  # all inside the window
    for v, i in ((value.min(), raw.argmin()), (value.max(), raw.argmax())):
        assert img.ravel()[i] == pytest.approx(1 - ((v - 1599.5) / 2799 + 0.5), abs=1e-6)
    assert img.ravel()[raw.argmin()] == img.max() and img.ravel()[raw.argmax()] == img.min()
    assert np.allclose(img, 1 - _pydicom_window_01(ds, value), atol=1e-6)


def test_apply_window_functions() -> None:
    v = np.array([-1000.0, 0.0, 40.0, 1000.0])
    assert apply_window(v, 40, 400).tolist() == pytest.approx([0, (0 - 39.5) / 399 + 0.5, 0.5 / 399 + 0.5, 1])
    assert apply_window(v, 40, 400, function="LINEAR_EXACT")[2] == pytest.approx(0.5)
    assert apply_window(v, 40, 400, function="SIGMOID")[2] == pytest.approx(0.5)
    with _expect(DataError, "GAMMA"):
        apply_window(v, 40, 400, function="GAMMA")


def test_multiframe_refused_unless_a_frame_is_chosen() -> None:
    with _expect(InputFileError, "rtdose.dcm is multi-frame (15 frames)", "frame="):
        read_dicom(MULTIFRAME)
    ds = pydicom.dcmread(MULTIFRAME)
    img = read_dicom(MULTIFRAME, frame=3)
    frame = ds.pixel_array[3].astype(float)
    assert img.pixels.shape == (10, 10, 1)
    assert np.allclose(img.pixels[..., 0], (frame - frame.min()) / (frame.max() - frame.min()))
    with _expect(ConfigError, "frame 15 is out of range", "0 to 14"):
        read_dicom(MULTIFRAME, frame=15)


def test_corrupt_dicom_names_the_file(tmp_path: Path) -> None:
    with _expect(InputFileError, "pixel data of", "MR_truncated.dcm", "cannot be read"):
        read_dicom(TRUNCATED)
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\x00" * 64)
    with _expect(InputFileError, "junk.dcm is not a readable DICOM file"):
        read_dicom(junk)
    ds = pydicom.dcmread(MR)
    del ds.PixelData
    ds.save_as(tmp_path / "nopixels.dcm")
    with _expect(InputFileError, "nopixels.dcm has no PixelData"):
        read_dicom(tmp_path / "nopixels.dcm")


# --- DICOM folders with a labels CSV ----------------------------------------------------------------------------------


@pytest.fixture
def dicom_folder(tmp_path: Path) -> Path:
    """Eight copies of MR_small from four patients, two images each, in two sub-folders, with a labels CSV."""
    root = tmp_path / "dicom"
    rows = ["file,label"]
    for i in range(8):
        ds = pydicom.dcmread(MR)
        ds.PatientID = f"P{i // 2}"
        ds.PixelData = (ds.pixel_array + i).astype(ds.pixel_array.dtype).tobytes()
        path = root / f"series{i % 2}" / f"im{i}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path)
        rows.append(f"series{i % 2}/im{i}.dcm,{'pneumonia' if i % 4 < 2 else 'normal'}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_dicom_folder(dicom_folder: Path) -> None:
    ds = load_images(dicom_folder)
    assert isinstance(ds, ImageDataset)
    assert ds.task == "binary" and ds.class_names == ("normal", "pneumonia")
    assert ds.images.shape == (8, 64, 64, 1) and ds.images.dtype == np.float32
    assert ds.labels.tolist() == [1, 1, 0, 0, 1, 1, 0, 0]
    assert ds.groups is not None and ds.groups.tolist() == ["P0", "P0", "P1", "P1", "P2", "P2", "P3", "P3"]
    assert ds.provenance["group_by"] == "DICOM PatientID" and ds.provenance["windows"] == "file"
    assert np.array_equal(ds.images[0], read_dicom(dicom_folder / "series0/im0.dcm").pixels)
    split = ds.split(fractions=(0.5, 0.25, 0.25), seed=0)
    parts = [set(ds.groups[idx]) for idx in (split.train, split.calibration, split.test)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert sum(map(len, parts)) == 4


def test_dicom_folder_csv_patient_ids_and_multilabel(dicom_folder: Path) -> None:
    files = [f"series{i % 2}/im{i}.dcm" for i in range(8)]
    csv = dicom_folder / "multi.csv"
    csv.write_text(
        "file,patient_id,effusion,nodule\n"
        + "".join(f"{f},S{i % 3},{i % 2},{int(i > 4)}\n" for i, f in enumerate(files))
    )
    ds = load_dicom_folder(dicom_folder, csv, window=(100, 500))
    assert ds.task == "multilabel" and ds.class_names == ("effusion", "nodule")
    assert ds.labels[:, 1].tolist() == [0, 0, 0, 0, 0, 1, 1, 1]
    assert ds.groups is not None and ds.groups[:3].tolist() == ["S0", "S1", "S2"]
    assert ds.provenance["group_by"] == "CSV patient_id" and ds.provenance["windows"] == "given"


def _rewrite(csv: Path, edit) -> None:
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join(edit(lines)) + "\n")


def test_dicom_labels_not_matching_files(dicom_folder: Path) -> None:
    csv = dicom_folder / "labels.csv"
    original = csv.read_text()
    _rewrite(csv, lambda rows: [*rows, "series0/gone.dcm,normal"])
    with _expect(InputFileError, "1 file(s) in", "are not under", "series0/gone.dcm"):
        load_images(dicom_folder)
    csv.write_text(original)
    _rewrite(csv, lambda rows: rows[:-1])
    with _expect(DataError, "1 DICOM file(s) under", "have no row in", "series1/im7.dcm"):
        load_images(dicom_folder)
    csv.write_text(original)
    _rewrite(csv, lambda rows: [*rows, rows[1]])
    with _expect(DataError, "more than once", "series0/im0.dcm"):
        load_images(dicom_folder)
    csv.write_text(original)
    _rewrite(csv, lambda rows: [*rows[:2], "series1/im1.dcm,", *rows[3:]])
    with _expect(DataError, "1 row(s) have no label", "series1/im1.dcm"):
        load_images(dicom_folder)
    csv.write_text("path,label\n")
    with _expect(DataError, "no 'file' column"):
        load_images(dicom_folder)
    with _expect(InputFileError, "no labels CSV"):
        load_dicom_folder(dicom_folder, dicom_folder / "absent.csv")


def test_dicom_folder_sizes_and_corrupt_files(dicom_folder: Path) -> None:
    csv = dicom_folder / "labels.csv"
    original = csv.read_text()
    (dicom_folder / "ct.dcm").write_bytes(Path(CT).read_bytes())
    _rewrite(csv, lambda rows: [*rows, "ct.dcm,normal"])
    with _expect(DataError, "ct.dcm is 128x128", "size="):
        load_images(dicom_folder)
    ds = load_images(dicom_folder, size=32)
    assert ds.images.shape == (9, 32, 32, 1) and ds.images.min() >= 0 and ds.images.max() <= 1
    (dicom_folder / "ct.dcm").write_bytes(Path(TRUNCATED).read_bytes())
    with _expect(InputFileError, "ct.dcm", "cannot be read"):
        load_images(dicom_folder, size=32)
    (dicom_folder / "ct.dcm").unlink()
    csv.write_text(original)
    (dicom_folder / "frames.dcm").write_bytes(Path(MULTIFRAME).read_bytes())
    _rewrite(csv, lambda rows: [*rows, "frames.dcm,normal"])
    with _expect(InputFileError, "frames.dcm is multi-frame"):
        load_images(dicom_folder, size=16)


def test_every_input_error_exits_with_code_2() -> None:
    for exc in (InputFileError, DataError, ConfigError):
        assert issubclass(exc, MedmlError) and exc("x").exit_code == 2
