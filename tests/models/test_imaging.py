"""Image classifier training on a small synthetic task whose positive images carry a bright square."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("monai")

from sklearn.metrics import roc_auc_score

from medml.data.images import ImageDataset, load_images
from medml.errors import ConfigError, DataError, IntegrityError
from medml.models.imaging import (
    ImageNetConfig,
    ImageTrainConfig,
    ImageTrainResult,
    build_network,
    load_weights,
    predict_images,
    train_image_model,
)

SMALL = (8, 16, 32, 64)


def bright_square_npz(path: Path, n: int = 200, seed: int = 0) -> Path:
    """A MedMNIST-layout file: noise, plus an 8 x 8 bright square somewhere in each positive image."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 120, size=(n, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 2, size=n)
    for i in np.flatnonzero(y):
        r, c = rng.integers(2, 18, size=2)
        x[i, r : r + 8, c : c + 8] = 230
    cut = (int(n * 0.6), int(n * 0.8))
    parts = dict(zip(("train", "val", "test"), np.split(np.arange(n), cut), strict=True))
    np.savez(
        path,
        **{f"{s}_images": x[rows] for s, rows in parts.items()},
        **{f"{s}_labels": y[rows, None] for s, rows in parts.items()},
    )
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> ImageDataset:
    return load_images(bright_square_npz(tmp_path_factory.mktemp("npz") / "squares.npz"))


def small_config(ds: ImageDataset, **net: object) -> ImageTrainConfig:
    return ImageTrainConfig(ImageNetConfig.for_dataset(ds, widths=SMALL, **net), batch_size=32, learning_rate=1e-2)


@pytest.fixture(scope="module")
def trained(dataset: ImageDataset) -> ImageTrainResult:
    return train_image_model(dataset, small_config(dataset), epochs=4)


def test_learns_the_bright_square_quickly(trained: ImageTrainResult, dataset: ImageDataset) -> None:
    test = dataset.subset(trained.split.test)
    for tta in (False, True):
        p = predict_images(trained.model_state, replace(trained.config, tta=tta), test.images)
        assert roc_auc_score(test.labels, p) > 0.95
    assert trained.seconds < 30
    assert 1 <= trained.best_epoch <= len(trained.history) <= 4
    assert trained.val_auroc == max(e.val_auroc for e in trained.history)


def test_the_official_split_is_used(trained: ImageTrainResult, dataset: ImageDataset) -> None:
    assert trained.split.sizes() == {"train": 120, "calibration": 40, "test": 40}
    assert set(dataset.official_split[trained.split.test]) == {"test"}


def test_same_seed_gives_the_same_weights(dataset: ImageDataset, trained: ImageTrainResult) -> None:
    again = train_image_model(dataset, small_config(dataset), epochs=4)
    assert again.model_state.keys() == trained.model_state.keys()
    assert all(np.array_equal(again.model_state[k].numpy(), v.numpy()) for k, v in trained.model_state.items())
    other = train_image_model(dataset, small_config(dataset, seed=1), epochs=1)
    assert not all(np.array_equal(other.model_state[k].numpy(), v.numpy()) for k, v in trained.model_state.items())


def test_the_budget_stops_training(dataset: ImageDataset) -> None:
    result = train_image_model(dataset, small_config(dataset), epochs=50, budget_minutes=0.0)
    assert result.stopped_by == "budget"
    assert len(result.history) == 1  # the untrained network is still validated, so a model comes back
    patient = replace(small_config(dataset), patience=1000)  # the square is learnt at once: never stop early
    start = time.perf_counter()
    result = train_image_model(dataset, patient, epochs=500, budget_minutes=0.05)
    assert result.stopped_by == "budget"
    assert time.perf_counter() - start < 3 + 3  # 3 s of budget, then one batch and one validation


def test_predictions_have_the_task_shape_and_range(trained: ImageTrainResult, dataset: ImageDataset) -> None:
    p = predict_images(trained.model_state, trained.config, dataset.images[:37], batch_size=16)
    assert p.shape == (37,)
    assert ((p >= 0) & (p <= 1)).all()
    floats = predict_images(trained.model_state, trained.config, dataset.images[:37].astype(np.float32) / 255)
    np.testing.assert_allclose(floats, p, atol=1e-6)


