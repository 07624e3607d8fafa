"""The image predictor: built from a bundle-like object (no registry), it reads files and uploads as the training
images were read, predicts as the members' mean then its calibration, and gives Grad-CAM its networks.

Importing it loads none of the training code (optuna, matplotlib, the pipelines, the report) nor torch.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from medml.data.images import load_dicom_folder, load_image_folder, to_unit_float
from medml.errors import ConfigError
from medml.models.imaging import ImageNetConfig, ImagePredictor, PlattScaling, net_config_of

CT = get_testdata_file("CT_small.dcm")  # 128 x 128


def _bundle(net: ImageNetConfig, state: dict[str, Any], **params: Any) -> SimpleNamespace:
    """A stand-in for a registered image bundle: what ``medml.registry.ModelBundle`` carries, duck-typed."""
    metadata = SimpleNamespace(
        ref="m@1",
        model_kind=f"image-{net.architecture}",
        target="lesion",
        params={"net": asdict(net), **params},
        extra={"class_names": ["clear", "lesion"], "image_task": net.task},
    )
    return SimpleNamespace(model=state, artifact="torch-state-dict", metadata=metadata)


def test_importing_the_predictor_loads_no_training_code_and_no_torch() -> None:
    code = (
        "import sys, medml.models.imaging.predictor; "
        "print(','.join(m for m in ('optuna', 'matplotlib', 'medml.pipelines', 'medml.report', 'medml.registry', "
        "'torch', 'monai') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == ""


def test_files_are_read_as_the_stored_training_input_says(tmp_path: Path) -> None:
    """A model trained on DICOM resized to 32 with a window: a new DICOM file and a PNG read through the predictor
    are the arrays the training loaders make of them."""
    folder = tmp_path / "dicom"
    folder.mkdir()
    ds = pydicom.dcmread(CT)
    ds.save_as(folder / "ct.dcm")
    ds.PatientID = "other"
    ds.save_as(folder / "other.dcm")
    (folder / "labels.csv").write_text("file,label\nct.dcm,clear\nother.dcm,lesion\n")
    trained = load_dicom_folder(folder, folder / "labels.csv", window=(40.0, 400.0), size=32)
    net = ImageNetConfig(task="binary", n_classes=2, image_size=(32, 32))
    stored = {"size": 32, "channels": None, "window": [40.0, 400.0], "frame": None}
    predictor = ImagePredictor.from_bundle(_bundle(net, {}, input=stored))
    for png_dir in ("a", "b"):
        (tmp_path / "png" / png_dir).mkdir(parents=True)
        Image.fromarray(np.arange(50 * 40, dtype=np.uint16).reshape(50, 40).astype(np.uint8)).save(
            tmp_path / "png" / png_dir / "p.png"
        )
    pictures = load_image_folder(tmp_path / "png", 32)

    images, sources = predictor.read_files([folder / "ct.dcm", tmp_path / "png" / "a" / "p.png"])
    np.testing.assert_array_equal(images[0], to_unit_float(trained.images[0]))
    np.testing.assert_array_equal(images[1], to_unit_float(pictures.images[0]))
    assert sources[0].study_uid == ds.StudyInstanceUID and sources[0].patient_id == pydicom.dcmread(CT).PatientID
    assert sources[1].label == str(tmp_path / "png" / "a" / "p.png") and sources[1].study_uid == ""
    upload = predictor.prepare((folder / "ct.dcm").read_bytes(), resize="always", kind="dicom")
    np.testing.assert_array_equal(upload.pixels, images[0])
    assert upload.preparation()["resized"]["to"] == [32, 32] and upload.window == "given 40/400"


def test_a_model_of_another_kind_is_refused() -> None:
    tabular = SimpleNamespace(
        model=object(),
        artifact="joblib",
        metadata=SimpleNamespace(ref="t@1", model_kind="lgbm", target="y", params={}, extra={}),
    )
    with pytest.raises(ConfigError, match="t@1 is a lgbm model, not an image classifier"):
        net_config_of(tabular)  # type: ignore[arg-type]


def test_an_ensemble_predicts_its_members_mean_calibrated_and_explains_with_its_networks() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("monai")
    from medml.explain.saliency import ensemble_grad_cam, grad_cam
    from medml.models.imaging import build_network, ensemble_state, predict_images

    net = ImageNetConfig(task="binary", n_classes=2, image_size=(16, 16), widths=(4, 4, 4, 4))
    states = [build_network(ImageNetConfig(**{**asdict(net), "seed": s})).state_dict() for s in (0, 1)]
    platt = PlattScaling(slope=2.0, intercept=-0.5, n=10, events=5)
    bundle = _bundle(net, ensemble_state(states), calibration=platt.to_dict(), ensemble=2)
    predictor = ImagePredictor.from_bundle(bundle)
    images = np.random.default_rng(0).random((5, 16, 16, 1)).astype(np.float32)

    each = [predict_images(s, net, images) for s in states]
    assert predictor.n_members == 2 and len(predictor.networks) == 2
    np.testing.assert_allclose(predictor.predict(images, calibrated=False), (each[0] + each[1]) / 2)
    np.testing.assert_allclose(predictor.predict(images), platt.apply((each[0] + each[1]) / 2))

    x = predictor.network_input(images)
    maps = ensemble_grad_cam(predictor.networks, x, score=predictor.score)
    assert maps.shape == (5, 16, 16) and maps.min() >= 0.0 and maps.max() <= 1.0
    one = ensemble_grad_cam(predictor.networks[:1], x)
    np.testing.assert_array_equal(one, grad_cam(predictor.networks[0], x))
    with pytest.raises(ConfigError, match="score="):
        ensemble_grad_cam(predictor.networks, x)
    fhir = predictor.fhir_bundle([], np.zeros(0))
    assert fhir["resourceType"] == "Bundle" and fhir["entry"] == []
