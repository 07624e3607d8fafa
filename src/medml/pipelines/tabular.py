"""The spine as functions: train, calibrate, evaluate, explain, register and report one risk model.

The CLI is a thin layer over these; each step reports progress through an optional callback.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medml import __version__
from medml.config import Settings
from medml.data import Predictions, Split, TaskDataset, check_task, patient_split
from medml.data.task import implausible
from medml.errors import DataError, clip
from medml.evaluate import EvaluationReport, Headline, evaluate_binary, headline
from medml.explain import global_importance, top_factors
from medml.models import CalibratedRiskModel, check_model_kind, make_model, tune
from medml.monitor.profile import PROFILE_KEY, ReferenceProfile, build_profile
from medml.pipelines.validation import (
    INTERNAL_KEY,
    SAMPLE_SIZE_KEY,
    InternalValidation,
    sample_size_summary,
    train_validated,
)
from medml.registry import BundleMetadata, ModelBundle, load_bundle, register
from medml.report import ReportInputs, table_one, write_report

Step = Callable[[str, float], None]
"""A progress callback: (description, fraction done in [0, 1])."""


@dataclass(frozen=True)
class TrainConfig:
    """How to train: model kind, search budget, seed and evaluation settings."""

    model: str = "lgbm"
    budget_seconds: float = 60.0
    max_trials: int = 60
    seed: int = 0
    calibration: str = "auto"
    n_boot: int = 1000
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    name: str | None = None
    #: cross-validation or bootstrap on all the data instead of the split (``medml train --cv``, ``--validation``)
    validation: InternalValidation | None = None


@dataclass
class TrainResult:
    """What `medml train` produced: the registered bundle, its test evaluation and where the report is."""

    bundle: ModelBundle
    evaluation: EvaluationReport
    external: dict[str, EvaluationReport]
    report_path: Path
    seconds: float
    n_trials: int
    timings: dict[str, float] = field(default_factory=dict)


def data_hash(ds: TaskDataset) -> str:
    """sha256 over features, target and patient ids: which data a model saw, checkable later."""
    h = hashlib.sha256()
    h.update(pd.util.hash_pandas_object(ds.X, index=False).to_numpy().tobytes())
    h.update(np.asarray(ds.binary_target.values).tobytes())
    h.update(pd.util.hash_pandas_object(pd.Series(ds.groups.astype(str)), index=False).to_numpy().tobytes())
    return h.hexdigest()


def intended_use(ds: TaskDataset) -> str:
    return (
        f"Decision support for clinicians: estimates the probability of the outcome '{ds.binary_target.name}' "
        f"(task: {ds.task}) for patients like those in the development population: {ds.population}. It informs, "
        "and does not replace, clinical judgement; it is not a diagnosis. Validate locally before use on another "
        "population or site."
    )


def _ensure_both_classes(ds: TaskDataset, where: str) -> None:
    y = ds.binary_target.values
    if len(np.unique(y)) < 2:
        raise DataError(
            f"the {where} has only one outcome value ({int(y[0])}) in {len(y)} rows: a model needs both",
            "check the target column and the exclusions, or use a larger dataset",
        )


def train(
    ds: TaskDataset,
    config: TrainConfig,
    settings: Settings,
    *,
    progress: Step | None = None,
    external: Mapping[str, TaskDataset] | None = None,
    split: Split | None = None,
    extra: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Split by patient, tune, fit, calibrate, evaluate on the test split (and external sites), register.

    ``split`` fixes the parts instead of drawing them (a retraining keeps its champion's test patients out);
    ``extra`` is added to the bundle's ``metadata.extra`` (a retraining says what it was re-fitted on).
    """
    step = progress or (lambda _d, _f: None)
    check_model_kind(config.model)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    _ensure_both_classes(ds, "dataset")
    _refuse_implausible(ds)
    if config.validation is not None:
        return train_validated(ds, config, settings, progress=step, external=external, extra=extra)
    y = ds.binary_target.values
    if split is None:
        split = patient_split(ds.groups, y, fractions=config.fractions, seed=config.seed)
    check_task(ds, split)
    train_ds, cal_ds, test_ds = (ds.subset(i) for i in (split.train, split.calibration, split.test))
    for part, where in ((train_ds, "training split"), (cal_ds, "calibration split"), (test_ds, "test split")):
        _ensure_both_classes(part, where)

    step("tuning", 0.0)
    t = time.perf_counter()
    tuned = tune(
        config.model,
        train_ds,
        budget_seconds=config.budget_seconds,
        seed=config.seed,
        max_trials=config.max_trials,
        on_trial=lambda n, _l: step(
            "tuning", min(n / config.max_trials, (time.perf_counter() - t) / config.budget_seconds)
        ),
    )
    timings["tune"] = time.perf_counter() - t

    step("fitting", 0.0)
    t = time.perf_counter()
    base = make_model(config.model, ds.features, tuned.params, seed=config.seed)
    base.fit(train_ds.X, train_ds.binary_target.values)
    model = CalibratedRiskModel(base, method=config.calibration, seed=config.seed)  # type: ignore[arg-type]
    model.fit(cal_ds.X, cal_ds.binary_target.values, groups=cal_ds.groups)
    timings["fit"] = time.perf_counter() - t

    step("evaluating", 0.0)
    t = time.perf_counter()
    name = config.name or f"{ds.name}-{config.model}"
    evaluation = evaluate_split(model, test_ds, name=name, split="test", n_boot=config.n_boot, seed=config.seed)
    ext_reports = {
        key: evaluate_split(model, other, name=name, split="external", n_boot=config.n_boot, seed=config.seed)
        for key, other in (external or {}).items()
    }
    timings["evaluate"] = time.perf_counter() - t

    step("explaining", 0.0)
    t = time.perf_counter()
    importance = global_importance(model, test_ds.X, seed=config.seed)
    examples = example_patients(model, test_ds)
    timings["explain"] = time.perf_counter() - t

    step("registering", 0.0)
    t = time.perf_counter()
    metadata = bundle_metadata(
        ds,
        config,
        model,
        tuned,
        evaluation,
        name=name,
        split_sizes={**split.sizes(), "patients": len(np.unique(ds.groups))},
        ext_reports=ext_reports,
        importance=importance,
        examples=examples,
        extra={
            "fractions": list(config.fractions),
            SAMPLE_SIZE_KEY: sample_size_summary(ds),
            PROFILE_KEY: development_profile(model, (cal_ds, test_ds), seed=config.seed).to_dict(),
            **(extra or {}),
        },
    )
    bundle = register(ModelBundle(model=model, features=list(ds.features), metadata=metadata), settings)
    timings["register"] = time.perf_counter() - t

    step("writing report", 0.0)
    report_path = write_model_report(bundle, settings)
    return TrainResult(bundle, evaluation, ext_reports, report_path, time.perf_counter() - t0, tuned.n_trials, timings)


