"""Survival models end to end: split, fit, evaluate at the horizons, explain, register and report.

The same path as a binary model (:mod:`medml.pipelines.tabular`), with a
:class:`~medml.data.targets.SurvivalTarget`: the bundle's ``predict_proba`` is the risk by the first horizon, its
headline the time-dependent AUC, Brier score and ICI there, and its evaluation holds every horizon.
"""

from __future__ import annotations

import hashlib
import time as clock
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from medml import __version__
from medml.config import Settings
from medml.data import TaskDataset, patient_split
from medml.data.datasets import gbsg2, physionet2012, support2, survival_sets
from medml.data.datasets._common import UNKNOWN, id_array
from medml.data.leakage import check_patient_overlap
from medml.data.targets import SurvivalTarget
from medml.data.task import infer_features
from medml.errors import DataError, InputFileError, NotFoundError
from medml.evaluate import EvaluationReport, Headline
from medml.evaluate.survival import SurvivalPredictions, check_horizons, check_survival, evaluate_survival
from medml.explain import global_importance, top_factors
from medml.models.survival import DEFAULT_HORIZONS, make_survival_model, survival_model_kind
from medml.models.survival_search import SurvivalSearch, search_survival
from medml.registry import BundleMetadata, ModelBundle, register
from medml.report import table_one

Step = Callable[[str, float], None]


def _physionet_served() -> TaskDataset:
    """PhysioNet 2012's survival task with the FHIR reading of its 225 features (the binary task's, equal to the
    table's), so that its models can be deployed as CDS services: time zero is ICU admission, the encounter's start
    that the reading anchors to, as the survival days count from it."""
    from dataclasses import replace

    from medml.fhir.tasks import physionet_serving

    return replace(physionet2012.load_survival(), serving=replace(physionet_serving(48), outcome="death"))


#: the survival datasets ``medml survival train`` knows by key
SURVIVAL_DATASETS: dict[str, Callable[[], TaskDataset]] = {
    "support2": partial(support2.load_survival, features="full"),
    "support2-deepsurv": partial(support2.load_survival, features="deepsurv"),
    "gbsg2": gbsg2.load,
    "physionet-2012": _physionet_served,
    **{key: partial(survival_sets.load, key) for key in survival_sets.SOURCES},
}

#: each dataset's horizons when none are given, in its own time unit, inside its follow-up (default: 180, 365, 730)
DATASET_HORIZONS: dict[str, tuple[float, ...]] = {
    "veterans": (30.0, 90.0, 180.0),
    "aids": (90.0, 180.0, 270.0),
    "rossi": (13.0, 26.0, 39.0),
    "flchain": (365.0, 1825.0, 3650.0),
    "whas500": (365.0, 730.0, 1825.0),
    "physionet-2012": (30.0, 90.0, 180.0),
}


def censoring_note(ds: TaskDataset) -> str:
    """How many development patients were censored, and the longest follow-up: what a card and RiskAssessment say."""
    y = survival_target(ds)
    n, events = len(y.time), int(y.event.sum())
    return (
        f"{n - events:,} of {n:,} development patients had no {y.name} observed and were censored at their last "
        f"follow-up (the longest {y.time.max():g} {y.time_unit})"
    )


def default_horizons(ds: TaskDataset) -> tuple[float, ...]:
    """The horizons a model of ``ds`` reports when none are asked for."""
    return DATASET_HORIZONS.get(ds.name, DEFAULT_HORIZONS)


def load_survival_dataset(key: str) -> TaskDataset:
    """A survival dataset by key (see :data:`SURVIVAL_DATASETS`), with ``-deepsurv`` naming SUPPORT2's 14."""
    if key not in SURVIVAL_DATASETS:
        raise NotFoundError(
            f"unknown survival dataset '{key}'",
            f"use one of {', '.join(SURVIVAL_DATASETS)}, or a CSV/Parquet file with --time and --event",
        )
    ds = SURVIVAL_DATASETS[key]()
    return ds if ds.name == key else _renamed(ds, key)


def _renamed(ds: TaskDataset, key: str) -> TaskDataset:
    from dataclasses import replace

    return replace(ds, name=key)


