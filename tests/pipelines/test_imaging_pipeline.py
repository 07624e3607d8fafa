"""Image classifiers through the workflow and the CLI: train, evaluate, register the weights, report; bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("monai")

from imaging_squares import write_squares_npz
from medml.config import Settings
from medml.data.images import load_images
from medml.errors import ConfigError
from medml.models.imaging import predict_bundle
from medml.pipelines.imaging import ImageWorkflowConfig, train_images
from medml.registry import list_models, load_bundle, show_model

SIZES = (120, 40, 40)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Settings, Path]:
    root = tmp_path_factory.mktemp("imaging")
    data = write_squares_npz(root / "squares.npz")
    settings = Settings(home=root / "home", data_root=root)
    steps: list[str] = []
    config = ImageWorkflowConfig(batch_size=32, n_boot=200, name="squares", calibrate=True)
    outcome = train_images(
        data, config, settings, epochs=3, budget_minutes=None, progress=lambda d, _f: steps.append(d)
    )
    assert steps[0] == "loading images" and steps[-1] == "writing report"
    return outcome, settings, data


def test_train_images_separates_the_classes_on_the_official_test_split(trained: tuple) -> None:
    outcome, _, _ = trained
    md = outcome.bundle.metadata
    assert md.split_sizes["train"] == SIZES[0] and md.split_sizes["test"] == SIZES[2]
    assert outcome.evaluation.n == SIZES[2] and outcome.evaluation.split == "test"
    assert md.metrics["auroc"] > 0.95
    assert md.metrics["auroc_low"] <= md.metrics["auroc"] <= md.metrics["auroc_high"]
    assert 0.0 <= md.metrics["accuracy_at_0_5"] <= 1.0
    assert md.metrics["reference_threshold"] == pytest.approx(0.5)  # the test prevalence
    assert "not a diagnosis" in md.intended_use and "image triage" in md.intended_use
    assert "test 40" in md.population and "official" in md.population


def test_bundle_holds_weights_not_a_pickle_and_predicts_what_was_evaluated(trained: tuple) -> None:
    outcome, settings, data = trained
    info = show_model("squares@1", settings)
    assert {f["name"] for f in info["files"]} == {"model.pt", "features.json", "metadata.json"}
    bundle = load_bundle("squares@1", settings)
    assert bundle.artifact == "torch-state-dict"
    assert bundle.metadata.params["net"]["architecture"] == "resnet"
    ds = load_images(data)
    scores = predict_bundle(bundle, ds.subset(ds.split().test).images)
    np.testing.assert_array_equal(scores, outcome.test_predictions.scores)  # calibrated, as evaluated
    cal = bundle.metadata.params["calibration"]
    assert cal["method"] == "platt" and cal["n"] == len(ds.split().calibration)
    assert bundle.metadata.calibration.startswith("sigmoid (Platt")
    with pytest.raises(ConfigError, match="not a classifier with predict_proba"):
        bundle.predict_proba(ds.images)


def test_the_serving_contract_is_written_at_training_time(trained: tuple) -> None:
    """Issue 12, item 3: an image model's bundle states how a new image is read, not only its params."""
    import json

    from medml.registry.serving import ImageServing

    _, settings, _ = trained
    stored = json.loads((settings.models_dir / "squares" / "1" / "metadata.json").read_text())
    assert stored["serving"]["kind"] == "image" and stored["serving"]["preparation"] == stored["params"]["input"]
    assert isinstance(load_bundle("squares@1", settings).metadata.serving, ImageServing)


def test_report_is_written_with_the_model_name(trained: tuple) -> None:
    outcome, _, _ = trained
    page = outcome.report_path.read_text()
    assert "squares@1" in page and "image triage" in page and "<svg" in page


def test_saliency_and_its_deletion_check_are_in_the_bundle_and_the_report(trained: tuple) -> None:
    outcome, settings, _ = trained
    saliency = load_bundle("squares@1", settings).metadata.extra["saliency"]
    d = saliency["deletion"]
    assert saliency["target_layer"] == "layer4" and d["n_images"] == SIZES[2]  # fewer test images than 64
    assert d["share_faster_than_random"] > 0.5  # on most images the maps point at the squares
    assert len(d["curve_saliency"]) == d["steps"] + 1 == 21
    assert "Grad-CAM" in outcome.bundle.metadata.extra["explanation_method"]
    page = outcome.report_path.read_text()
    assert "Where the network looked" in page and "data:image/png;base64," + saliency["grid_png"][:40] in page
    assert "Deletion curve" in page and f"{d['auc_saliency']:.3f}" in page