def bundle_metadata(
    ds: TaskDataset,
    config: TrainConfig,
    model: Any,
    tuned: Any,
    evaluation: EvaluationReport,
    *,
    name: str,
    split_sizes: Mapping[str, int],
    ext_reports: Mapping[str, EvaluationReport],
    importance: list[dict[str, Any]],
    examples: list[dict[str, Any]],
    extra: Mapping[str, Any],
) -> BundleMetadata:
    """What a binary model's bundle says of itself, for a split-trained model and an internally validated one alike
    (``extra`` adds or overrides what differs: the sample size, the reference profile, the validation summary)."""
    return BundleMetadata(
        name=name,
        version=0,
        model_kind=config.model,
        dataset=ds.name,
        task=ds.task,
        target=ds.binary_target.name,
        intended_use=intended_use(ds),
        population=ds.population,
        created=pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
        code_version=__version__,
        data_hash=data_hash(ds),
        params={**tuned.params, "n_trials": tuned.n_trials, "budget_seconds": config.budget_seconds},
        calibration=model.method_,
        seed=config.seed,
        split_sizes=dict(split_sizes),
        excluded_columns=dict(ds.excluded),
        metrics=headline(evaluation),
        evaluation=evaluation.to_dict(),
        headline=Headline.of(evaluation),
        serving=ds.serving,
        extra={
            "external": {k: r.to_dict() for k, r in ext_reports.items()},
            "importance": importance,
            "examples": examples,
            "table_one": cohort_table(ds, importance),
            "provenance": ds.provenance,
            "calibration_losses": model.losses_,
            "explanation_method": model.explanation_method,
            "medml_version": __version__,
            **extra,
        },
    )


TABLE_ONE_MAX_FEATURES = 40


