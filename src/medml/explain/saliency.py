"""Where an image classifier looked: Grad-CAM heat maps (MONAI's ``monai.visualize.GradCAM``), and a check that
they are faithful to the model: deleting the most salient pixels first must lower the predicted class's score
faster than deleting pixels in random order (the deletion curve of Petsiuk et al., RISE, BMVC 2018).

Deleted pixels are set to the image's own mean (per channel), not blurred: a neutral value that adds no edges.
The area under the deletion curve (score against the fraction of pixels deleted, both 0-1) is lower for a more
faithful map; random order is the reference. torch and MONAI are imported only inside the functions that need them.
This module knows no concrete model: it takes an ``nn.Module`` (Grad-CAM) or a scoring callable (deletion).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from medml.errors import ConfigError, DataError

if TYPE_CHECKING:
    import torch

__all__ = [
    "DeletionCurve",
    "deletion_curve",
    "ensemble_grad_cam",
    "grad_cam",
    "overlay_png",
    "saliency_grid_png",
    "target_layer_of",
]

FloatArray = npt.NDArray[np.float64]
#: N x C x H x W images (the network's input layout) -> class probabilities, N x K (or N: the positive class)
ScoreFn = Callable[[npt.NDArray[np.float32]], npt.ArrayLike]

# The output of the last convolutional stage, which the classifier pools: MONAI DenseNet's final activation and
# ResNet's last residual stage (after the skip connection is added), rather than a convolution inside them.
_KNOWN_LAYERS = ("class_layers.relu", "layer4")


def target_layer_of(net: torch.nn.Module) -> str:
    """The layer Grad-CAM reads for ``net``: the last convolutional stage of a MONAI ResNet or DenseNet, else the
    last convolution by module order."""
    from torch.nn.modules.conv import _ConvNd

    modules = dict(net.named_modules())
    for name in _KNOWN_LAYERS:
        if name in modules:
            return name
    convs = [name for name, m in modules.items() if isinstance(m, _ConvNd)]
    if not convs:
        raise ConfigError(
            f"{type(net).__name__} has no convolution for Grad-CAM to read",
            "pass target_layer= with the name of a layer whose output is a spatial feature map",
        )
    return convs[-1]


def _as_nchw(images: npt.ArrayLike) -> npt.NDArray[np.float32]:
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 4:
        raise DataError(f"images have shape {x.shape}", "give N x C x H x W images (the network's input layout)")
    return x


def _unit_range(maps: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Each map min-max scaled to 0-1 (high = salient); a constant map becomes all zeros."""
    lo = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - lo
    return np.where(span > 0, (maps - lo) / np.where(span > 0, span, 1.0), 0.0).astype(np.float32)


def grad_cam(
    net: torch.nn.Module,
    images: npt.ArrayLike,
    *,
    class_index: int | Sequence[int] | None = None,
    target_layer: str | None = None,
    batch_size: int = 64,
) -> npt.NDArray[np.float32]:
    """Grad-CAM heat maps, N x H x W in 0-1 (1 = most salient) at the input's size, for N x C x H x W images.

    ``class_index``: the class explained, one for all images or one per image; by default each image's predicted
    class. ``target_layer`` overrides :func:`target_layer_of`. The network is run in eval mode and left as found.
    """
    import torch
    from monai.visualize import GradCAM

    x = _as_nchw(images)
    layer = target_layer or target_layer_of(net)
    if layer not in dict(net.named_modules()):
        raise ConfigError(f"the network has no layer {layer!r}", "give a name from net.named_modules()")
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            logits = (
                np.concatenate(
                    [net(torch.from_numpy(x[s : s + batch_size])).numpy() for s in range(0, len(x), batch_size)]
                )
                if len(x)
                else np.zeros((0, 1))
            )
        if class_index is None:
            classes = logits.argmax(axis=1)
        else:
            classes = np.broadcast_to(np.asarray(class_index, dtype=np.int64), (len(x),))
        if len(x) and (classes.min() < 0 or classes.max() >= logits.shape[1]):
            raise ConfigError(
                f"class index {classes.max()} is out of range", f"the network has {logits.shape[1]} outputs"
            )
        # Identity post-processing: MONAI's default normaliser maps each map's max to 0 (high = not salient).
        cam = GradCAM(net, target_layers=layer, postprocessing=lambda m: m)
        maps = np.zeros(x.shape[:1] + x.shape[2:], np.float32)
        # One class per call: MONAI sums the class score over the batch, so a batch must share its class.
        for k in np.unique(classes):
            rows = np.flatnonzero(classes == k)
            for s in range(0, len(rows), batch_size):
                part = rows[s : s + batch_size]
                out = cam(torch.from_numpy(x[part]), class_idx=int(k))
                maps[part] = out.detach().numpy()[:, 0]
    finally:
        net.train(was_training)
    return _unit_range(maps)


