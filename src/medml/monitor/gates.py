"""Promotion gates: what a challenger must show, on the same patients as the champion, before it replaces it.

The gates are read from a YAML file (``gates.yaml`` beside this module is the documented default): a mapping of
metric -> settings. Each gate compares the two models on one :class:`EvaluationSet`, patients neither model was
fitted or calibrated on, and says pass or fail with the number and the rule it applied:

- ``auroc_difference``: a paired bootstrap of challenger AUROC minus champion AUROC (the same resampled patients for
  both, stratified by outcome; the percentile interval, Efron and Tibshirani 1993, ch. 13). A non-inferiority test:
  pass when the one-sided lower ``1 - alpha`` bound is above ``-margin``.
- ``calibration_slope``: the challenger's logistic recalibration slope (Cox 1958) inside a band.
- ``subgroup_auroc_gap``: the challenger's largest subgroup AUROC gap per sensitive attribute
  (:func:`medml.evaluate.fairness.subgroup_report`), failing when above ``max_gap`` with its interval above 0.
- ``evaluation_size``: enough patients and events to judge.
- ``leakage``: no evaluation patient among either model's training or calibration patients, and no feature that
  is the outcome or a recoding of it (:mod:`medml.data.leakage`). Always run.

This module scores and judges; moving MLflow's aliases is the caller's (``medml promote``, ``medml retrain``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from medml.data.leakage import check_patient_overlap, check_target_not_in_features
from medml.data.splits import Split, patient_split
from medml.data.task import TaskDataset
from medml.errors import ConfigError, DataError, InputFileError, LeakageError, clip, quote
from medml.evaluate.bootstrap import resample_counts, single_threaded_blas
from medml.evaluate.calibration import calibration_slope
from medml.evaluate.discrimination import auroc, auroc_weighted
from medml.evaluate.fairness import subgroup_report
from medml.registry import ModelBundle

#: the documented default gates file, shipped with medml
GATES_FILE = Path(__file__).with_name("gates.yaml")


@dataclass(frozen=True)
class AurocDifference:
    """Paired bootstrap of challenger minus champion AUROC; pass when its lower ``1 - alpha`` bound > -margin."""

    margin: float = 0.02
    alpha: float = 0.05
    n_boot: int = 2000
    seed: int = 0


@dataclass(frozen=True)
class CalibrationSlope:
    """The challenger's calibration slope inside ``[low, high]``."""

    low: float = 0.8
    high: float = 1.25


@dataclass(frozen=True)
class SubgroupAurocGap:
    """Fail when a sensitive attribute's subgroup AUROC gap is above ``max_gap`` and its interval above 0."""

    max_gap: float = 0.10
    min_events: int = 10
    n_boot: int = 500


@dataclass(frozen=True)
class EvaluationSize:
    """At least ``min_patients`` evaluation patients and ``min_events`` of each outcome."""

    min_patients: int = 100
    min_events: int = 20


@dataclass(frozen=True)
class Leakage:
    """Evaluation patients unseen by both models; no feature that is the outcome. No settings."""


Gate = AurocDifference | CalibrationSlope | SubgroupAurocGap | EvaluationSize | Leakage
#: metric name in the gates file -> its settings
GATE_TYPES: dict[str, type[Gate]] = {
    "auroc_difference": AurocDifference,
    "calibration_slope": CalibrationSlope,
    "subgroup_auroc_gap": SubgroupAurocGap,
    "evaluation_size": EvaluationSize,
    "leakage": Leakage,
}
_NAME_OF = {cls: name for name, cls in GATE_TYPES.items()}


@dataclass(frozen=True)
class Gates:
    """The gates of one file, in its order (``leakage`` always among them), and where they were read from."""

    gates: tuple[Gate, ...]
    source: str = str(GATES_FILE)

    def names(self) -> list[str]:
        return [_NAME_OF[type(g)] for g in self.gates]


