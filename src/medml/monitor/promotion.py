"""Champion and challenger: promote a model version through the gates, or re-fit one on newer data and gate it.

The ``champion`` is the version MLflow's alias of that name points at (without one, a first promotion makes it);
:func:`promote` judges a challenger against it with :mod:`medml.monitor.gates` and moves the alias only when every
gate passes. :func:`retrain` re-fits the champion's kind on its development data plus new data up to a date, and
sends the new version through the same gates.

Dates: a row of new data is dated by a time column of its table (``time_column``) or by the dataset's index times.
The catalogued datasets (UCI heart, SUPPORT2) carry no dates, so their rows cannot be cut at a date: replay them in
order of admission with a time column (the benchmark does: ``benchmarks/bench_gates.py``), or record them through the
monitoring store, whose predictions are dated when they were scored.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from medml.data.splits import Split, patient_split
from medml.data.targets import BinaryTarget
from medml.data.task import TaskDataset
from medml.errors import ConfigError, DataError, clip, quote
from medml.monitor.gates import (
    SEEN_KEY,
    EvaluationSet,
    GateReport,
    Gates,
    check_gates,
    evaluation_set,
    seen_record,
    unseen,
)
from medml.registry import ModelBundle, load_bundle, resolve
from medml.registry.tracking import CHALLENGER, CHAMPION, get_aliases, set_aliases

if TYPE_CHECKING:
    from medml.config import Settings

Step = Callable[[str, float], None]
#: metadata.extra key of a retrained model: what it was re-fitted on
RETRAIN_KEY = "retrain"


@dataclass(frozen=True)
class Promotion:
    """What a promotion did: the gates' report and the aliases before and after (equal when a gate failed)."""

    report: GateReport
    before: dict[str, int]
    after: dict[str, int]

    @property
    def promoted(self) -> bool:
        return self.report.passed


def champion_of(name: str, settings: Settings) -> ModelBundle | None:
    """The version MLflow's ``champion`` alias of ``name`` points at, or None when no version has been promoted."""
    version = get_aliases(name, settings).get(CHAMPION)
    return None if version is None else load_bundle(f"{name}@{version}", settings)


def promote(
    ref: str, settings: Settings, gates: Gates, data: TaskDataset | None = None, *, progress: Step | None = None
) -> Promotion:
    """Judge ``ref`` (``name@version``) against its model's champion on the same unseen patients and, when every
    gate passes, point ``champion`` at it (and take ``challenger`` off it). ``data``: the patients to judge on
    (default: the challenger's catalogued development dataset; only rows neither model saw are used)."""
    step = progress or (lambda _d, _f: None)
    name, version, _ = resolve(ref, settings)
    before = get_aliases(name, settings)
    if before.get(CHAMPION) == version:
        raise ConfigError(
            f"{name}@{version} is already the champion: a model cannot be promoted onto itself",
            f"promote another version of {name} (`medml models list`), or retrain one",
        )
    challenger = load_bundle(f"{name}@{version}", settings)
    champion = None if CHAMPION not in before else load_bundle(f"{name}@{before[CHAMPION]}", settings)
    step("reading the evaluation patients", 0.1)
    ds = data if data is not None else _development_data(challenger)
    models = [m for m in (challenger, champion) if m is not None]
    judged = unseen(evaluation_set(ds, models))
    step("scoring and bootstrapping", 0.3)
    report = check_gates(challenger, champion, judged, gates)
    after = before
    if report.passed:
        moves: dict[str, int | None] = {CHAMPION: challenger.version}
        if before.get(CHALLENGER) == challenger.version:
            moves[CHALLENGER] = None
        after = set_aliases(name, moves, settings)
    return Promotion(report, before, after)


def _development_data(bundle: ModelBundle) -> TaskDataset:
    from medml.pipelines.catalogue import list_datasets, load_dataset

    key = bundle.metadata.extra.get(RETRAIN_KEY, {}).get("base") or bundle.metadata.dataset
    if key not in {d.key for d in list_datasets()}:
        raise ConfigError(
            f"{bundle.ref} was developed on {quote(bundle.metadata.dataset)}, not a catalogued dataset",
            "give the patients to judge both models on with --data (a dataset key, table or spec)",
        )
    return load_dataset(key)


# --- retraining ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Retraining:
    """A re-fitted version, the gates' verdict against the champion, and the aliases after."""

    bundle: ModelBundle
    promotion: Promotion
    rows_until: int
    rows_after: int
    report_path: str