def test_cli_predict_writes_a_fhir_bundle_referencing_the_dicom_study(tmp_path: Path) -> None:
    pytest.importorskip("fhir.resources")
    import json

    import pydicom
    from fhir.resources.R4B.bundle import Bundle
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport
    from PIL import Image
    from pydicom.data import get_testdata_file
    from typer.testing import CliRunner

    from medml.cli import app

    mr = get_testdata_file("MR_small.dcm")  # 64 x 64 MONOCHROME2
    rng = np.random.default_rng(2)
    x = rng.integers(0, 60, size=(60, 64, 64)).astype(np.uint8)
    y = (np.arange(60) % 2).astype(np.uint8)
    x[y == 1, 20:36, 20:36] = 230
    np.savez(
        tmp_path / "big.npz",
        **{f"{p}_images": x[i::3] for i, p in enumerate(("train", "val", "test"))},
        **{f"{p}_labels": y[i::3, None] for i, p in enumerate(("train", "val", "test"))},
    )
    settings = Settings(home=tmp_path / "home", data_root=tmp_path)
    train_images(
        tmp_path / "big.npz",
        ImageWorkflowConfig(widths=(8, 16, 32, 64), n_boot=50, name="big", explain_images=8),
        settings,
        epochs=1,
        budget_minutes=None,
    )
    Image.fromarray(x[1]).save(tmp_path / "one.png")
    out = tmp_path / "fhir" / "reports.json"
    r = CliRunner().invoke(
        app,
        ["image", "predict", "big", mr, str(tmp_path / "one.png"), "--fhir", str(out)],
        env={"MEDML_HOME": str(settings.home), "COLUMNS": "200"},
    )
    assert r.exit_code == 0, r.output
    assert "FHIR:" in r.output and "2 DiagnosticReport(s)" in r.output
    bundle = json.loads(out.read_text())
    Bundle.model_validate(bundle)
    dicom_report, png_report = (DiagnosticReport.model_validate(e["resource"]) for e in bundle["entry"])
    uid = pydicom.dcmread(mr).StudyInstanceUID
    assert dicom_report.imagingStudy[0].identifier.value == f"urn:oid:{uid}"
    assert dicom_report.subject.identifier.value == pydicom.dcmread(mr).PatientID
    assert png_report.imagingStudy[0].identifier.value == str(tmp_path / "one.png")
    assert png_report.subject is None and png_report.presentedForm[0].contentType == "image/png"
    row = next(line for line in r.output.splitlines() if str(tmp_path / "one.png") in line)
    shown = float(row.replace("│", " ").split()[-1])
    prob = bundle["entry"][1]["resource"]["contained"][0]["component"][0]["valueQuantity"]["value"]
    assert prob == pytest.approx(shown, abs=5e-4)


CORNERS = ((2, 2), (2, 19), (19, 2))


