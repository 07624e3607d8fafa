"""Explanations a clinician can read: global importance and each patient's top contributing factors; for images,
Grad-CAM heat maps and the deletion check of their faithfulness (loaded on first use)."""

from typing import Any

from medml.explain.contributions import ContributionModel, Factor, global_importance, top_factors

_SALIENCY = (
    "DeletionCurve",
    "deletion_curve",
    "ensemble_grad_cam",
    "grad_cam",
    "overlay_png",
    "saliency_grid_png",
    "target_layer_of",
)

__all__ = ["ContributionModel", "Factor", "global_importance", "top_factors", *_SALIENCY]


def __getattr__(name: str) -> Any:
    if name in _SALIENCY:
        from medml.explain import saliency

        return getattr(saliency, name)
    raise AttributeError(f"module 'medml.explain' has no attribute {name!r}")
