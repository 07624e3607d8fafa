"""Probabilities from trained weights: eval mode, batches, no gradients."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from medml.errors import IntegrityError
from medml.models.imaging.network import ImageNetConfig, as_network_input, build_network

if TYPE_CHECKING:
    import torch

FloatArray = npt.NDArray[np.float64]


def predict_images(
    model_state: Mapping[str, Any], config: ImageNetConfig, images: npt.ArrayLike, *, batch_size: int = 256
) -> FloatArray:
    """Probabilities for N x H x W x C images: shape (N,) of the positive class for a binary task, (N, K) of the
    classes (rows sum to 1) for multiclass, (N, K) of each label for multilabel."""

    x = as_network_input(images, config)
    net = build_network(config)
    try:
        net.load_state_dict(dict(model_state))
    except RuntimeError as e:
        raise IntegrityError(
            f"the weights do not fit a {config.architecture} of this config ({e})",
            "load the config saved with these weights",
        ) from e
    return predict_with(net, x, config, batch_size=batch_size)


def predict_with(
    net: torch.nn.Module, x: npt.NDArray[np.float32], config: ImageNetConfig, *, batch_size: int = 256
) -> FloatArray:
    """Probabilities from a built network for N x C x H x W input already prepared by ``as_network_input``."""
    import torch

    was_training = net.training
    net.eval()
    parts = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            batch = torch.from_numpy(x[start : start + batch_size])
            p = _probabilities(net(batch), config)
            if config.tta:
                p = (p + _probabilities(net(torch.flip(batch, dims=[3])), config)) / 2
            parts.append(p.double().numpy())
    net.train(was_training)
    probs = np.concatenate(parts) if parts else np.zeros((0, config.n_outputs))
    return probs[:, 1] if config.task == "binary" else probs


def _probabilities(logits: torch.Tensor, config: ImageNetConfig) -> torch.Tensor:
    if config.task == "multilabel":
        return logits.sigmoid()
    return logits.softmax(dim=1)