def dated(ds: TaskDataset, times: npt.ArrayLike) -> pd.DatetimeIndex:
    """``times`` as UTC timestamps, one per row of ``ds``; a missing or unreadable date is refused."""
    try:
        t = pd.DatetimeIndex(pd.to_datetime(pd.Series(np.asarray(times, dtype=object)), utc=True, format="mixed"))
    except (ValueError, TypeError) as e:
        raise DataError(
            f"the dates of {ds.name} cannot be read: {clip(str(e))}", "write ISO dates, e.g. 2026-05-01"
        ) from None
    if len(t) != len(ds):
        raise DataError(f"{len(t)} dates for {len(ds)} rows of {ds.name}", "give one date per row")
    if t.isna().any():
        first = int(np.flatnonzero(t.isna())[0])
        raise DataError(
            f"{int(np.asarray(t.isna()).sum())} rows of {ds.name} have no date (first: row {first + 1})",
            "date every row (its index or admission time)",
        )
    return t


def retrain(
    name: str,
    until: pd.Timestamp,
    new: TaskDataset,
    times: npt.ArrayLike,
    settings: Settings,
    gates: Gates,
    *,
    base: bool | TaskDataset = True,
    budget_seconds: float = 60.0,
    max_trials: int = 60,
    n_boot: int = 1000,
    progress: Step | None = None,
) -> Retraining:
    """Re-fit ``name``'s champion (or its latest version) on its development data plus the rows of ``new`` dated
    up to ``until``, register the result, and promote it only if it passes ``gates`` against the champion.
    ``base``: True re-reads the development data (a catalogued dataset), a TaskDataset gives it (its name and data
    hash must be the champion's), False leaves it out.

    The development data keeps the split its champion was trained with, so the champion's test patients stay out
    of the re-fit; the new rows are split by patient with the same seed and fractions. The gates judge both models
    on every patient neither saw: both test parts and the new rows dated after ``until``.
    """
    from medml.pipelines.tabular import TrainConfig, data_hash
    from medml.pipelines.tabular import train as fit

    step = progress or (lambda _d, _f: None)
    champion = champion_of(name, settings) or load_bundle(name, settings)
    md = champion.metadata
    when = dated(new, times)
    cut = pd.Timestamp(until).tz_localize("UTC") if pd.Timestamp(until).tzinfo is None else pd.Timestamp(until)
    upto = np.asarray(when <= cut)
    if not upto.any():
        raise DataError(
            f"no row of {new.name} is dated up to {cut.date()} (its dates run {when.min().date()} to "
            f"{when.max().date()})",
            "choose a later --until",
        )
    new = _with_features(new, champion)
    f = md.extra.get("fractions", (0.6, 0.2, 0.2))
    fractions = (float(f[0]), float(f[1]), float(f[2]))
    seed = int(md.seed or 0)
    fresh = new.subset(np.flatnonzero(upto))
    parts: list[tuple[TaskDataset, Split]] = []
    judge_on = [new]
    base_seed = seed
    base_key = md.extra.get(RETRAIN_KEY, {}).get("base") or md.dataset
    if base is not False:
        from medml.pipelines.catalogue import list_datasets, load_dataset

        if isinstance(base, TaskDataset):
            dev_as_read = base
        elif base_key in {d.key for d in list_datasets()}:
            dev_as_read = load_dataset(base_key)
        else:
            raise ConfigError(
                f"{champion.ref} was developed on {quote(base_key)}, not a catalogued dataset",
                "retrain on the new data alone with --no-base",
            )
        dev = _with_features(dev_as_read, champion)
        want = md.extra.get(RETRAIN_KEY, {}).get("base_hash") or md.data_hash
        if data_hash(dev_as_read) != want:
            raise DataError(
                f"the development data {base_key} differs from what {champion.ref} was trained on",
                "retrain on the new data alone with --no-base",
            )
        base_seed = int(md.extra.get(RETRAIN_KEY, {}).get("base_seed", seed))
        judge_on.insert(0, dev_as_read)
        parts.append((dev, patient_split(dev.groups, dev.binary_target.values, fractions=fractions, seed=base_seed)))
    parts.append((fresh, patient_split(fresh.groups, fresh.binary_target.values, fractions=fractions, seed=seed)))
    base = base is not False
    combined, split = _joined(parts, f"{base_key + '+' if base else ''}{new.name}<={cut.date()}")
    salt = secrets.token_hex(8)
    seen = {ds.name: np.concatenate([ds.groups[s.train], ds.groups[s.calibration]]) for ds, s in parts}
    extra = {
        RETRAIN_KEY: {
            "from": champion.ref,
            "base": base_key if base else None,
            "base_hash": (md.extra.get(RETRAIN_KEY, {}).get("base_hash") or md.data_hash) if base else None,
            "base_seed": base_seed if base else None,
            "new": new.name,
            "until": cut.isoformat(),
            "rows_until": int(upto.sum()),
        },
        SEEN_KEY: seen_record(seen, salt),
    }
    config = TrainConfig(
        model=md.model_kind,
        budget_seconds=budget_seconds,
        max_trials=max_trials,
        seed=seed,
        n_boot=n_boot,
        fractions=fractions,
        name=name,
    )
    result = fit(
        combined,
        config,
        settings,
        progress=lambda d, f: step(f"re-fitting: {d}", 0.1 + 0.6 * f),
        split=split,
        extra=extra,
    )
    step("gating against the champion", 0.8)
    judged = _judged(judge_on, [result.bundle, champion])
    report = check_gates(result.bundle, champion, judged, gates)
    before = get_aliases(name, settings)
    after = before
    if report.passed:
        after = set_aliases(name, {CHAMPION: result.bundle.version}, settings)
    return Retraining(
        result.bundle, Promotion(report, before, after), int(upto.sum()), int((~upto).sum()), str(result.report_path)
    )