def read_gates(path: str | Path | None = None) -> Gates:
    """The gates of a YAML file (default: the shipped ``gates.yaml``); any unknown metric or setting, a wrong
    type or an impossible value is one :class:`ConfigError` naming the file and what to write instead."""
    import yaml

    p = Path(path) if path is not None else GATES_FILE
    if not p.is_file():
        raise InputFileError(
            f"gates file not found: {p}", f"give a YAML file like {GATES_FILE.name} shipped with medml"
        )
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"gates file {p.name} is not valid YAML: {first}", "fix the file's syntax") from None
    return parse_gates(doc, source=str(p))


def parse_gates(doc: Any, source: str = "gates") -> Gates:
    """Gates from a parsed YAML document ``{"gates": {metric: {setting: value}}}``."""
    where = Path(source).name
    known = ", ".join(GATE_TYPES)
    if not isinstance(doc, Mapping) or set(doc) != {"gates"} or not isinstance(doc["gates"], Mapping):
        raise ConfigError(
            f"gates file {where} must hold one mapping 'gates:' of metric -> settings",
            f"see {GATES_FILE.name} shipped with medml; metrics: {known}",
        )
    gates: list[Gate] = []
    for metric, settings in doc["gates"].items():
        cls = GATE_TYPES.get(str(metric))
        if cls is None:
            raise ConfigError(f"gates file {where}: unknown metric {quote(str(metric))}", f"use one of {known}")
        gates.append(_gate(cls, str(metric), settings, where))
    if not any(isinstance(g, Leakage) for g in gates):
        gates.append(Leakage())
    return Gates(tuple(gates), source)


def _gate(cls: type[Gate], metric: str, settings: Any, where: str) -> Gate:
    if settings is None:
        settings = {}
    if not isinstance(settings, Mapping):
        raise ConfigError(f"gates file {where}: {metric} needs a mapping of settings, got {quote(settings)}")
    fields_ = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in settings.items():
        f = fields_.get(str(key))
        if f is None:
            allowed = ", ".join(fields_) or "none"
            raise ConfigError(
                f"gates file {where}: {metric} has no setting {quote(str(key))}", f"its settings: {allowed}"
            )
        want = int if f.type in ("int", int) else float
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or (want is int and not float(value).is_integer()):
            raise ConfigError(
                f"gates file {where}: {metric}.{key} must be {'a whole number' if want is int else 'a number'}, "
                f"got {quote(value)}"
            )
        values[str(key)] = want(value)
    gate = cls(**values)
    problem = _impossible(gate)
    if problem:
        raise ConfigError(f"gates file {where}: {metric}: {problem}")
    return gate


def _impossible(g: Gate) -> str:
    if isinstance(g, AurocDifference):
        if not 0 < g.alpha < 0.5:
            return f"alpha must be between 0 and 0.5, got {g.alpha:g}"
        if not 0 <= g.margin < 0.5:
            return f"margin must be between 0 and 0.5 (an AUROC difference), got {g.margin:g}"
        if g.n_boot < 200:
            return f"n_boot must be 200 or more for a one-sided bound, got {g.n_boot}"
    if isinstance(g, CalibrationSlope) and not 0 <= g.low < 1 < g.high:
        return f"the band [{g.low:g}, {g.high:g}] must hold 1 (a perfect slope) with 0 <= low"
    if isinstance(g, SubgroupAurocGap) and (g.max_gap <= 0 or g.min_events < 1 or g.n_boot < 100):
        return "max_gap must be above 0, min_events 1 or more and n_boot 100 or more"
    if isinstance(g, EvaluationSize) and (g.min_patients < 2 or g.min_events < 1):
        return "min_patients must be 2 or more and min_events 1 or more"
    return ""


# --- the patients both models are judged on -----------------------------------------------------------------


@dataclass(frozen=True)
class EvaluationSet:
    """Patients to judge both models on: features (every column either model reads), the outcome, patient ids,
    sensitive attributes, and for each model (``name@version``) which rows it was fitted or calibrated on
    (None: that cannot be told)."""

    name: str
    X: pd.DataFrame
    y: npt.NDArray[np.int8]
    groups: npt.NDArray[np.object_]
    sensitive: pd.DataFrame
    target: str
    seen: Mapping[str, npt.NDArray[np.bool_] | None] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.X)

    def subset(self, rows: npt.NDArray[np.bool_]) -> EvaluationSet:
        keep = np.flatnonzero(rows)
        return dataclasses.replace(
            self,
            X=self.X.iloc[keep].reset_index(drop=True),
            y=self.y[keep],
            groups=self.groups[keep],
            sensitive=self.sensitive.iloc[keep].reset_index(drop=True),
            seen={k: (None if m is None else m[keep]) for k, m in self.seen.items()},
        )


