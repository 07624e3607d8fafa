"""ReportInputs: everything a report is rendered from, as plain data (the seam from the training pipeline)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from medml.errors import DataError

_REQUIRED_EVALUATION_KEYS = ("n", "n_events")


@dataclass(frozen=True)
class ReportInputs:
    """The plain data one report is made of.

    - ``evaluation``: an ``EvaluationReport.to_dict()`` (Estimates as ``{"value", "low", "high"}``).
    - ``external``: more EvaluationReport dicts, one per external validation site (may be empty).
    - ``model``: name, version, model_kind, params, calibration, created, code_version, data_hash, seed,
      split_sizes (``{split: n}`` or ``{split: {"n", "n_events"}}``), intended_use; optionally
      ``missing_data`` (how missing inputs are handled), ``tuning`` (hyperparameter search) and ``comparators``
      (established scores on the same test patients: ``{"title", "note", "rows": [{"name", "unit", "n",
      "n_events", "auroc"}]}``, shown beside the model).
    - ``dataset``: key, task, target, population, provenance, ``excluded`` (``{column: reason}``); optionally
      ``date_range``.
    - ``features``: ``FeatureSpec.to_dict()`` per model input.
    - ``table_one``: the output of :func:`medml.report.table_one`.
    - ``importance``: ``{"feature", "label", "unit", "importance"}`` (mean |contribution|, log-odds), sorted.
    - ``examples``: a few patients ``{"id", "risk", "factors": [{"label", "value", "unit", "direction",
      "contribution"}]}``.
    - ``saliency``: image models' heat maps: ``grid_png`` (a base64 PNG of test images with their heat maps),
      ``method``, ``threshold`` (what counted as correct), and ``deletion`` (``DeletionCurve.summary()``).
    - ``classes``: multiclass and multilabel models: ``medml.evaluate.multiclass.evaluate_classes()`` of the same
      split (per-class one-vs-rest, macro AUROC, accuracy, confusion matrix); ``evaluation`` is then of the
      pooled (image, class) pairs.
    """

    evaluation: dict[str, Any]
    external: list[dict[str, Any]] = field(default_factory=list)
    model: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    features: list[dict[str, Any]] = field(default_factory=list)
    table_one: dict[str, Any] = field(default_factory=dict)
    importance: list[dict[str, Any]] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)
    saliency: dict[str, Any] = field(default_factory=dict)
    classes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.evaluation, Mapping):
            raise DataError(
                f"report inputs: evaluation is a {type(self.evaluation).__name__}, not a dict",
                "pass EvaluationReport.to_dict()",
            )
        missing = [k for k in _REQUIRED_EVALUATION_KEYS if k not in self.evaluation]
        if missing:
            raise DataError(
                f"report inputs: the evaluation has no {', '.join(missing)}",
                "pass EvaluationReport.to_dict(), not one of its sections",
            )
        for i, site in enumerate(self.external):
            if not isinstance(site, Mapping) or "n" not in site:
                raise DataError(
                    f"report inputs: external evaluation {i} is not an EvaluationReport dict",
                    "pass EvaluationReport.to_dict() for each external site",
                )

    @property
    def model_id(self) -> str:
        """``name@version`` as the registry names the model."""
        name = str(self.model.get("name") or self.evaluation.get("model") or "model")
        version = self.model.get("version")
        return f"{name}@{version}" if version not in (None, "") and "@" not in name else name

    @property
    def target(self) -> str:
        """The outcome's name as the dataset gives it."""
        return str(self.dataset.get("target") or self.dataset.get("task") or "outcome")