def load_survival_table(
    path: str | Path,
    *,
    time: str,
    event: str,
    id_column: str | None = None,
    sensitive: Sequence[str] = (),
    features: Sequence[str] | None = None,
) -> TaskDataset:
    """A CSV or Parquet table as a survival task: ``time`` (days, above zero) and ``event`` (0/1) columns, every
    other column a predictor unless ``features`` names them. Bad times or events are one clear DataError."""
    from medml.data.datasets._tableio import read_table

    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"file not found: {p}", "check the path")
    frame = read_table(p)
    frame.columns = [str(c) for c in frame.columns]
    named = [("time", time), ("event", event), ("id", id_column), *(("sensitive", s) for s in sensitive)]
    named += [("feature", f) for f in features or ()]
    missing = [f"{role} '{c}'" for role, c in named if c and c not in frame.columns]
    if missing:
        raise DataError(
            f"{p.name} has no column for {', '.join(missing)}", f"its columns are: {', '.join(frame.columns[:40])}"
        )
    t, e = check_survival(frame[time].to_numpy(), frame[event].to_numpy(), what=f"{p.name} ({time}, {event})")
    skip = {time, event, *([id_column] if id_column else []), *sensitive}
    names = list(features) if features else [c for c in frame.columns if c not in skip]
    if not names:
        raise DataError(f"{p.name} has no predictor columns besides time, event, id and sensitive ones")
    X = pd.DataFrame({c: _predictor(frame[c]) for c in names})
    ids = id_array(frame[id_column]) if id_column else id_array(np.arange(1, len(frame) + 1))
    with p.open("rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    return TaskDataset(
        name=p.name.split(".")[0],
        task=f"time to {event} ({time}, days)",
        X=X,
        y=SurvivalTarget(t, e, event),
        groups=ids,
        features=infer_features(X),
        sensitive=pd.DataFrame(
            {c: frame[c].astype(str).where(frame[c].notna(), UNKNOWN) for c in sensitive}, index=frame.index
        ),
        ids=ids,
        population=f"{len(frame):,} rows of {p.name}" + ("" if id_column else "; each row taken to be a patient"),
        provenance=f"{p.resolve()} (sha256 {digest[:16]})",
        excluded={time: "the outcome: follow-up time", event: "the outcome: 1 = event, 0 = censored"},
    )


def _predictor(col: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(col):
        return col.astype(float)
    if pd.api.types.is_numeric_dtype(col):
        return col.astype(float)
    numbers = pd.to_numeric(col, errors="coerce")
    if numbers.notna().sum() == col.notna().sum():
        return numbers.astype(float)
    text = col.astype("string").str.strip()
    return pd.Series(pd.Categorical(text, categories=sorted(text.dropna().unique())), index=col.index)


@dataclass(frozen=True)
class SurvivalConfig:
    """How to train a survival model: kind, horizons (days; the first is the bundle's ``predict_proba``), seed,
    bootstrap resamples, split fractions (train, held-out calibration part that joins training, test), and the
    search budget (:mod:`medml.models.survival_search`; 0 = no search)."""

    model: str = "cox"
    horizons: tuple[float, ...] = DEFAULT_HORIZONS
    seed: int = 0
    n_boot: int = 200
    fractions: tuple[float, float, float] = (0.6, 0.15, 0.25)
    name: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    #: seconds of hyperparameter search on the training patients (0: the kind's defaults and ``params``, no search)
    budget_seconds: float = 0.0
    max_trials: int = 40


@dataclass
class SurvivalResult:
    """What ``medml survival train`` produced."""

    bundle: ModelBundle
    evaluation: EvaluationReport
    report_path: Path
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)


def survival_target(ds: TaskDataset) -> SurvivalTarget:
    if not isinstance(ds.y, SurvivalTarget):
        raise DataError(f"task '{ds.name}' has a binary target; a survival model needs time and event")
    return ds.y


def data_hash(ds: TaskDataset) -> str:
    """sha256 over features, times, events and patient ids."""
    y = survival_target(ds)
    h = hashlib.sha256()
    h.update(pd.util.hash_pandas_object(ds.X, index=False).to_numpy().tobytes())
    h.update(y.time.tobytes())
    h.update(y.event.tobytes())
    h.update(pd.util.hash_pandas_object(pd.Series(ds.groups.astype(str)), index=False).to_numpy().tobytes())
    return h.hexdigest()