def _with_features(ds: TaskDataset, bundle: ModelBundle) -> TaskDataset:
    """``ds`` with exactly ``bundle``'s input columns and feature specs (categories as text, numbers as floats)."""
    missing = [f.name for f in bundle.features if f.name not in ds.X.columns]
    if missing:
        raise DataError(
            f"{ds.name} lacks {len(missing)} input(s) of {bundle.ref}: {', '.join(clip(m) for m in missing[:5])}",
            "the new data must hold every input the model reads, under the same column names",
        )
    X = pd.DataFrame(index=ds.X.index)
    for f in bundle.features:
        col = ds.X[f.name]
        if f.kind == "numeric":
            X[f.name] = pd.to_numeric(col, errors="coerce").astype(float)
        else:
            X[f.name] = col.astype(object).where(col.notna(), None).map(_category_text)
    return dataclasses.replace(ds, X=X, features=tuple(bundle.features))


def _category_text(value: Any) -> str | None:
    """A category as text; a whole number read from a table (``2.0``) as the code it was written as (``2``)."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _joined(parts: list[tuple[TaskDataset, Split]], name: str) -> tuple[TaskDataset, Split]:
    """One TaskDataset of ``parts`` (rows in order) and the split that keeps each part's own assignment."""
    datasets = [ds for ds, _ in parts]
    offsets = np.cumsum([0] + [len(ds) for ds in datasets])[:-1]
    split = Split(
        *(
            np.concatenate([getattr(s, part) + o for (_, s), o in zip(parts, offsets, strict=True)]).astype(np.intp)
            for part in ("train", "calibration", "test")
        )
    )
    common = [c for c in datasets[0].sensitive.columns if all(c in ds.sensitive.columns for ds in datasets)]
    first = datasets[0]
    combined = TaskDataset(
        name=name,
        task=first.task,
        X=pd.concat([ds.X for ds in datasets], ignore_index=True),
        y=BinaryTarget(np.concatenate([ds.binary_target.values for ds in datasets]), first.binary_target.name),
        groups=np.concatenate([ds.groups for ds in datasets]).astype(object),
        features=first.features,
        sensitive=pd.concat([ds.sensitive[common].astype(object) for ds in datasets], ignore_index=True),
        ids=np.concatenate([ds.ids for ds in datasets]).astype(object),
        population=" + ".join(ds.population for ds in datasets if ds.population),
        provenance=" + ".join(ds.provenance for ds in datasets if ds.provenance),
    )
    return combined, split


def _judged(datasets: list[TaskDataset], models: list[ModelBundle]) -> EvaluationSet:
    """The rows of ``datasets`` that no model of ``models`` saw, as one evaluation set."""
    sets = [unseen(evaluation_set(ds, models)) for ds in datasets]
    common = [c for c in sets[0].sensitive.columns if all(c in s.sensitive.columns for s in sets)]
    seen: dict[str, Any] = {}
    for m in models:
        masks = [s.seen.get(m.ref) for s in sets]
        seen[m.ref] = None if any(x is None for x in masks) else np.concatenate(masks)  # type: ignore[arg-type]
    return EvaluationSet(
        name=" + ".join(s.name for s in sets),
        X=pd.concat([s.X for s in sets], ignore_index=True),
        y=np.concatenate([s.y for s in sets]).astype(np.int8),
        groups=np.concatenate([s.groups for s in sets]).astype(object),
        sensitive=pd.concat([s.sensitive[common].astype(object) for s in sets], ignore_index=True),
        target=sets[0].target,
        seen=seen,
    )


def aliases_text(aliases: Mapping[str, int]) -> str:
    """``champion -> 3, challenger -> 4`` (or ``none``)."""
    return ", ".join(f"{k} -> {v}" for k, v in sorted(aliases.items())) or "none"


__all__ = ["Promotion", "Retraining", "aliases_text", "champion_of", "dated", "promote", "retrain"]