def test_loaded_weights_reproduce_predictions_exactly(
    trained: ImageTrainResult, dataset: ImageDataset, tmp_path: Path
) -> None:
    path = tmp_path / "weights.pt"
    sha = trained.save_weights(path)
    loaded = load_weights(path, sha256=sha)
    before = predict_images(trained.model_state, trained.config, dataset.images)
    np.testing.assert_array_equal(predict_images(loaded, trained.config, dataset.images), before)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(IntegrityError, match="sha256"):
        load_weights(path, sha256=sha)


def test_weights_that_do_not_fit_the_config_are_refused(trained: ImageTrainResult, dataset: ImageDataset) -> None:
    with pytest.raises(IntegrityError, match="do not fit"):
        predict_images(trained.model_state, replace(trained.config, widths=(16, 32, 64, 128)), dataset.images)


def test_wrong_image_size_or_channels_is_a_data_error(trained: ImageTrainResult, dataset: ImageDataset) -> None:
    with pytest.raises(DataError, match="28 x 28 x 1"):
        predict_images(trained.model_state, trained.config, np.zeros((2, 32, 32, 1), np.uint8))
    with pytest.raises(DataError, match="28 x 28 x 1"):
        predict_images(trained.model_state, trained.config, np.zeros((2, 28, 28, 3), np.uint8))
    rgb = replace(dataset, images=np.repeat(dataset.images, 3, axis=-1))
    with pytest.raises(DataError, match="28 x 28 x 3 but the network takes 28 x 28 x 1"):
        train_image_model(rgb, small_config(dataset), epochs=1)


def test_multiclass_and_densenet_train_and_predict(dataset: ImageDataset) -> None:
    three = replace(dataset, labels=np.arange(len(dataset)) % 3, task="multiclass", class_names=("a", "b", "c"))
    config = ImageTrainConfig(
        ImageNetConfig.for_dataset(three, architecture="densenet", widths=(8, 4)), batch_size=32, augment=False
    )
    result = train_image_model(three, config, epochs=1)
    p = predict_images(result.model_state, result.config, three.images[:5])
    assert p.shape == (5, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)
    import torch

    assert build_network(config.net)(torch.zeros(2, 1, 28, 28)).shape == (2, 3)


def test_label_smoothing_moves_the_lowest_loss_to_1_minus_s_plus_s_over_k(dataset: ImageDataset) -> None:
    import torch

    from medml.models.imaging.train import _loss

    # closed form: the smoothed cross-entropy of one image is lowest where P(true class) = 1 - s + s / K
    for s, k in ((0.0, 2), (0.2, 2), (0.1, 4)):
        cfg = ImageNetConfig(task="multiclass" if k > 2 else "binary", n_classes=k)
        loss = _loss(cfg, np.eye(k, dtype=np.int64), weighted=False, smoothing=s)
        logits = torch.zeros(1, k, requires_grad=True)
        opt = torch.optim.LBFGS([logits], max_iter=200)

        def step(fn: torch.nn.Module = loss, z: torch.Tensor = logits, o: torch.optim.Optimizer = opt) -> torch.Tensor:
            o.zero_grad()
            value = fn(z, torch.tensor([0]))
            value.backward()
            return value

        for _ in range(5):
            opt.step(step)
        p_true = float(logits.detach().softmax(dim=1)[0, 0])
        assert p_true == pytest.approx(1 - s + s / k, abs=0.01 if s else 0.02)
    with pytest.raises(ConfigError, match="label_smoothing"):
        replace(small_config(dataset), label_smoothing=1.0)


def test_bad_configs_say_what_to_do() -> None:
    with pytest.raises(ConfigError, match="architecture"):
        ImageNetConfig(task="binary", n_classes=2, architecture="vit")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="2 classes"):
        ImageNetConfig(task="binary", n_classes=3)


def test_importing_the_package_loads_neither_torch_nor_monai() -> None:
    code = "import sys, medml.models.imaging; print([m for m in ('torch', 'monai') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "[]"