def ensemble_grad_cam(
    networks: Sequence[torch.nn.Module],
    images: npt.ArrayLike,
    *,
    class_index: int | Sequence[int] | None = None,
    score: ScoreFn | None = None,
) -> npt.NDArray[np.float32]:
    """Grad-CAM maps (N x H x W, 0-1) of one network, or of an ensemble: each member's map of the same class,
    averaged and rescaled to 0-1. The class is ``class_index`` (one, or one per image), else the one predicted:
    by the network itself, or for an ensemble by ``score`` (the ensemble's probabilities for N x C x H x W input,
    N x K, or N of the positive class called at 0.5)."""
    x = _as_nchw(images)
    if not networks:
        raise ConfigError("no network to explain", "give the model's network, or an ensemble's networks")
    if len(networks) == 1:
        return grad_cam(networks[0], x, class_index=class_index, target_layer=target_layer_of(networks[0]))
    if class_index is None:
        if score is None:
            raise ConfigError(
                "an ensemble's heat maps need the class the ensemble predicts",
                "pass score= (the ensemble's probabilities) or class_index=",
            )
        p = np.asarray(score(x))
        class_index = [int(c) for c in ((p >= 0.5) if p.ndim == 1 else p.argmax(axis=1))]
    return _unit_range(
        np.mean([grad_cam(n, x, class_index=class_index, target_layer=target_layer_of(n)) for n in networks], axis=0)
    )


@dataclass(frozen=True)
class DeletionCurve:
    """Scores of the predicted class as pixels are deleted, most salient first and in random order.

    ``fractions``: the share of pixels deleted at each step, 0 to 1. ``saliency`` and ``random``: N x steps+1
    scores per image (random: the mean over ``n_random`` seeded orders). ``predicted``: each image's class.
    """

    fractions: FloatArray
    saliency: FloatArray
    random: FloatArray
    predicted: npt.NDArray[np.int64]
    n_random: int
    seed: int

    @property
    def saliency_auc(self) -> FloatArray:
        """Area under each image's deletion curve, most salient first: lower = more faithful."""
        return _area(self.fractions, self.saliency)

    @property
    def random_auc(self) -> FloatArray:
        """Area under each image's deletion curve in random order: the reference."""
        return _area(self.fractions, self.random)

    def summary(self) -> dict[str, Any]:
        """Plain data for the report and the bundle: mean areas, the share of images where the saliency order
        lowered the score faster than random, and the mean curves."""
        sal, rnd = self.saliency_auc, self.random_auc
        return {
            "method": "deletion curve",
            "deleted_to": "image mean",
            "score": "probability of the predicted class",
            "n_images": len(sal),
            "steps": len(self.fractions) - 1,
            "n_random": self.n_random,
            "seed": self.seed,
            "auc_saliency": round(float(sal.mean()), 4) if len(sal) else None,
            "auc_random": round(float(rnd.mean()), 4) if len(rnd) else None,
            "auc_difference": round(float((rnd - sal).mean()), 4) if len(sal) else None,
            "share_faster_than_random": round(float((sal < rnd).mean()), 4) if len(sal) else None,
            "fractions": [round(float(f), 4) for f in self.fractions],
            "curve_saliency": [round(float(v), 4) for v in self.saliency.mean(axis=0)] if len(sal) else [],
            "curve_random": [round(float(v), 4) for v in self.random.mean(axis=0)] if len(rnd) else [],
        }


def _area(fractions: FloatArray, curves: FloatArray) -> FloatArray:
    """Trapezoid area under each row of ``curves`` over ``fractions``."""
    if curves.size == 0:
        return np.zeros(len(curves))
    return np.asarray(((curves[:, 1:] + curves[:, :-1]) / 2 * np.diff(fractions)).sum(axis=1), dtype=np.float64)


def _probabilities(model_fn: ScoreFn, x: npt.NDArray[np.float32]) -> FloatArray:
    p = np.asarray(model_fn(x), dtype=np.float64)
    if p.ndim == 1:  # a binary model's positive class
        p = np.column_stack([1 - p, p])
    if p.ndim != 2 or len(p) != len(x):
        raise DataError(
            f"the model returned shape {p.shape} for {len(x)} images",
            "model_fn must return N x K class probabilities (or N positive-class probabilities)",
        )
    return p