def check_survival_task(ds: TaskDataset, horizons: Sequence[float]) -> tuple[float, ...]:
    """The dataset's times and events are usable and every horizon lies within its follow-up: else DataError."""
    y = survival_target(ds)
    t, _ = check_survival(y.time, y.event, what=f"dataset '{ds.name}'")
    return check_horizons(horizons, t, what=f"dataset '{ds.name}'")


def predictions(model: Any, ds: TaskDataset, name: str = "") -> SurvivalPredictions:
    y = survival_target(ds)
    return SurvivalPredictions(
        ds.ids, y.time, y.event, model.predict(ds.X), model.event_times_, model.predict_survival(ds.X), name
    )


def intended_use(ds: TaskDataset, horizons: Sequence[float]) -> str:
    days = ", ".join(f"{h:g}" for h in horizons)
    return (
        f"Decision support for clinicians: estimates the risk of '{survival_target(ds).name}' within {days} "
        f"{survival_target(ds).time_unit} (task: {ds.task}) for patients like those in the development population: "
        f"{ds.population}. It informs, and does not replace, clinical judgement; it is not a diagnosis. Validate "
        "locally before use on another population or site."
    )


def headline_metrics(report: EvaluationReport) -> dict[str, Any]:
    """The numbers MLflow logs and ``medml models list`` shows: AUROC is the time-dependent AUC at the first
    horizon, so a survival model lines up with binary ones there."""
    d, c = report.discrimination, report.calibration
    return {
        "n": report.n,
        "n_events": report.n_events,
        "harrell_c": d["harrell_c"].to_dict(),
        "uno_c": d["uno_c"].to_dict(),
        "auroc": d["auroc"].to_dict(),
        "brier": c["brier"].to_dict(),
        "ibs": c["ibs"].to_dict(),
        "ici": c["ici"],
        "d_calibration_p": c["d_calibration"]["p_value"],
    }


def train_survival(
    ds: TaskDataset, config: SurvivalConfig, settings: Settings, *, progress: Step | None = None
) -> SurvivalResult:
    """Split by patient, fit, evaluate on the held-out patients at each horizon, explain, register, report.

    Every check runs before anything is fitted: bad times or events, and horizons past the follow-up of the data
    or of either split, raise DataError and nothing is registered.
    """
    step = progress or (lambda _d, _f: None)
    survival_model_kind(config.model)
    horizons = check_survival_task(ds, config.horizons)
    t0 = clock.perf_counter()
    timings: dict[str, float] = {}
    y = survival_target(ds)
    split = patient_split(ds.groups, y.event, fractions=config.fractions, seed=config.seed)
    check_patient_overlap(ds.groups, split)
    train_rows = np.sort(np.concatenate([split.train, split.calibration]))
    train_ds, test_ds = ds.subset(train_rows), ds.subset(split.test)
    for part, where in ((train_ds, "training split"), (test_ds, "test split")):
        py = survival_target(part)
        check_survival(py.time, py.event, what=f"the {where} of '{ds.name}'")
        check_horizons(horizons, py.time, what=f"the {where} of '{ds.name}'")

    params = dict(config.params)
    search: SurvivalSearch | None = None
    if config.budget_seconds > 0:
        step("searching", 0.0)
        t = clock.perf_counter()
        search = search_survival(
            config.model,
            train_ds,
            horizons=horizons,
            budget_seconds=config.budget_seconds,
            max_trials=config.max_trials,
            seed=config.seed,
            fixed=config.params,
            on_trial=lambda n, _ibs: step(
                "searching", min(n / config.max_trials, (clock.perf_counter() - t) / config.budget_seconds)
            ),
        )
        params = search.params
        timings["search"] = clock.perf_counter() - t

    step("fitting", 0.0)
    t = clock.perf_counter()
    model = make_survival_model(config.model, ds.features, horizons=horizons, params=params, seed=config.seed)
    model.fit(train_ds.X, train_ds.y)
    timings["fit"] = clock.perf_counter() - t

    step("evaluating", 0.3)
    t = clock.perf_counter()
    name = config.name or f"{ds.name}-{config.model}"
    ty = survival_target(train_ds)
    evaluation = evaluate_survival(
        predictions(model, test_ds, name),
        train_time=ty.time,
        train_event=ty.event,
        horizons=horizons,
        dataset=ds.name,
        split="test",
        population=ds.population,
        n_boot=config.n_boot,
        seed=config.seed,
        sensitive=test_ds.sensitive if len(test_ds.sensitive.columns) else None,
    )
    timings["evaluate"] = clock.perf_counter() - t

    step("explaining", 0.7)
    t = clock.perf_counter()
    # a kind may average over fewer rows: the forest's occlusion predicts once per feature per row
    importance = global_importance(model, test_ds.X, max_rows=getattr(model, "importance_rows", 5000), seed=config.seed)
    examples = example_patients(model, test_ds)
    timings["explain"] = clock.perf_counter() - t

    step("registering", 0.8)
    t = clock.perf_counter()
    metadata = BundleMetadata(
        name=name,
        version=0,
        model_kind=config.model,
        dataset=ds.name,
        task=ds.task,
        target=f"{y.name} within {horizons[0]:g} {y.time_unit}",
        intended_use=intended_use(ds, horizons),
        population=ds.population,
        created=pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
        code_version=__version__,
        data_hash=data_hash(ds),
        params={**model.get_params(deep=False), "features": None, "horizons": list(horizons)},
        calibration="none",
        seed=config.seed,
        split_sizes={"train": len(train_ds), "test": len(test_ds), "patients": len(np.unique(ds.groups))},
        excluded_columns=dict(ds.excluded),
        metrics=headline_metrics(evaluation),
        evaluation=evaluation.to_dict(),
        headline=Headline.of(evaluation),
        serving=ds.serving,
        extra={
            "survival": {
                "horizons": list(horizons),
                "time_unit": y.time_unit,
                "outcome": y.name,
                "censoring": censoring_note(ds),
            },
            "importance": importance,
            "examples": examples,
            "table_one": _table_one(ds),
            "provenance": ds.provenance,
            "fractions": list(config.fractions),
            "explanation_method": model.explanation_method,
            "medml_version": __version__,
            "search": search.to_dict() if search is not None else None,
        },
    )
    bundle = register(ModelBundle(model=model, features=list(ds.features), metadata=metadata), settings)
    timings["register"] = clock.perf_counter() - t

    step("writing report", 0.95)
    report_path = write_survival_report(bundle, settings)
    return SurvivalResult(bundle, evaluation, report_path, clock.perf_counter() - t0, timings)