def write_corners_npz(path: Path, task: str, sizes: tuple[int, int, int] = (150, 45, 45), seed: int = 0) -> Path:
    """A MedMNIST-format multiclass file (the class is the corner holding a bright square; labels N x 1) or
    multilabel file (one label per corner that may hold a square; labels N x 3), as MedMNIST stores them."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for part, n in zip(("train", "val", "test"), sizes, strict=True):
        x = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
        if task == "multiclass":
            y = np.eye(3, dtype=np.uint8)[np.arange(n) % 3]
        else:
            y = np.stack([(np.arange(n) >> k) & 1 for k in range(3)], axis=1).astype(np.uint8)
        for i, j in zip(*np.nonzero(y), strict=True):
            r, c = CORNERS[j]
            x[i, r : r + 7, c : c + 7] = 230
        arrays[f"{part}_images"] = x
        arrays[f"{part}_labels"] = y.argmax(axis=1)[:, None] if task == "multiclass" else y
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_the_same_command_trains_a_multiclass_or_multilabel_medmnist_file(tmp_path: Path, task: str) -> None:
    pytest.importorskip("fhir.resources")
    import json

    from fhir.resources.R4B.bundle import Bundle

    data = write_corners_npz(tmp_path / f"{task}.npz", task)
    home = tmp_path / "home"
    r = _cli(["train", str(data), "--epochs", "6", "--n-boot", "200", "--name", task], home)
    assert r.returncode == 0, r.stderr
    assert "macro mean over 3 of 3 classes" in r.stdout and "accuracy" in r.stdout and f"{task}@1" in r.stdout
    md = load_bundle(task, Settings(home=home, data_root=tmp_path)).metadata
    classes = md.extra["classes"]
    assert md.extra["image_task"] == task and md.split_sizes["test"] == 45
    assert [c["n_events"] for c in classes["per_class"]] == (
        [15, 15, 15] if task == "multiclass" else [int(((np.arange(45) >> k) & 1).sum()) for k in range(3)]
    )
    assert md.metrics["auroc"] == classes["macro_auroc"]["value"] > 0.9  # the corners are easy to tell apart
    assert md.metrics["auroc_low"] <= md.metrics["auroc"] <= md.metrics["auroc_high"]
    assert md.evaluation["n"] == 45 * 3  # the report's curves pool (image, class) pairs
    page = (home / "reports" / f"{task}@1.html").read_text()
    assert "Classes, one against the rest" in page and "Macro-mean AUROC" in page
    assert ("Rows: the true class" in page) == (task == "multiclass")

    few = write_corners_npz(tmp_path / "few.npz", task, sizes=(2, 2, 2), seed=1)
    out = tmp_path / "reports.json"
    r = _cli(["predict", task, str(few), "--fhir", str(out)], home)
    assert r.returncode == 0, r.stderr
    assert "P(0)" in r.stdout and "P(2)" in r.stdout
    assert ("most probable" if task == "multiclass" else "findings at 0.5") in r.stdout
    reports = json.loads(out.read_text())
    Bundle.model_validate(reports)
    observation = reports["entry"][0]["resource"]["contained"][0]
    codes = [c["code"]["coding"][0]["code"] for c in observation["component"]]
    assert {"probability:0", "probability:1", "probability:2"} <= set(codes)
    assert ("decision-threshold" in codes) == (task == "multilabel")


def test_an_ensemble_averages_its_networks_and_saves_them_as_one_state_dict(tmp_path: Path) -> None:
    from medml.models.imaging import member_states, net_config_of, predict_images

    data = write_squares_npz(tmp_path / "ens.npz", sizes=(80, 30, 30), seed=4)
    settings = Settings(home=tmp_path / "home", data_root=tmp_path)
    outcome = train_images(
        data,
        ImageWorkflowConfig(n_boot=100, name="ens", ensemble=2, explain_images=8),
        settings,
        epochs=2,
        budget_minutes=None,
    )
    bundle = load_bundle("ens@1", settings)
    members = member_states(bundle.model)
    assert len(members) == 2 and bundle.metadata.params["ensemble"] == 2
    assert [m["seed"] for m in bundle.metadata.params["members"]] == [0, 1]
    assert set(members[0]) == set(members[1]) and all(k.startswith("member") for k in bundle.model)
    test = load_images(data).subset(load_images(data).split().test)
    net = net_config_of(bundle)
    each = [predict_images(m, net, test.images) for m in members]
    assert not np.allclose(each[0], each[1])  # different seeds, different networks
    np.testing.assert_allclose(predict_bundle(bundle, test.images), (each[0] + each[1]) / 2)
    np.testing.assert_allclose(outcome.test_predictions.scores, (each[0] + each[1]) / 2)
    assert "averaged over 2 networks" in bundle.metadata.extra["explanation_method"]


def _cli(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEDML_HOME": str(home), "COLUMNS": "200"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, "-m", "medml.cli", "image", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_cli_image_train_prints_auroc_and_where_things_are(tmp_path: Path) -> None:
    data = write_squares_npz(tmp_path / "cli.npz", sizes=(60, 20, 20), seed=1)
    r = _cli(["train", str(data), "--epochs", "3", "--n-boot", "100", "--name", "cli-squares"], tmp_path / "home")
    assert r.returncode == 0, r.stderr
    assert "AUROC" in r.stdout and "95% CI" in r.stdout and "accuracy" in r.stdout
    assert "cli-squares@1" in r.stdout and "report:" in r.stdout
    assert list_models(Settings(home=tmp_path / "home", data_root=tmp_path))[0]["name"] == "cli-squares"


def test_cli_image_predict_and_report_use_the_registered_weights(trained: tuple) -> None:
    from typer.testing import CliRunner

    from medml.cli import app

    outcome, settings, data = trained
    env = {"MEDML_HOME": str(settings.home), "COLUMNS": "200"}
    r = CliRunner().invoke(app, ["image", "predict", "squares", str(data)], env=env)
    assert r.exit_code == 0, r.output
    assert "squares@1" in r.output and "image triage" in r.output
    last = sum(SIZES) - 1  # the last test image, whose score was evaluated
    assert f"{data}[{last}]" in r.output and f"{outcome.test_predictions.scores[-1]:.3f}" in r.output
    r = CliRunner().invoke(app, ["image", "report", "squares@1"], env=env)
    assert r.exit_code == 0 and "squares@1.html" in r.output


def _bad_folder(root: Path) -> Path:
    (root / "folder" / "normal").mkdir(parents=True)
    (root / "folder" / "abnormal").mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((28, 28), np.uint8)).save(root / "folder" / "normal" / "a.png")
    return root / "folder"


def dicom_folder(root: Path, n: int = 24) -> Path:
    """``n`` MR_small images (64 x 64) of ``n // 2`` patients, half of them with a bright block, and labels.csv."""
    import pydicom
    from pydicom.data import get_testdata_file

    folder = root / "dicom"
    folder.mkdir(parents=True)
    rows = ["file,label"]
    for i in range(n):
        ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
        ds.PatientID = f"P{i // 2}"
        px = ds.pixel_array.copy()
        if i % 2:
            px[16:40, 16:40] = px.max()
        ds.PixelData = px.astype(ds.pixel_array.dtype).tobytes()
        ds.save_as(folder / f"im{i}.dcm")
        rows.append(f"im{i}.dcm,{'lesion' if i % 2 else 'clear'}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


def _bad(case: str, root: Path) -> tuple[list[str], str]:
    """A bad input of issue 5's list as `medml image train` arguments, and a fragment of the error it must print."""
    from PIL import Image
    from pydicom.data import get_testdata_file

    if case == "missing":
        return [str(root / "nope.npz")], "no file or folder"
    if case == "wrong_keys":
        np.savez(root / "wrong.npz", x=np.zeros((4, 28, 28), np.uint8), y=np.zeros(4, np.uint8))
        return [str(root / "wrong.npz")], "train_images"
    if case == "empty_class":
        return [str(_bad_folder(root))], "has no PNG or JPEG images"
    if case == "wrong_channels":
        x = np.zeros((6, 28, 28, 2), np.uint8)
        y = np.zeros((6, 1), np.uint8)
        np.savez(
            root / "two.npz",
            **{f"{p}_images": x for p in ("train", "val", "test")},
            **{f"{p}_labels": y for p in ("train", "val", "test")},
        )
        return [str(root / "two.npz")], "channel"
    if case == "wrong_size":
        folder = root / "sizes"
        for k, side in (("a", 28), ("b", 32)):
            (folder / k).mkdir(parents=True)
            Image.fromarray(np.zeros((side, side), np.uint8)).save(folder / k / "x.png")
        return [str(folder)], "--size"
    folder = dicom_folder(root, n=4)
    if case == "corrupt_dicom":
        (folder / "im3.dcm").write_bytes(Path(get_testdata_file("MR_truncated.dcm")).read_bytes())
        return [str(folder)], "im3.dcm"
    if case == "labels_not_matching":
        (folder / "labels.csv").write_text((folder / "labels.csv").read_text() + "gone.dcm,clear\n")
        return [str(folder)], "gone.dcm"
    assert case == "bad_window"
    return [str(folder), "--window", "40"], "CENTER,WIDTH"


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "wrong_keys",
        "empty_class",
        "wrong_channels",
        "wrong_size",
        "corrupt_dicom",
        "labels_not_matching",
        "bad_window",
    ],
)
def test_cli_bad_input_is_one_error_line_and_registers_nothing(tmp_path: Path, case: str) -> None:
    args, fragment = _bad(case, tmp_path)
    home = tmp_path / "home"
    r = _cli(["train", *args, "--epochs", "1"], home)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    assert fragment in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert list_models(Settings(home=home, data_root=tmp_path)) == []


