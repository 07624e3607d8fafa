"""Internal validation that uses all the data (TRIPOD+AI 12e): repeated patient-grouped cross-validation and
Harrell's bootstrap optimism correction, with the whole development pipeline (search, fit, calibrate) re-run inside
every fold and every bootstrap sample, never outside it; and the final model developed the same way on all the data.

Development on a set of patients (:func:`develop`): the hyperparameter search on its own patient-grouped inner
split, the model refitted on every patient with the parameters found, and the calibration map learned from
cross-fitted scores (each patient scored by a model of the same kind and parameters fitted without them, in
``CALIBRATION_FOLDS`` patient-grouped folds), then applied to the model fitted on everyone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
from sklearn.base import clone

from medml.config import Settings
from medml.data import Predictions, TaskDataset
from medml.data.splits import patient_kfold
from medml.errors import ConfigError, DataError
from medml.evaluate import (
    EvaluationReport,
    auroc,
    brier,
    calibration_intercept_slope,
    evaluate_binary,
)
from medml.evaluate.sample_size import conservative_r2, cox_snell_r2, riley_binary
from medml.explain import global_importance
from medml.models import CalibratedRiskModel, make_model, tune
from medml.models.tuning import TuningResult
from medml.monitor.profile import PROFILE_KEY, build_profile
from medml.registry import ModelBundle, register

if TYPE_CHECKING:
    from medml.pipelines.tabular import TrainConfig, TrainResult

Method = Literal["cv", "bootstrap"]
METHODS: tuple[str, ...] = ("cv", "bootstrap")
#: patient-grouped folds that give the cross-fitted scores the calibration map is learned from
CALIBRATION_FOLDS = 5
#: the measures each fold or bootstrap sample reports (all computed on the calibrated probabilities)
MEASURES: tuple[str, ...] = ("auroc", "brier", "slope", "intercept", "r2_cs")

Step = Callable[[str, float], None]
#: where a bundle's metadata.extra keeps the validation summary and the sample size
INTERNAL_KEY = "internal_validation"
SAMPLE_SIZE_KEY = "sample_size"


@dataclass(frozen=True)
class InternalValidation:
    """How to validate: ``cv`` with ``folds`` x ``repeats``, or ``bootstrap`` with ``n_bootstrap`` samples."""

    method: Method = "cv"
    folds: int = 5
    repeats: int = 1
    n_bootstrap: int = 50

    def describe(self) -> str:
        if self.method == "cv":
            times = f", repeated {self.repeats} times" if self.repeats > 1 else ""
            return f"{self.folds}-fold patient-grouped stratified cross-validation{times}"
        return f"bootstrap optimism correction (Harrell), {self.n_bootstrap} patient-level bootstrap samples"


@dataclass(frozen=True)
class Recipe:
    """What developing a model means: the kind, the search budget and the calibration; the same in every fold."""

    model: str
    budget_seconds: float
    max_trials: int
    calibration: str = "auto"


@dataclass
class Developed:
    """A model developed on a set of patients, and how its search went."""

    model: CalibratedRiskModel
    tuned: TuningResult
    seconds: float


@dataclass
class ValidatedModel:
    """The final model (developed on all the data), the evaluation the report shows, and the validation summary."""

    final: Developed
    evaluation: EvaluationReport
    summary: dict[str, Any]
    #: the scores the evaluation is of: out-of-fold (cross-validation) or the final model's (bootstrap)
    scores: npt.NDArray[np.float64]
    split_sizes: dict[str, Any] = field(default_factory=dict)


# --- checks before any work ----------------------------------------------------------------------------------------


def check(ds: TaskDataset, validation: InternalValidation) -> None:
    """Refuse a validation the data cannot carry, in one line, before anything is searched, fitted or registered."""
    if validation.method not in METHODS:
        raise ConfigError(f"unknown validation '{validation.method}'", f"choose one of: split, {', '.join(METHODS)}")
    for key, least in (("folds", 2), ("repeats", 1), ("n_bootstrap", 1)):
        value = getattr(validation, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            flag = {"folds": "--cv", "repeats": "--repeats", "n_bootstrap": "--bootstraps"}[key]
            raise ConfigError(f"{flag} must be a whole number of {least} or more, got {value!r}", f"e.g. {flag} 5")
    y = np.asarray(ds.binary_target.values).astype(int)
    groups = np.asarray(ds.groups)
    patients = np.unique(groups)
    if validation.method == "bootstrap":
        if len(patients) < 2:
            raise DataError(
                f"{ds.name} has {len(patients)} patient group: a bootstrap by patient needs at least 2 "
                "(every sample would be the same patient)",
                "give each patient its own id (--id COLUMN), or validate with --cv",
            )
        return
    with_outcome = len(np.unique(groups[y == 1]))
    without = len(np.setdiff1d(patients, groups[y == 1]))
    k = validation.folds
    if k > with_outcome or k > without:
        fewer, which = (with_outcome, "with") if with_outcome <= without else (without, "without")
        raise DataError(
            f"--cv {k} asks for more folds than {ds.name} has patients {which} the outcome ({fewer}): every fold "
            "needs some",
            f"use --cv {max(2, min(5, fewer))} or fewer",
        )


# --- development and the measures of one model ---------------------------------------------------------------------


def develop(ds: TaskDataset, recipe: Recipe, *, seed: int) -> Developed:
    """Search, fit on every patient of ``ds`` and calibrate on cross-fitted scores: the whole pipeline, on ``ds``."""
    t = time.perf_counter()
    tuned = tune(recipe.model, ds, budget_seconds=recipe.budget_seconds, seed=seed, max_trials=recipe.max_trials)
    y = ds.binary_target.values
    base = make_model(recipe.model, ds.features, tuned.params, seed=seed)
    scores = np.empty(len(y), dtype=float)
    k = min(CALIBRATION_FOLDS, *_patients_per_class(ds))
    for train_idx, held_idx in patient_kfold(ds.groups, y, k=k, seed=seed + 7):
        part = clone(base).fit(ds.X.iloc[train_idx], y[train_idx])
        scores[held_idx] = part.predict_proba(ds.X.iloc[held_idx])[:, 1]
    base.fit(ds.X, y)
    calibrated = CalibratedRiskModel(base, method=recipe.calibration, seed=seed)  # type: ignore[arg-type]
    calibrated.fit_scores(scores, y, groups=ds.groups)
    return Developed(calibrated, tuned, time.perf_counter() - t)


def _patients_per_class(ds: TaskDataset) -> tuple[int, int]:
    y = np.asarray(ds.binary_target.values).astype(int)
    groups = np.asarray(ds.groups)
    positive = np.unique(groups[y == 1])
    return len(positive), len(np.setdiff1d(np.unique(groups), positive))


def measures(y: npt.ArrayLike, p: npt.ArrayLike) -> dict[str, float]:
    """AUROC, Brier, calibration slope and intercept, and Cox-Snell R-squared of probabilities ``p``."""
    fit = calibration_intercept_slope(y, p)
    return {
        "auroc": auroc(y, p),
        "brier": brier(y, p),
        "slope": fit.slope,
        "intercept": fit.intercept,
        "r2_cs": cox_snell_r2(y, p),
    }


def spread(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean, SD, min and max of each measure over ``rows`` (folds or bootstrap samples)."""
    out = {}
    for m in MEASURES:
        v = np.array([r[m] for r in rows], dtype=float)
        sd = float(v.std(ddof=1)) if len(v) > 1 else 0.0
        out[m] = {"mean": float(v.mean()), "sd": sd, "min": float(v.min()), "max": float(v.max())}
    return out