def cohort_table(ds: TaskDataset, importance: list[dict[str, Any]], top: int = 30) -> dict[str, Any]:
    """Table 1 by outcome; for wide feature sets (PhysioNet's 225) only the ``top`` most important features."""
    shown = ds.features
    note = ""
    if len(shown) > TABLE_ONE_MAX_FEATURES:
        keep = {r["feature"] for r in importance[:top]}
        shown = tuple(f for f in ds.features if f.name in keep)
        note = f"Shown: the {len(shown)} most important of the model's {len(ds.features)} inputs."
    t1 = table_one(ds.X[[f.name for f in shown]], ds.binary_target.values, shown)
    return {**t1, "note": note} if note else t1


def predict(model: Any, ds: TaskDataset, name: str = "") -> Predictions:
    scores = model.predict_proba(ds.X)[:, 1]
    return Predictions(ids=ds.ids, y_true=ds.binary_target.values, scores=scores, model=name)


def development_profile(model: Any, parts: tuple[TaskDataset, ...], *, seed: int) -> ReferenceProfile:
    """What monitoring compares production with: the calibration and test rows (no raw rows kept) and the
    model's scores on them, which it was not fitted on."""
    X = pd.concat([part.X for part in parts], ignore_index=True)
    y = np.concatenate([part.binary_target.values for part in parts])
    return build_profile(X, parts[0].features, model.predict_proba(X)[:, 1], y, threshold=None, seed=seed)


def evaluate_split(model: Any, ds: TaskDataset, *, name: str, split: str, n_boot: int, seed: int) -> EvaluationReport:
    """Score ``ds`` and measure discrimination, calibration, net benefit and subgroup gaps."""
    return evaluate_binary(
        predict(model, ds, name),
        dataset=ds.name,
        split=split,
        population=ds.population,
        sensitive=ds.sensitive,
        n_boot=n_boot,
        seed=seed,
    )


