"""Grad-CAM heat maps and the deletion check, on a synthetic task whose evidence is known: a bright square in
one of the four corners of each positive image. The maps must fall on the square's quadrant, and deleting the
most salient pixels first must lower the score faster than deleting pixels in random order."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medml.errors import ConfigError, DataError

needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None or importlib.util.find_spec("monai") is None,
    reason="the imaging extra (torch, MONAI) is not installed",
)
SMALL = (8, 16, 32, 64)


def test_importing_explain_imports_neither_torch_nor_monai() -> None:
    code = (
        "import sys, medml.explain, medml.explain.saliency; "
        "print(','.join(m for m in ('torch', 'monai') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == ""


def corner_squares(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 N x 28 x 28 noise; odd rows carry a 7 x 7 bright square in corner 0-3 (TL, TR, BL, BR)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 100, size=(n, 28, 28)).astype(np.uint8)
    y = (np.arange(n) % 2).astype(np.uint8)
    corner = rng.integers(0, 4, size=n)
    for i in np.flatnonzero(y):
        r, c = (2 if corner[i] < 2 else 19), (2 if corner[i] % 2 == 0 else 19)
        x[i, r : r + 7, c : c + 7] = 230
    return x, y, corner


def quadrant(corner: int) -> np.ndarray:
    q = np.zeros((28, 28), bool)
    q[slice(0, 14) if corner < 2 else slice(14, 28), slice(0, 14) if corner % 2 == 0 else slice(14, 28)] = True
    return q


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from medml.data.images import load_images
    from medml.models.imaging import ImageNetConfig, ImageTrainConfig, as_network_input, train_image_model
    from medml.models.imaging.predict import predict_with

    x, y, corner = corner_squares(400)
    parts = np.split(np.arange(400), [240, 320])
    path = tmp_path_factory.mktemp("corners") / "corners.npz"
    np.savez(
        path,
        **{f"{p}_images": x[r] for p, r in zip(("train", "val", "test"), parts, strict=True)},
        **{f"{p}_labels": y[r, None] for p, r in zip(("train", "val", "test"), parts, strict=True)},
    )
    ds = load_images(path)
    net_cfg = ImageNetConfig.for_dataset(ds, widths=SMALL)
    result = train_image_model(
        ds, ImageTrainConfig(net_cfg, batch_size=32, learning_rate=1e-2, augment=False), epochs=2
    )
    from medml.models.imaging import build_network

    net = build_network(net_cfg)
    net.load_state_dict(result.model_state)
    rows = parts[2]
    return {
        "net": net.eval(),
        "config": net_cfg,
        "x": as_network_input(x[rows], net_cfg),
        "images": x[rows],
        "y": y[rows],
        "corner": corner[rows],
        "score": lambda a: predict_with(net, a, net_cfg),
    }


@needs_torch
@pytest.mark.parametrize("architecture, widths", [("resnet", SMALL), ("densenet", (8, 4))])
def test_maps_have_the_input_shape_and_span_0_to_1(architecture: str, widths: tuple[int, ...]) -> None:
    from medml.explain.saliency import grad_cam, target_layer_of
    from medml.models.imaging import ImageNetConfig, build_network

    net = build_network(ImageNetConfig(task="binary", n_classes=2, architecture=architecture, widths=widths))
    x = np.random.default_rng(1).random((5, 1, 28, 28), dtype=np.float32)
    maps = grad_cam(net, x)
    assert target_layer_of(net) == {"resnet": "layer4", "densenet": "class_layers.relu"}[architecture]
    assert maps.shape == (5, 28, 28) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    assert all(m.max() == pytest.approx(1.0) and m.std() > 0.01 for m in maps)  # not constant
    assert net.training  # left as found
    import torch

    last_conv = [name for name, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)][-1]
    assert grad_cam(net, x, target_layer=last_conv).shape == (5, 28, 28)
    with pytest.raises(ConfigError, match="no layer"):
        grad_cam(net, x, target_layer="nope")
    with pytest.raises(DataError, match="N x C x H x W"):
        grad_cam(net, x[0])


@needs_torch
def test_grad_cam_falls_on_the_quadrant_of_the_square(trained: dict) -> None:
    from medml.explain.saliency import grad_cam

    p = trained["score"](trained["x"])
    assert (((p >= 0.5) == trained["y"]).mean()) > 0.9  # the tiny model learned the task
    maps = grad_cam(trained["net"], trained["x"])
    positives = np.flatnonzero((trained["y"] == 1) & (p >= 0.5))
    share = np.array([maps[i][quadrant(trained["corner"][i])].sum() / maps[i].sum() for i in positives])
    # the quadrant is a quarter of the image: a map blind to the square would put about 25% there
    assert share.mean() > 0.6 and (share > 0.4).mean() > 0.9
    # one class for all images explains that class (here the positive one, for the negatives too)
    forced = grad_cam(trained["net"], trained["x"], class_index=1)
    np.testing.assert_allclose(forced[positives], maps[positives], atol=1e-5)


@needs_torch
def test_deleting_salient_pixels_first_lowers_the_score_faster_than_random(trained: dict) -> None:
    from medml.explain.saliency import deletion_curve, grad_cam

    maps = grad_cam(trained["net"], trained["x"])
    curve = deletion_curve(trained["score"], trained["x"], maps, steps=20, n_random=3, seed=0)
    assert curve.saliency.shape == curve.random.shape == (len(trained["x"]), 21)
    np.testing.assert_allclose(curve.saliency[:, 0], curve.random[:, 0])  # nothing deleted yet
    np.testing.assert_allclose(curve.saliency[:, -1], curve.random[:, -1])  # everything deleted: the mean image
    positives = trained["y"] == 1
    assert curve.saliency_auc[positives].mean() < 0.6 * curve.random_auc[positives].mean()
    s = curve.summary()
    assert s["auc_saliency"] < s["auc_random"] and s["n_images"] == len(trained["x"]) and s["steps"] == 20
    assert len(s["fractions"]) == len(s["curve_saliency"]) == 21
    # a map that points away from the evidence (its inverse) is less faithful than Grad-CAM
    inverse = deletion_curve(trained["score"], trained["x"], 1 - maps, steps=20, n_random=1)
    assert inverse.saliency_auc[positives].mean() > curve.saliency_auc[positives].mean() + 0.2
    again = deletion_curve(trained["score"], trained["x"], maps, steps=20, n_random=3, seed=0)
    np.testing.assert_array_equal(again.random, curve.random)  # seeded


def test_deletion_curve_on_a_known_linear_score() -> None:
    """Score = mean of the top-left 4 x 4 block: deleting it first drops the score to the image mean at once."""
    from medml.explain.saliency import deletion_curve

    x = np.zeros((1, 1, 8, 8), np.float32)
    x[0, 0, :4, :4] = 1.0  # image mean 0.25

    def score(a: np.ndarray) -> np.ndarray:
        p = a[:, 0, :4, :4].mean(axis=(1, 2))
        return p.astype(np.float64)

    saliency = np.zeros((1, 8, 8))
    saliency[0, :4, :4] = 1.0
    curve = deletion_curve(score, x, saliency, steps=4, n_random=50, seed=0)
    assert curve.predicted.tolist() == [1]
    # a quarter of the pixels deleted per step: the square is gone after the first step
    np.testing.assert_allclose(curve.saliency[0], [1.0, 0.25, 0.25, 0.25, 0.25])
    # in random order the square's pixels go at the rate of all pixels: 1 - 0.75 * fraction on average
    np.testing.assert_allclose(curve.random[0], [1.0, 0.8125, 0.625, 0.4375, 0.25], atol=0.05)
    assert curve.saliency_auc[0] == pytest.approx(0.25 * 0.125 * 2 + 0.25 * 0.75 + 0.125 * 0.75 / 1, abs=0.2)
    assert curve.saliency_auc[0] < curve.random_auc[0]
    with pytest.raises(DataError, match="saliency maps have shape"):
        deletion_curve(score, x, saliency[:, :4])


def test_saliency_grid_and_overlay_are_pngs(tmp_path: Path) -> None:
    from medml.explain.saliency import overlay_png, saliency_grid_png

    images, _, _ = corner_squares(6)
    maps = np.random.default_rng(0).random((6, 28, 28))
    png = saliency_grid_png(
        images[..., None], maps, [f"image {i}" for i in range(6)], {"Correct": [0, 1, 2, 3], "Incorrect": [4]}
    )
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    from PIL import Image

    (tmp_path / "g.png").write_bytes(png)
    with Image.open(tmp_path / "g.png") as im:
        width, height = im.size
    assert width > height  # two rows of four
    assert overlay_png(images[0], maps[0], title="P 0.9").startswith(b"\x89PNG")
    with pytest.raises(DataError, match="one heat map and one caption"):
        saliency_grid_png(images, maps[:3], ["a"] * 6, {"Correct": [0]})