def _table_one(ds: TaskDataset) -> dict[str, Any]:
    """Table 1 by whether the event was observed during follow-up."""
    shown = ds.features[:40]
    return table_one(ds.X[[f.name for f in shown]], survival_target(ds).event.astype(np.int8), shown)


def example_patients(model: Any, ds: TaskDataset, k: int = 3) -> list[dict[str, Any]]:
    """The highest-, middle- and lowest-risk test patients with their top factors, on the model's contribution scale
    (log hazard ratio, or the risk by the first horizon for the forest's occlusion)."""
    risk = model.predict_proba(ds.X)[:, 1]
    order = np.argsort(risk)
    picks = sorted({int(order[-1]), int(order[len(order) // 2]), int(order[0])}, key=lambda i: -risk[i])[:k]
    rows = ds.X.iloc[picks].reset_index(drop=True)
    contrib = model.contributions(rows).drop(columns="bias")
    specs = {f.name: f for f in model.features_}
    scale = getattr(model, "contribution_scale", "log hazard ratio")
    out = []
    for row, i in enumerate(picks):
        values = contrib.iloc[row]
        top = values.abs().sort_values(ascending=False).index[:5]
        factors = []
        for feat in top:
            c = float(values[feat])
            if c == 0:
                continue
            spec = specs[str(feat)]
            raw = rows.iloc[row][feat]
            shown = "missing" if pd.isna(raw) else (f"{raw:.4g}" if isinstance(raw, float) else str(raw))
            direction = "raises risk" if c > 0 else "lowers risk"
            unit = f" {spec.unit}" if spec.unit and shown != "missing" else ""
            factors.append(
                {
                    "feature": str(feat),
                    "label": spec.clinical_name,
                    "value": shown,
                    "unit": spec.unit,
                    "contribution": c,
                    "direction": direction,
                    "text": f"{spec.clinical_name} {shown}{unit}: {direction} ({c:+.2f} {scale})",
                }
            )
        out.append({"id": str(ds.ids[i]), "risk": float(risk[i]), "factors": factors})
    return out


def write_survival_report(bundle: ModelBundle, settings: Settings) -> Path:
    """The HTML report of a registered survival model, from its bundle alone."""
    from dataclasses import replace

    from medml.pipelines.tabular import report_inputs
    from medml.report import write_report

    md = bundle.metadata
    kind = survival_model_kind(md.model_kind)
    base = report_inputs(bundle)
    inputs = replace(
        base,
        model={
            **base.model,
            "survival": md.extra.get("survival", {}),
            "preprocessing": kind.preprocessing,
            "missing_data": kind.missing_data.report,
            "contribution_scale": getattr(kind, "contribution_scale", "log hazard ratio"),
        },
    )
    return write_report(inputs, settings.reports_dir / f"{md.name}@{md.version}.html")


def survival_grid(horizons: Sequence[float], steps: int = 12) -> npt.NDArray[np.float64]:
    """The times ``medml predict`` gives S(t) at: ``steps`` equal steps up to the last horizon, and the horizons."""
    last = max(horizons)
    return np.unique(np.concatenate([np.round(np.linspace(0.0, last, steps + 1)[1:], 1), np.asarray(horizons)]))


def score_survival_table(
    bundle: ModelBundle,
    frame: pd.DataFrame,
    *,
    id_column: str | None = None,
    top: int = 3,
    times: Sequence[float] | None = None,
) -> pd.DataFrame:
    """Each row's risk of the event by each of the model's horizons (``risk_by_H_UNIT``; ``risk`` is the first, as
    the monitor records it), its survival curve S(t) at ``times`` (``survival_at_T_UNIT``; default
    :func:`survival_grid`), its top factors on the model's own scale, and the model that said so.

    A value outside its input's plausible range is left out, scored as missing and named in ``left_out``, as
    ``medml predict`` does for a binary model.
    """
    from medml.data.task import implausible

    info = bundle.metadata.extra.get("survival") or {}
    horizons = tuple(float(h) for h in info.get("horizons", ()))
    unit = str(info.get("time_unit", "days"))
    if not horizons:
        raise DataError(f"{bundle.ref} is not a survival model (its metadata names no horizons)")
    if id_column is not None and id_column not in frame.columns:
        raise DataError(
            f"no id column '{id_column}' in the table", f"columns are: {', '.join(map(str, frame.columns[:20]))}"
        )
    ids = frame[id_column].astype(str).to_numpy() if id_column else np.arange(1, len(frame) + 1).astype(str)
    frame = frame.reset_index(drop=True)
    left_out: list[list[str]] = [[] for _ in range(len(frame))]
    bad = implausible(frame, bundle.features)
    if bad:
        frame = frame.copy()
        specs = {f.name: f for f in bundle.features}
        for name, mask in bad.items():
            spec = specs[name]
            rng = f"{spec.plausible[0]:g}-{spec.plausible[1]:g} {spec.unit}".strip() if spec.plausible else "finite"
            for row in np.flatnonzero(mask):
                left_out[row].append(f"{spec.clinical_name} {frame.at[row, name]!s:.20} (outside {rng})")
            frame[name] = pd.to_numeric(frame[name], errors="coerce").where(~mask)
    model = bundle.model
    grid = survival_grid(horizons) if times is None else np.asarray(times, dtype=float)
    risk = model.predict_risk(frame)
    curve = model.predict_survival(frame, grid)
    out = pd.DataFrame({"id": ids, "risk": risk[:, 0]})
    for j, h in enumerate(horizons):
        out[f"risk_by_{h:g}_{unit}"] = risk[:, j]
    for j, t in enumerate(grid):
        out[f"survival_at_{t:g}_{unit}"] = curve[:, j]
    if top > 0:
        scale = getattr(model, "contribution_scale", "log hazard ratio")
        factors = top_factors(model, frame, k=top)
        for k in range(top):
            out[f"factor_{k + 1}"] = [
                f"{fs[k].label} {fs[k].value}{'' if not fs[k].unit or fs[k].value == 'missing' else ' ' + fs[k].unit}"
                f": {fs[k].direction} ({fs[k].contribution:+.2f} {scale})"
                if k < len(fs)
                else ""
                for fs in factors
            ]
    out["left_out"] = ["; ".join(x) for x in left_out]
    out["model"] = f"{bundle.metadata.name}@{bundle.metadata.version}"
    return out