def test_a_dicom_folder_trains_from_the_cli_resized_and_predicts_new_dicom_files_the_same_way(tmp_path: Path) -> None:
    from pydicom.data import get_testdata_file

    from medml.data.images import read_dicom, resize_image

    folder = dicom_folder(tmp_path)
    home = tmp_path / "home"
    r = _cli(
        [
            "train",
            str(folder),
            "--size",
            "32",
            "--window",
            "600,1600",
            "--epochs",
            "2",
            "--n-boot",
            "100",
            "--name",
            "mr",
        ],
        home,
    )
    assert r.returncode == 0, r.stderr
    md = load_bundle("mr", Settings(home=home, data_root=tmp_path)).metadata
    assert md.params["input"] == {"size": 32, "channels": None, "window": [600.0, 1600.0], "frame": None}
    assert md.params["net"]["image_size"] == [32, 32] and "split by patient" in md.population
    ct = get_testdata_file("CT_small.dcm")  # 128 x 128: resized as the training images were
    r = _cli(["predict", "mr", ct], home)
    assert r.returncode == 0, r.stderr
    bundle = load_bundle("mr", Settings(home=home, data_root=tmp_path))
    expected = predict_bundle(bundle, resize_image(read_dicom(ct, window=(600, 1600)).pixels, (32, 32))[None])[0]
    assert f"{expected:.3f}" in r.stdout


def test_cli_predict_refuses_an_image_of_another_size_when_the_model_was_not_trained_resized(
    trained: tuple, tmp_path: Path
) -> None:
    from PIL import Image

    _, settings, _ = trained
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "big.png")
    r = _cli(["predict", "squares", str(tmp_path / "big.png")], settings.home)
    assert r.returncode == 2 and "40 x 40 x 1 but squares@1 takes 28 x 28 x 1" in r.stderr
    assert "Traceback" not in r.stderr