def evaluation_set(ds: TaskDataset, models: Sequence[ModelBundle]) -> EvaluationSet:
    """``ds`` with, for each model, the rows it saw in training (:func:`seen_rows`)."""
    return EvaluationSet(
        name=ds.name,
        X=ds.X,
        y=np.asarray(ds.binary_target.values, dtype=np.int8),
        groups=np.asarray(ds.groups, dtype=object),
        sensitive=ds.sensitive,
        target=ds.binary_target.name,
        seen={m.ref: seen_rows(m, ds) for m in models},
    )


def unseen(data: EvaluationSet) -> EvaluationSet:
    """The rows no model of ``data.seen`` was fitted or calibrated on (rows of a model that cannot tell are kept:
    the leakage gate then fails and says why)."""
    keep = np.ones(len(data), dtype=bool)
    for mask in data.seen.values():
        if mask is not None:
            keep &= ~mask
    return data.subset(keep)


#: metadata.extra key of a retrained model: its training and calibration patients, as salted hashes per dataset
SEEN_KEY = "seen_patients"


def seen_rows(bundle: ModelBundle, ds: TaskDataset) -> npt.NDArray[np.bool_] | None:
    """Which rows of ``ds`` ``bundle`` was fitted or calibrated on; None when that cannot be told.

    A retrained model lists its patients (salted hashes, :func:`seen_record`). A model trained by ``medml train`` on
    this very dataset (same data hash) saw the train and calibration parts of the patient split its seed and
    fractions rebuild. A model developed on another dataset saw none of these rows.
    """
    md = bundle.metadata
    record = md.extra.get(SEEN_KEY)
    if isinstance(record, Mapping):
        hashes = record.get("by_dataset", {}).get(ds.name)
        if hashes is None:
            return np.zeros(len(ds), dtype=bool) if ds.name != md.dataset else None
        return np.isin(patient_hashes(ds.groups, str(record["salt"])), np.asarray(hashes, dtype=object))
    if ds.name != md.dataset:
        return np.zeros(len(ds), dtype=bool)
    from medml.pipelines.tabular import data_hash

    if data_hash(ds) != md.data_hash:
        return None
    fractions = tuple(md.extra.get("fractions", (0.6, 0.2, 0.2)))
    split = patient_split(ds.groups, ds.binary_target.values, fractions=fractions, seed=md.seed)  # type: ignore[arg-type]
    mask = np.zeros(len(ds), dtype=bool)
    mask[split.train] = True
    mask[split.calibration] = True
    return mask


def patient_hashes(groups: npt.ArrayLike, salt: str) -> npt.NDArray[np.object_]:
    """A 16-hex-digit keyed BLAKE2b of each patient id: enough to tell a patient again, not to read the id."""
    key = salt.encode()
    return np.asarray(
        [hashlib.blake2b(str(g).encode(), key=key, digest_size=8).hexdigest() for g in np.asarray(groups)],
        dtype=object,
    )


def seen_record(groups_by_dataset: Mapping[str, npt.ArrayLike], salt: str) -> dict[str, Any]:
    """The ``metadata.extra[SEEN_KEY]`` of a model fitted and calibrated on these patients of these datasets."""
    return {
        "salt": salt,
        "by_dataset": {k: sorted(set(patient_hashes(g, salt).tolist())) for k, g in groups_by_dataset.items()},
    }


# --- judging ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict: the number it measured and the rule it applied, in words."""

    gate: str
    passed: bool
    measured: str
    rule: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class GateReport:
    """Every gate's verdict for one challenger against one champion (None: there is no champion yet)."""

    challenger: str
    champion: str | None
    data: str
    n: int
    n_events: int
    results: tuple[GateResult, ...]
    source: str

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> list[GateResult]:
        return [r for r in self.results if not r.passed]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["passed"] = self.passed
        return d


