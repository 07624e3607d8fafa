"""One preparation path: a picture or a DICOM file gives the same array as a training image (the folder loaders),
as a file to predict (``prepare_files``) and as uploaded bytes (``prepare_image``), resized or not.

References from outside: Pillow writes the PNGs; pydicom's own test files and pydicom itself give the DICOM data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from medml.data.images import (
    ChannelMismatch,
    ImagePreparation,
    load_dicom_folder,
    load_image_folder,
    prepare_files,
    prepare_image,
    read_dicom,
    read_dicom_header,
    to_unit_float,
)
from medml.errors import DataError, InputFileError, IntegrityError

CT = get_testdata_file("CT_small.dcm")  # 128 x 128, no window in the file
MR = get_testdata_file("MR_small.dcm")  # 64 x 64, window 600/1600
MULTIFRAME = get_testdata_file("rtdose.dcm")  # 15 frames of 10 x 10
TRUNCATED = get_testdata_file("MR_truncated.dcm")
RGB = get_testdata_file("SC_rgb_small_odd.dcm")  # 3 x 3 RGB


def _picture_folder(root: Path, shape: tuple[int, ...]) -> Path:
    """Two class folders of one PNG each, written with Pillow: the picture under test is ``a/x.png``."""
    rng = np.random.default_rng(7)
    for cls, name in (("a", "x.png"), ("b", "y.png")):
        (root / cls).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, size=shape).astype(np.uint8)).save(root / cls / name)
    return root / "a" / "x.png"


@pytest.mark.parametrize("shape, channels", [((37, 29), 1), ((37, 29, 3), 3)], ids=["grayscale", "rgb"])
@pytest.mark.parametrize("size", [None, 20])
def test_a_picture_is_one_array_for_training_prediction_and_upload(
    tmp_path: Path, shape: tuple[int, ...], channels: int, size: int | None
) -> None:
    picture = _picture_folder(tmp_path, shape)
    trained = load_image_folder(tmp_path, size)
    image_size = trained.image_size
    training = to_unit_float(trained.images[list(trained.ids).index("a/x.png")])
    how = ImagePreparation(size=size)
    (predicted,) = prepare_files([picture], how, image_size=image_size, in_channels=channels)
    uploaded = prepare_image(picture.read_bytes(), how, image_size=image_size, in_channels=channels)
    service = prepare_image(
        picture.read_bytes(), ImagePreparation(), image_size=image_size, in_channels=channels, resize="always"
    )
    for prepared in (predicted, uploaded, service):
        assert prepared.pixels.dtype == np.float32 and prepared.pixels.shape == (*image_size, channels)
        np.testing.assert_array_equal(prepared.pixels, training)
    assert predicted.label == str(picture) and uploaded.label == "the uploaded file"
    assert (predicted.rows, predicted.columns, predicted.channels) == (37, 29, channels)
    assert predicted.resized_from == (None if size is None else (37, 29))
    with Image.open(picture) as im:  # without a resize, the array is Pillow's pixels / 255
        want = np.asarray(im, dtype=np.float32).reshape(37, 29, channels) / 255.0
    if size is None:
        np.testing.assert_array_equal(training, want)


def _dicom_folder(root: Path) -> Path:
    """CT_small and a copy of it with a bright block, labelled; the file under test is ``ct.dcm``."""
    root.mkdir()
    ds = pydicom.dcmread(CT)
    ds.save_as(root / "ct.dcm")
    px = ds.pixel_array.copy()
    px[40:80, 40:80] = px.max()
    ds.PixelData = px.tobytes()
    ds.save_as(root / "block.dcm")
    (root / "labels.csv").write_text("file,label\nct.dcm,clear\nblock.dcm,lesion\n")
    return root / "ct.dcm"


@pytest.mark.parametrize("window", [None, (40.0, 400.0)])
@pytest.mark.parametrize("size", [None, 32])
def test_a_dicom_file_is_one_array_for_training_prediction_and_upload(
    tmp_path: Path, window: tuple[float, float] | None, size: int | None
) -> None:
    ct = _dicom_folder(tmp_path / "dicom")
    trained = load_dicom_folder(ct.parent, ct.parent / "labels.csv", window=window, size=size)
    training = to_unit_float(trained.images[list(trained.ids).index("ct.dcm")])
    image_size = trained.image_size
    how = ImagePreparation(size=size, window=window)
    (predicted,) = prepare_files([ct], how, image_size=image_size, in_channels=1)
    uploaded = prepare_image(ct.read_bytes(), how, image_size=image_size, in_channels=1, kind="dicom")
    service = prepare_image(
        ct.read_bytes(), ImagePreparation(window=window), image_size=image_size, in_channels=1, resize="always"
    )
    for prepared in (predicted, uploaded, service):
        assert prepared.format == "dicom" and prepared.pixels.dtype == np.float32
        np.testing.assert_array_equal(prepared.pixels, training)
    ds = pydicom.dcmread(CT)
    assert (uploaded.patient_id, uploaded.study_id) == (ds.PatientID, ds.StudyInstanceUID)
    report = service.preparation()
    assert (report["rows"], report["columns"], report["frames"], report["frame"]) == (128, 128, 1, None)
    assert report["channels"] == 1
    assert report["window"] == ("min-max" if window is None else "given 40/400")
    if size is None:
        assert report["resized"] is None and predicted.resized_to is None
    else:
        assert report["resized"]["from"] == [128, 128] and report["resized"]["to"] == [32, 32]
        assert "bilinear" in report["resized"]["method"] and "aspect ratio" not in report["resized"]["note"]


def test_a_frame_of_a_multi_frame_upload_is_that_frame_as_read_from_the_file() -> None:
    data = Path(MULTIFRAME).read_bytes()
    prepared = prepare_image(data, ImagePreparation().with_frame(7), image_size=(10, 10), in_channels=1)
    np.testing.assert_array_equal(prepared.pixels, read_dicom(MULTIFRAME, frame=7).pixels)
    assert (prepared.frames, prepared.frame) == (15, 7) and prepared.preparation()["resized"] is None
    with pytest.raises(InputFileError, match="multi-frame"):
        prepare_image(data, ImagePreparation(), image_size=(10, 10), in_channels=1)


def test_an_image_of_another_size_is_refused_unless_the_model_was_trained_resized(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(DataError, match="40 x 40 x 1 but m@1 takes 28 x 28 x 1"):
        prepare_files([tmp_path / "big.png"], ImagePreparation(), image_size=(28, 28), in_channels=1, model="m@1")
    (resized,) = prepare_files([tmp_path / "big.png"], ImagePreparation(size=28), image_size=(28, 28), in_channels=1)
    assert resized.resized_from == (40, 40) and resized.pixels.shape == (28, 28, 1)


def test_an_rgb_dicom_for_a_grayscale_model_is_a_channel_mismatch() -> None:
    with pytest.raises(ChannelMismatch, match="but m@1 takes 28 x 28 x 1") as caught:
        prepare_image(Path(RGB).read_bytes(), ImagePreparation(), image_size=(28, 28), in_channels=1, model="m@1")
    assert (caught.value.image_channels, caught.value.model_channels) == (3, 1)
    assert isinstance(caught.value, DataError)


def test_uploaded_bytes_that_are_not_a_readable_dicom_image_say_so_without_a_path() -> None:
    how, shape = ImagePreparation(), {"image_size": (28, 28), "in_channels": 1}
    with pytest.raises(InputFileError, match="the uploaded file is not a readable DICOM file"):
        prepare_image(b"this is not an image" * 20, how, kind="dicom", **shape)  # type: ignore[arg-type]
    with pytest.raises(InputFileError, match="the uploaded file is not a readable DICOM file"):
        read_dicom_header(b"this is not an image" * 20)
    with pytest.raises(InputFileError, match="pixel data of the uploaded file"):
        prepare_image(Path(TRUNCATED).read_bytes(), how, **shape)  # type: ignore[arg-type]


def test_the_header_of_uploaded_bytes_matches_pydicom() -> None:
    ds = pydicom.dcmread(MR)
    header = read_dicom_header(Path(MR).read_bytes())
    assert (header.rows, header.columns, header.frames, header.samples_per_pixel) == (ds.Rows, ds.Columns, 1, 1)
    assert (header.patient_id, header.study_id) == (ds.PatientID, ds.StudyInstanceUID)
    assert read_dicom_header(MULTIFRAME).frames == 15


def test_the_preparation_is_stored_as_before_and_read_back() -> None:
    how = ImagePreparation(size=32, window=(600.0, 1600.0))
    assert how.to_dict() == {"size": 32, "channels": None, "window": [600.0, 1600.0], "frame": None}
    assert ImagePreparation.from_dict(how.to_dict()) == how and how.resized
    assert ImagePreparation.from_dict(None) == ImagePreparation() and not ImagePreparation().resized
    rect = ImagePreparation(size=(24, 32), channels=3, frame=2)
    assert ImagePreparation.from_dict(rect.to_dict()) == rect
    with pytest.raises(IntegrityError, match="stored image input"):
        ImagePreparation.from_dict({"window": [40]})