def deletion_curve(
    model_fn: ScoreFn,
    images: npt.ArrayLike,
    saliency: npt.ArrayLike,
    *,
    steps: int = 20,
    n_random: int = 3,
    seed: int = 0,
) -> DeletionCurve:
    """Delete pixels (set to the image's per-channel mean) in ``steps`` equal shares, most salient first and in
    ``n_random`` seeded random orders, scoring each image's predicted class after every share.

    ``images``: N x C x H x W as ``model_fn`` takes them; ``saliency``: N x H x W (higher = more salient).
    Ties in saliency are broken at random (seeded), so flat regions are not deleted in raster order.
    """
    x = _as_nchw(images)
    s = np.asarray(saliency, dtype=np.float64)
    if s.shape != (x.shape[0], *x.shape[2:]):
        raise DataError(
            f"saliency maps have shape {s.shape}, images {x.shape}", "give one H x W map per image, at the image's size"
        )
    if steps < 1 or n_random < 1:
        raise ConfigError(f"steps={steps}, n_random={n_random}", "give at least 1 step and 1 random order")
    n, _, h, w = x.shape
    rng = np.random.default_rng(seed)
    fractions = np.linspace(0.0, 1.0, steps + 1)
    counts = np.round(fractions * h * w).astype(int)
    baseline = x.mean(axis=(2, 3), keepdims=True)
    predicted = _probabilities(model_fn, x).argmax(axis=1) if n else np.zeros(0, np.int64)

    def ranks(order: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        r = np.empty_like(order)
        np.put_along_axis(r, order, np.arange(h * w)[None, :].repeat(n, axis=0), axis=1)
        return r

    def curve(rank: npt.NDArray[np.int64]) -> FloatArray:
        out = np.empty((n, steps + 1))
        for i, k in enumerate(counts):
            deleted = (rank < k).reshape(n, 1, h, w)
            p = _probabilities(model_fn, np.where(deleted, baseline, x).astype(np.float32))
            out[:, i] = p[np.arange(n), predicted]
        return out

    tie_break = rng.random((n, h * w))
    salient_first = np.lexsort((tie_break, -s.reshape(n, h * w)), axis=1)
    sal_curve = curve(ranks(salient_first))
    rnd_curve = np.mean([curve(ranks(np.argsort(rng.random((n, h * w)), axis=1))) for _ in range(n_random)], axis=0)
    return DeletionCurve(fractions, sal_curve, rnd_curve, predicted.astype(np.int64), n_random, seed)


def _display(image: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """H x W x C (or H x W) uint8 0-255 or float 0-1 -> H x W grayscale or H x W x 3 RGB in 0-1."""
    a = np.asarray(image)
    a = a / 255.0 if a.dtype == np.uint8 else a.astype(np.float64)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    return np.clip(a, 0.0, 1.0)


def _draw(ax: Any, image: npt.NDArray[Any], heatmap: npt.NDArray[Any]) -> None:
    shown = _display(image)
    ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.imshow(np.asarray(heatmap), cmap="jet", alpha=0.4, vmin=0, vmax=1, interpolation="bilinear")
    ax.set_xticks([])
    ax.set_yticks([])


def _png(fig: Any, dpi: int) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def saliency_grid_png(
    images: npt.ArrayLike,
    heatmaps: npt.ArrayLike,
    captions: Sequence[str],
    rows: Mapping[str, Sequence[int]],
    *,
    dpi: int = 90,
) -> bytes:
    """A PNG grid: one row per entry of ``rows`` (its title, then the indices of the images it shows), each image
    with its heat map over it (jet, 40% opaque: red = most salient) and its caption below.

    ``images``: N x H x W x C (uint8 or float 0-1); ``heatmaps``: N x H x W in 0-1; ``captions``: N strings.
    """
    from matplotlib.figure import Figure

    imgs, maps = np.asarray(images), np.asarray(heatmaps)
    if len(imgs) != len(maps) or len(captions) != len(imgs):
        raise DataError(
            f"{len(imgs)} images, {len(maps)} heat maps and {len(captions)} captions",
            "give one heat map and one caption per image",
        )
    shown = {title: list(idx) for title, idx in rows.items() if len(idx)}
    if not shown:
        raise DataError("no images to show in the saliency grid", "give at least one row with an image index")
    columns = max(len(idx) for idx in shown.values())
    fig = Figure(figsize=(1.35 * columns, 1.75 * len(shown)), layout="constrained", facecolor="white")
    subfigs = fig.subfigures(len(shown), 1, squeeze=False)[:, 0]
    for sub, (title, idx) in zip(subfigs, shown.items(), strict=True):
        sub.suptitle(title, fontsize=9, fontweight="bold", x=0.0, ha="left")
        axes = sub.subplots(1, columns, squeeze=False)[0]
        for ax in axes[len(idx) :]:
            ax.set_axis_off()
        for ax, i in zip(axes, idx, strict=False):
            _draw(ax, imgs[i], maps[i])
            ax.set_xlabel(captions[i], fontsize=7)
    return _png(fig, dpi)


def overlay_png(image: npt.ArrayLike, heatmap: npt.ArrayLike, *, title: str = "", dpi: int = 100) -> bytes:
    """One image (H x W x C) with its heat map over it, as PNG bytes (e.g. a FHIR ``presentedForm``)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2.6, 2.8 if title else 2.6), layout="constrained", facecolor="white")
    ax = fig.add_subplot()
    _draw(ax, np.asarray(image), np.asarray(heatmap))
    if title:
        ax.set_title(title, fontsize=8)
    return _png(fig, dpi)
