"""Explanations a clinician can read: global importance and each patient's top contributing factors."""

from medml.explain.contributions import ContributionModel, Factor, global_importance, top_factors

__all__ = ["ContributionModel", "Factor", "global_importance", "top_factors"]