def check_gates(challenger: ModelBundle, champion: ModelBundle | None, data: EvaluationSet, gates: Gates) -> GateReport:
    """Score both models on ``data`` and run every gate; the report says which passed, and by what numbers.

    ``data`` should hold only patients neither model saw (see :func:`unseen`); the leakage gate checks it.
    Without a champion (a first promotion), the paired gate says so and passes: there is nothing to be worse than.
    """
    for m in (challenger, champion):
        if m is not None and m.metadata.target != challenger.metadata.target:
            raise DataError(
                f"{challenger.ref} predicts {quote(challenger.metadata.target)} but the champion "
                f"{m.ref} predicts {quote(m.metadata.target)}",
                "a challenger must predict the champion's outcome; register it under its own name",
            )
    p_new = _score(challenger, data)
    p_old = _score(champion, data) if champion is not None else None
    judges: dict[type[Any], Callable[..., GateResult]] = {
        AurocDifference: _auroc_difference,
        CalibrationSlope: _calibration_slope,
        SubgroupAurocGap: _subgroup_gap,
        EvaluationSize: _evaluation_size,
        Leakage: _leakage,
    }
    context = _Context(challenger, champion, data, p_new, p_old)
    results = tuple(judges[type(g)](g, context) for g in gates.gates)
    return GateReport(
        challenger=challenger.ref,
        champion=champion.ref if champion is not None else None,
        data=data.name,
        n=len(data),
        n_events=int(data.y.sum()),
        results=results,
        source=gates.source,
    )


@dataclass(frozen=True)
class _Context:
    challenger: ModelBundle
    champion: ModelBundle | None
    data: EvaluationSet
    p_new: npt.NDArray[np.float64]
    p_old: npt.NDArray[np.float64] | None

    def both_classes(self) -> bool:
        return 0 < int(self.data.y.sum()) < len(self.data.y)


def _score(bundle: ModelBundle, data: EvaluationSet) -> npt.NDArray[np.float64]:
    missing = [f for f in bundle.feature_names if f not in data.X.columns]
    if missing:
        raise DataError(
            f"{data.name} lacks {len(missing)} input(s) of {bundle.ref}: {', '.join(clip(m) for m in missing[:5])}",
            "evaluate on data with every input of both models",
        )
    if len(data) == 0:
        return np.empty(0)
    return np.asarray(bundle.predict_proba(data.X[bundle.feature_names])[:, 1], dtype=float)


def paired_auroc_difference(
    y: npt.ArrayLike, p_new: npt.ArrayLike, p_old: npt.ArrayLike, *, n_boot: int = 2000, seed: int = 0
) -> tuple[float, npt.NDArray[np.float64]]:
    """AUROC(p_new) - AUROC(p_old) on the same patients, and its paired bootstrap draws (resamples stratified by
    outcome, so each holds both classes; the same resampled patients score both models)."""
    yv = np.asarray(y, dtype=float)
    a, b = np.asarray(p_new, dtype=float), np.asarray(p_old, dtype=float)
    value = auroc(yv, a) - auroc(yv, b)
    draws: list[npt.NDArray[np.float64]] = []
    with single_threaded_blas():
        for counts in resample_counts(yv.size, n_boot, seed, strata=yv):
            draws.append(auroc_weighted(yv, a, counts) - auroc_weighted(yv, b, counts))
    return float(value), np.concatenate(draws) if draws else np.empty(0)


def auroc_difference_verdict(
    g: AurocDifference, y: npt.ArrayLike, p_new: npt.ArrayLike, p_old: npt.ArrayLike
) -> tuple[bool, float, float]:
    """The paired gate on its own: (passed, AUROC difference, its lower one-sided ``1 - alpha`` bound)."""
    diff, draws = paired_auroc_difference(y, p_new, p_old, n_boot=g.n_boot, seed=g.seed)
    lower = float(np.quantile(draws[np.isfinite(draws)], g.alpha))
    return lower > -g.margin, diff, lower