# --- the two methods -----------------------------------------------------------------------------------------------


def validate(
    ds: TaskDataset,
    validation: InternalValidation,
    recipe: Recipe,
    *,
    seed: int,
    name: str,
    n_boot: int,
    progress: Step | None = None,
) -> ValidatedModel:
    """Validate the development pipeline on ``ds`` and develop the final model on all of it.

    Cross-validation: the report's evaluation is of the pooled out-of-fold predictions of the first repetition
    (each patient scored by a model developed without them). Bootstrap: it is the final model's apparent
    performance on all the data, and the summary holds the optimism-corrected figures beside it.
    """
    check(ds, validation)
    step = progress or (lambda _d, _f: None)
    y = np.asarray(ds.binary_target.values).astype(int)
    start = time.perf_counter()
    if validation.method == "cv":
        summary, oof = _cross_validate(ds, validation, recipe, seed, step)
    else:
        summary, oof = {}, None
    step("developing the final model on all the data", 0.0)
    final = develop(ds, recipe, seed=seed)
    p_all = final.model.predict_proba(ds.X)[:, 1]
    apparent = measures(y, p_all)
    if validation.method == "bootstrap":
        summary = _bootstrap(ds, validation, recipe, seed, step, apparent)
    else:
        summary["optimism"] = {m: apparent[m] - summary["pooled"][m]["mean"] for m in MEASURES}
    summary.update(
        method=validation.method,
        description=validation.describe(),
        apparent=apparent,
        folds=validation.folds if validation.method == "cv" else None,
        repeats=validation.repeats if validation.method == "cv" else None,
        n_bootstrap=validation.n_bootstrap if validation.method == "bootstrap" else None,
        final_model=(
            "developed on all the data the same way as in each "
            + ("fold" if validation.method == "cv" else "bootstrap sample")
            + f": search on a patient-grouped inner split, fit on every patient, calibration map "
            f"({final.model.method_}) learned from {CALIBRATION_FOLDS}-fold patient-grouped cross-fitted scores"
        ),
        seconds=time.perf_counter() - start,
    )
    if oof is not None:
        kind, scores = "cross-validated (pooled out-of-fold)", oof
    else:
        kind, scores = "apparent (all data; optimism-corrected figures under internal validation)", p_all
    evaluation = evaluate_binary(
        Predictions(ids=ds.ids, y_true=ds.binary_target.values, scores=scores, model=name),
        dataset=ds.name,
        split=kind,
        population=ds.population,
        sensitive=ds.sensitive,
        n_boot=n_boot,
        seed=seed,
    )
    sizes = {"development (all data)": len(y), "events": int(y.sum()), "patients": len(np.unique(ds.groups))}
    return ValidatedModel(final, evaluation, summary, scores, sizes)