def example_patients(model: Any, ds: TaskDataset, k: int = 3) -> list[dict[str, Any]]:
    """The highest-, middle- and lowest-risk test patients with their top factors, for the report."""
    scores = model.predict_proba(ds.X)[:, 1]
    order = np.argsort(scores)
    picks = sorted({int(order[-1]), int(order[len(order) // 2]), int(order[0])}, key=lambda i: -scores[i])[:k]
    rows = ds.X.iloc[picks].reset_index(drop=True)
    factors = top_factors(model, rows, k=5)
    return [
        {"id": str(ds.ids[i]), "risk": float(scores[i]), "factors": [f.to_dict() for f in fs]}
        for i, fs in zip(picks, factors, strict=True)
    ]


def report_inputs(
    bundle: ModelBundle, evaluation: dict[str, Any] | None = None, external: dict[str, dict[str, Any]] | None = None
) -> ReportInputs:
    """Everything the HTML report shows, from the bundle alone (so `medml report` needs no retraining)."""
    md = bundle.metadata
    extra = md.extra
    return ReportInputs(
        evaluation=evaluation or md.evaluation,
        external=list((external if external is not None else extra.get("external", {})).values()),
        model={
            "name": md.name,
            "version": md.version,
            "model_kind": md.model_kind,
            "params": md.params,
            "calibration": md.calibration,
            "created": md.created,
            "code_version": md.code_version,
            "data_hash": md.data_hash,
            "seed": md.seed,
            "split_sizes": md.split_sizes,
            "intended_use": md.intended_use,
            "explanation_method": extra.get("explanation_method", ""),
            "internal_validation": extra.get(INTERNAL_KEY),
            "sample_size": extra.get(SAMPLE_SIZE_KEY),
            "comparators": extra.get("comparators"),  # established scores on the same test patients
        },
        dataset={
            "key": md.dataset,
            "task": md.task,
            "target": md.target,
            "population": md.population,
            "provenance": extra.get("provenance", ""),
            "excluded": md.excluded_columns,
        },
        features=[f.to_dict() for f in bundle.features],
        table_one=extra.get("table_one", {}),
        importance=extra.get("importance", []),
        examples=extra.get("examples", []),
        saliency=extra.get("saliency") or {},  # image models: Grad-CAM grid and deletion check
        classes=extra.get("classes") or {},  # multiclass and multilabel image models: per-class evaluation
    )


def write_model_report(
    bundle: ModelBundle, settings: Settings, *, suffix: str = "", evaluation: dict[str, Any] | None = None
) -> Path:
    md = bundle.metadata
    path = settings.reports_dir / f"{md.name}@{md.version}{suffix}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_report(report_inputs(bundle, evaluation, external={} if evaluation else None), path)


def evaluate_registered(
    ref: str, ds: TaskDataset, settings: Settings, *, n_boot: int = 1000, seed: int = 0
) -> tuple[ModelBundle, EvaluationReport, Path]:
    """Validate a registered model on ``ds`` (another dataset or site) and write a report for it.

    On the model's own dataset this is its held-out test split, rebuilt from the stored seed and fractions;
    on any other dataset every row is used (external validation).
    """
    bundle = load_bundle(ref, settings)
    md = bundle.metadata
    name = f"{md.name}@{md.version}"
    if ds.name == md.dataset:
        if INTERNAL_KEY in md.extra:
            raise DataError(
                f"{name} was developed on all of {ds.name} (internal validation: "
                f"{md.extra[INTERNAL_KEY]['description']}): none of its patients are held out",
                "read its internal validation in `medml report`, or evaluate it on another dataset or site",
            )
        if data_hash(ds) != md.data_hash:
            raise DataError(
                f"dataset '{ds.name}' differs from the data {name} was trained on",
                "evaluate on another dataset key or retrain the model",
            )
        fr = tuple(md.extra.get("fractions", (0.6, 0.2, 0.2)))
        split = patient_split(ds.groups, ds.binary_target.values, fractions=fr, seed=md.seed)  # type: ignore[arg-type]
        ds, kind = ds.subset(split.test), "test"
    else:
        kind = "external"
    report = evaluate_split(bundle.model, ds, name=name, split=kind, n_boot=n_boot, seed=seed)
    path = write_model_report(bundle, settings, suffix=f"-on-{ds.name}", evaluation=report.to_dict())
    return bundle, report, path


def _refuse_implausible(ds: TaskDataset) -> None:
    """Training refuses values outside their input's plausible range: what scoring leaves out, training must not
    learn from (a GCS of -50 in the training data is an error in the data, not a patient)."""
    bad = implausible(ds.X, ds.features)
    if not bad:
        return
    specs = {f.name: f for f in ds.features}
    parts = []
    for name, mask in list(bad.items())[:5]:
        spec = specs[name]
        what = f"outside {spec.plausible[0]:g}-{spec.plausible[1]:g}" if spec.plausible else "not finite"
        parts.append(f"{clip(name)}: {int(mask.sum())} value(s) {what} (first at row {int(mask.argmax()) + 1})")
    raise DataError(
        f"{ds.name} has values outside their plausible ranges: {'; '.join(parts)}"
        + (f" and {len(bad) - 5} more inputs" if len(bad) > 5 else ""),
        "correct them or leave them empty (missing) before training",
    )


def score_table(
    bundle: ModelBundle, frame: pd.DataFrame, *, id_column: str | None = None, top: int = 3
) -> pd.DataFrame:
    """Each row's calibrated risk, its top contributing factors in clinical words, and the model that said so.

    A value outside its input's plausible range (or not finite) is left out, scored as missing, and named in the
    row's ``left_out`` column, exactly as the service names it on a card: a GCS of -50 is not a deep coma.
    """
    if id_column is not None and id_column not in frame.columns:
        raise DataError(
            f"no id column '{id_column}' in the table", f"columns are: {', '.join(map(str, frame.columns[:20]))}"
        )
    ids = frame[id_column].astype(str).to_numpy() if id_column else np.arange(1, len(frame) + 1).astype(str)
    frame = frame.reset_index(drop=True)
    bad = implausible(frame, bundle.features)
    left_out: list[list[str]] = [[] for _ in range(len(frame))]
    if bad:
        frame = frame.copy()
        specs = {f.name: f for f in bundle.features}
        for name, mask in bad.items():
            spec = specs[name]
            rng = f"{spec.plausible[0]:g}-{spec.plausible[1]:g} {spec.unit}".strip() if spec.plausible else "finite"
            for row in np.flatnonzero(mask):
                left_out[row].append(f"{spec.clinical_name} {frame.at[row, name]!s:.20} (outside {rng})")
            frame[name] = pd.to_numeric(frame[name], errors="coerce").where(~mask)
    risk = bundle.model.predict_proba(frame)[:, 1]
    factors = top_factors(bundle.model, frame, k=top)
    out = pd.DataFrame({"id": ids, "risk": risk})
    for k in range(top):
        out[f"factor_{k + 1}"] = [fs[k].sentence() if k < len(fs) else "" for fs in factors]
    out["left_out"] = ["; ".join(x) for x in left_out]
    out["model"] = f"{bundle.metadata.name}@{bundle.metadata.version}"
    return out