def _auroc_difference(g: AurocDifference, c: _Context) -> GateResult:
    rule = f"lower one-sided {1 - g.alpha:.0%} bound of challenger - champion AUROC > -{g.margin:g}"
    if c.p_old is None or c.champion is None:
        return GateResult("auroc_difference", True, "no champion yet: nothing to compare with", rule)
    if not c.both_classes():
        return GateResult("auroc_difference", False, "the evaluation patients hold one outcome only", rule)
    passed, diff, lower = auroc_difference_verdict(g, c.data.y, c.p_new, c.p_old)
    measured = (
        f"{auroc(c.data.y, c.p_new):.3f} vs {auroc(c.data.y, c.p_old):.3f}: difference {diff:+.3f} "
        f"(lower bound {lower:+.3f})"
    )
    return GateResult("auroc_difference", passed, measured, rule)


def _calibration_slope(g: CalibrationSlope, c: _Context) -> GateResult:
    rule = f"challenger calibration slope in [{g.low:g}, {g.high:g}]"
    if not c.both_classes():
        return GateResult("calibration_slope", False, "the evaluation patients hold one outcome only", rule)
    slope = calibration_slope(c.data.y, c.p_new)
    return GateResult("calibration_slope", bool(g.low <= slope <= g.high), f"slope {slope:.2f}", rule)


def _subgroup_gap(g: SubgroupAurocGap, c: _Context) -> GateResult:
    rule = f"no subgroup AUROC gap above {g.max_gap:g} with its interval above 0"
    if c.data.sensitive.shape[1] == 0:
        return GateResult("subgroup_auroc_gap", True, "no sensitive attributes in the data: not measured", rule)
    if not c.both_classes():
        return GateResult("subgroup_auroc_gap", False, "the evaluation patients hold one outcome only", rule)
    report = subgroup_report(
        c.data.y,
        c.p_new,
        c.data.sensitive,
        threshold=float(c.data.y.mean()),
        n_boot=g.n_boot,
        min_n=g.min_events,
    )
    parts, passed = [], True
    for attribute in report:
        gap = attribute["gaps"].get("auroc")
        if gap is None:
            parts.append(f"{attribute['attribute']}: too few events per group")
            continue
        bad = gap.value > g.max_gap and gap.low > 0
        passed &= not bad
        parts.append(f"{attribute['attribute']} {gap.value:.3f} ({gap.low:.3f}-{gap.high:.3f})")
    return GateResult("subgroup_auroc_gap", passed, "; ".join(parts), rule)


def _evaluation_size(g: EvaluationSize, c: _Context) -> GateResult:
    n, events = len(c.data), int(c.data.y.sum())
    fewest = min(events, n - events)
    rule = f">= {g.min_patients} patients and >= {g.min_events} of each outcome"
    measured = f"{n} patients, {events} events, {n - events} non-events"
    return GateResult("evaluation_size", n >= g.min_patients and fewest >= g.min_events, measured, rule)


def _leakage(_g: Leakage, c: _Context) -> GateResult:
    rule = "no evaluation patient among either model's training patients; no feature is the outcome"
    problems = []
    for model in (c.challenger, c.champion):
        if model is None:
            continue
        mask = c.data.seen.get(model.ref)
        if mask is None:
            problems.append(
                f"cannot tell which of these patients {model.ref} was trained on (its development data "
                f"{quote(model.metadata.dataset)} is not this data, or changed since)"
            )
            continue
        everyone = np.arange(len(c.data))
        try:
            check_patient_overlap(c.data.groups, Split(np.flatnonzero(mask), np.empty(0, np.intp), everyone))
            check_target_not_in_features(c.data.X[model.feature_names], c.data.y, c.data.target)
        except LeakageError as e:
            problems.append(f"{model.ref}: {e.what}")
    measured = "; ".join(problems) if problems else f"{len(c.data)} patients unseen by both models"
    return GateResult("leakage", not problems, measured, rule)


__all__ = [
    "GATES_FILE",
    "GATE_TYPES",
    "SEEN_KEY",
    "AurocDifference",
    "CalibrationSlope",
    "EvaluationSet",
    "EvaluationSize",
    "GateReport",
    "GateResult",
    "Gates",
    "Leakage",
    "SubgroupAurocGap",
    "auroc_difference_verdict",
    "check_gates",
    "evaluation_set",
    "paired_auroc_difference",
    "parse_gates",
    "read_gates",
    "seen_record",
    "seen_rows",
    "unseen",
]