def _cross_validate(
    ds: TaskDataset, validation: InternalValidation, recipe: Recipe, seed: int, step: Step
) -> tuple[dict[str, Any], npt.NDArray[np.float64]]:
    y = np.asarray(ds.binary_target.values).astype(int)
    folds: list[dict[str, Any]] = []
    pooled: list[dict[str, Any]] = []
    first_oof = np.empty(len(y))
    total = validation.folds * validation.repeats
    for r in range(validation.repeats):
        oof = np.empty(len(y))
        splits = patient_kfold(ds.groups, y, k=validation.folds, seed=seed + 1000 * r)
        for f, (train_idx, test_idx) in enumerate(splits):
            step(f"repeat {r + 1}, fold {f + 1}: search, fit, calibrate", len(folds) / total)
            dev = develop(ds.subset(train_idx), recipe, seed=seed + f + 100 * r)
            held = ds.subset(test_idx)
            oof[test_idx] = dev.model.predict_proba(held.X)[:, 1]
            folds.append(
                {
                    "repeat": r + 1,
                    "fold": f + 1,
                    "n": len(test_idx),
                    "n_events": int(y[test_idx].sum()),
                    **measures(y[test_idx], oof[test_idx]),
                    "calibration": dev.model.method_,
                    "n_trials": dev.tuned.n_trials,
                    "seconds": dev.seconds,
                }
            )
        pooled.append({"repeat": r + 1, **measures(y, oof)})
        if r == 0:
            first_oof = oof
    return {"per_fold": folds, "fold_spread": spread(folds), "pooled_by_repeat": pooled, "pooled": spread(pooled)}, (
        first_oof
    )


def _bootstrap(
    ds: TaskDataset,
    validation: InternalValidation,
    recipe: Recipe,
    seed: int,
    step: Step,
    apparent: dict[str, float],
) -> dict[str, Any]:
    """Harrell: optimism = mean over samples of (performance on the sample - performance on the original data)."""
    y = np.asarray(ds.binary_target.values).astype(int)
    patients, inverse = np.unique(np.asarray(ds.groups), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    rows_of = np.split(order, np.cumsum(np.bincount(inverse))[:-1])
    rng = np.random.default_rng(seed)
    samples: list[dict[str, Any]] = []
    skipped = 0
    b = 0
    while len(samples) < validation.n_bootstrap:
        step(f"bootstrap sample {len(samples) + 1}: search, fit, calibrate", len(samples) / validation.n_bootstrap)
        idx = np.concatenate([rows_of[i] for i in rng.integers(0, len(patients), len(patients))])
        b += 1
        if min(_classes(y[idx])) < CALIBRATION_FOLDS:  # too few events to develop on: draw again, and say so
            skipped += 1
            if skipped > 10 * validation.n_bootstrap:
                raise DataError(f"{ds.name} has too few events for a bootstrap", "validate with --cv instead")
            continue
        sample = ds.subset(idx)
        dev = develop(sample, recipe, seed=seed + b)
        on_sample = measures(y[idx], dev.model.predict_proba(sample.X)[:, 1])
        on_original = measures(y, dev.model.predict_proba(ds.X)[:, 1])
        samples.append(
            {
                "sample": len(samples) + 1,
                **{m: on_sample[m] - on_original[m] for m in MEASURES},
                "apparent": on_sample,
                "test": on_original,
                "seconds": dev.seconds,
            }
        )
    optimism = {m: float(np.mean([s[m] for s in samples])) for m in MEASURES}
    return {
        "per_sample": samples,
        "optimism": optimism,
        "optimism_spread": spread(samples),
        "corrected": {m: apparent[m] - optimism[m] for m in MEASURES},
        "redrawn": skipped,
    }


def _classes(y: npt.NDArray[np.int_]) -> tuple[int, int]:
    return int(y.sum()), int(len(y) - y.sum())


# --- sample size ---------------------------------------------------------------------------------------------------


def candidate_parameters(ds: TaskDataset) -> int:
    """Candidate predictor parameters of a main-effects model: 1 per numeric input, levels - 1 per categorical."""
    total = 0
    for f in ds.features:
        if f.kind == "numeric":
            total += 1
        else:
            total += max(1, int(ds.X[f.name].nunique(dropna=True)) - 1)
    return max(total, 1)


def sample_size_summary(ds: TaskDataset, validated_r2: float | None = None) -> dict[str, Any]:
    """Riley et al.'s minimum sample size beside the actual one: with Riley et al.'s conservative anticipated R2
    (15% of the largest possible), and, when internal validation measured it, with the model's own validated
    (optimism-corrected or cross-validated) Cox-Snell R2."""
    y = np.asarray(ds.binary_target.values).astype(int)
    prevalence = float(y.mean())
    parameters = candidate_parameters(ds)
    rows = [
        riley_binary(
            prevalence,
            parameters,
            conservative_r2(prevalence),
            r2_source="15% of the largest Cox-Snell R2, Riley et al.'s default when no earlier model is known",
        ).to_dict()
    ]
    if validated_r2 is not None and 0 < validated_r2 < rows[0]["max_r2_cs"]:
        rows.append(
            riley_binary(
                prevalence, parameters, validated_r2, r2_source="this model's internally validated Cox-Snell R2"
            ).to_dict()
        )
    required = rows[0]["required"]
    return {
        "n": len(y),
        "n_events": int(y.sum()),
        "patients": len(np.unique(ds.groups)),
        "parameters": parameters,
        "parameters_note": "1 per numeric input, categories - 1 per categorical input (main effects, no splines)",
        "criteria": rows,
        "short": len(y) < required,
        "warning": (
            f"The data ({len(y):,}) are short of Riley et al.'s minimum sample size ({required:,}) for "
            f"{parameters} candidate parameters: expect overfitting beyond what the validation shows, and "
            "validate externally before use."
            if len(y) < required
            else ""
        ),
    }


# --- medml train --cv / --validation bootstrap -----------------------------------------------------------------------


def train_validated(
    ds: TaskDataset,
    config: TrainConfig,
    settings: Settings,
    *,
    progress: Step | None = None,
    external: Mapping[str, TaskDataset] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> TrainResult:
    """`medml train` with internal validation on all the data: validate, develop the final model on everyone,
    evaluate it externally, explain it, register it and write its report (which shows the validation)."""
    from medml.pipelines.tabular import (
        TrainResult,
        bundle_metadata,
        evaluate_split,
        example_patients,
        write_model_report,
    )

    validation = config.validation
    assert validation is not None
    check(ds, validation)
    step = progress or (lambda _d, _f: None)
    t0 = time.perf_counter()
    name = config.name or f"{ds.name}-{config.model}"
    v = validate(
        ds,
        validation,
        Recipe(config.model, config.budget_seconds, config.max_trials, config.calibration),
        seed=config.seed,
        name=name,
        n_boot=config.n_boot,
        progress=step,
    )
    # "tune" is the final model's search (what `medml train` prints); "validate" the folds or samples and the final
    timings = {"tune": v.final.tuned.seconds, "validate": time.perf_counter() - t0}
    model, tuned = v.final.model, v.final.tuned
    ext_reports = {
        key: evaluate_split(model, other, name=name, split="external", n_boot=config.n_boot, seed=config.seed)
        for key, other in (external or {}).items()
    }
    step("explaining", 0.0)
    importance = global_importance(model, ds.X, seed=config.seed)
    examples = example_patients(model, ds)
    r2 = v.summary["corrected"]["r2_cs"] if validation.method == "bootstrap" else v.summary["pooled"]["r2_cs"]["mean"]
    step("registering", 0.0)
    metadata = bundle_metadata(
        ds,
        config,
        model,
        tuned,
        v.evaluation,
        name=name,
        split_sizes=v.split_sizes,
        ext_reports=ext_reports,
        importance=importance,
        examples=examples,
        extra={
            INTERNAL_KEY: v.summary,
            SAMPLE_SIZE_KEY: sample_size_summary(ds, r2),
            # what monitoring compares production with: out-of-fold scores under cross-validation; under the
            # bootstrap the final model's own (in-sample) scores, as no patient is left out of it
            PROFILE_KEY: build_profile(
                ds.X, ds.features, v.scores, ds.binary_target.values, threshold=None, seed=config.seed
            ).to_dict(),
            **(extra or {}),
        },
    )
    bundle = register(ModelBundle(model=model, features=list(ds.features), metadata=metadata), settings)
    step("writing report", 0.0)
    report_path = write_model_report(bundle, settings)
    seconds = time.perf_counter() - t0
    return TrainResult(bundle, v.evaluation, ext_reports, report_path, seconds, tuned.n_trials, timings)
