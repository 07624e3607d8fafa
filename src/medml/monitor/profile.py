"""The reference profile: what the development data looked like, kept without raw rows, written into every bundle.

Drift is measured against it (:mod:`medml.monitor.drift`) and performance is estimated with its calibration map
(:mod:`medml.monitor.estimate`). It holds only aggregates: per numeric feature the quantile bin edges and the
count of development rows in each bin (PSI, Siddiqi 2006; the binned Kolmogorov-Smirnov test), per categorical
feature the category counts, missing rates, the score distribution on its own quantile bins, the calibration curve
and an isotonic calibration map (NannyML's CBPE recalibrates scores this way), and the principal components of the
standardised features with the reconstruction error they leave on development rows (NannyML's multivariate drift
by PCA reconstruction error). No row of the development data can be read back from it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from medml.data.task import FeatureSpec
from medml.errors import MonitorError

__all__ = [
    "PROFILE_KEY",
    "CategoricalProfile",
    "NumericProfile",
    "PCAProfile",
    "ReferenceProfile",
    "build_profile",
    "profile_of",
]

#: where the profile lives in a bundle's metadata: ``metadata.extra[PROFILE_KEY]``
PROFILE_KEY = "reference_profile"
PROFILE_VERSION = 1
#: quantile bins per numeric feature and for the score (deciles: the usual PSI binning)
DEFAULT_BINS = 10
#: categories kept by name; the rest are counted together as "other"
MAX_CATEGORIES = 50
#: NannyML's default: keep the principal components that explain 65% of the variance
PCA_VARIANCE = 0.65
PCA_FOLDS = 5


@dataclass(frozen=True)
class NumericProfile:
    """A numeric feature (or the score) on quantile bins: ``edges`` are the interior cut points, bin ``i`` holds
    values ``edges[i-1] <= x < edges[i]`` (``np.searchsorted(edges, x, side="right")``); with few distinct values
    the bins are the distinct values themselves, so the binned KS test is exact there."""

    name: str
    edges: tuple[float, ...]
    counts: tuple[int, ...]
    n_missing: int
    mean: float
    sd: float

    @property
    def n_present(self) -> int:
        return int(sum(self.counts))

    @property
    def missing_rate(self) -> float:
        total = self.n_present + self.n_missing
        return self.n_missing / total if total else 0.0

    @property
    def edges_array(self) -> npt.NDArray[np.float64]:
        return np.asarray(self.edges, dtype=float)

    def cell(self, values: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
        """Bin of each value; missing values go to the extra bin ``len(counts)``."""
        out = np.searchsorted(np.asarray(self.edges, dtype=float), values, side="right")
        out[np.isnan(values)] = len(self.counts)
        return out


@dataclass(frozen=True)
class CategoricalProfile:
    """A categorical feature: counts of its most frequent categories (as text), the rest in ``other``."""

    name: str
    categories: tuple[str, ...]
    counts: tuple[int, ...]
    other: int
    n_missing: int

    @property
    def n_present(self) -> int:
        return int(sum(self.counts)) + self.other

    @property
    def missing_rate(self) -> float:
        total = self.n_present + self.n_missing
        return self.n_missing / total if total else 0.0

    def frequencies(self) -> dict[str, float]:
        n = max(self.n_present, 1)
        return {c: k / n for c, k in zip(self.categories, self.counts, strict=True)}


@dataclass(frozen=True)
class PCAProfile:
    """Principal components of the standardised features (numeric: mean-imputed; categorical: frequency-encoded,
    NannyML's choice) and the per-row reconstruction error they leave on development rows, out of fold."""

    features: tuple[str, ...]
    means: tuple[float, ...]
    scales: tuple[float, ...]
    components: tuple[tuple[float, ...], ...]
    explained: float
    error_mean: float
    error_sd: float
    n: int


@dataclass(frozen=True)
class ReferenceProfile:
    """The development data of one model as aggregates (see the module docstring); ``to_dict``/``from_dict`` give
    JSON-ready data for the bundle's metadata."""

    features: tuple[str, ...]
    numeric: Mapping[str, NumericProfile]
    categorical: Mapping[str, CategoricalProfile]
    score: NumericProfile
    #: per score bin: mean predicted risk, observed event rate and rows (empty without outcomes)
    calibration_curve: tuple[Mapping[str, float], ...]
    #: isotonic map from score to observed risk (x ascending, y non-decreasing); empty without outcomes
    calibration_x: tuple[float, ...]
    calibration_y: tuple[float, ...]
    pca: PCAProfile | None
    n: int
    prevalence: float | None = None
    threshold: float | None = None
    version: int = PROFILE_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["numeric"] = {k: asdict(v) for k, v in self.numeric.items()}
        d["categorical"] = {k: asdict(v) for k, v in self.categorical.items()}
        d["calibration_curve"] = [dict(r) for r in self.calibration_curve]
        d["extra"] = dict(self.extra)
        return _json_ready(d)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReferenceProfile:
        try:
            if int(d.get("version", 0)) > PROFILE_VERSION:
                raise MonitorError(
                    f"the reference profile is of version {d['version']}, this medml reads up to {PROFILE_VERSION}",
                    "upgrade medml",
                )
            pca = d.get("pca")
            return cls(
                features=tuple(d["features"]),
                numeric={k: _numeric(v) for k, v in d["numeric"].items()},
                categorical={k: _categorical(v) for k, v in d["categorical"].items()},
                score=_numeric(d["score"]),
                calibration_curve=tuple(dict(r) for r in d["calibration_curve"]),
                calibration_x=tuple(float(v) for v in d["calibration_x"]),
                calibration_y=tuple(float(v) for v in d["calibration_y"]),
                pca=None
                if pca is None
                else PCAProfile(
                    features=tuple(pca["features"]),
                    means=tuple(pca["means"]),
                    scales=tuple(pca["scales"]),
                    components=tuple(tuple(c) for c in pca["components"]),
                    explained=float(pca["explained"]),
                    error_mean=float(pca["error_mean"]),
                    error_sd=float(pca["error_sd"]),
                    n=int(pca["n"]),
                ),
                n=int(d["n"]),
                prevalence=None if d.get("prevalence") is None else float(d["prevalence"]),
                threshold=None if d.get("threshold") is None else float(d["threshold"]),
                version=int(d.get("version", PROFILE_VERSION)),
                extra=dict(d.get("extra") or {}),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise MonitorError(
                f"the reference profile is damaged ({type(e).__name__}: {e})", "retrain the model to write a new one"
            ) from None

    def recalibrate(self, scores: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """``scores`` mapped through the isotonic calibration map of the development data (clipped at its ends)."""
        if not self.calibration_x:
            raise MonitorError("the reference profile has no calibration map (built without outcomes)")
        return np.interp(np.asarray(scores, dtype=float), self.calibration_x, self.calibration_y)


def _numeric(d: Mapping[str, Any]) -> NumericProfile:
    return NumericProfile(
        name=str(d["name"]),
        edges=tuple(float(v) for v in d["edges"]),
        counts=tuple(int(v) for v in d["counts"]),
        n_missing=int(d["n_missing"]),
        mean=float(d["mean"]),
        sd=float(d["sd"]),
    )


def _categorical(d: Mapping[str, Any]) -> CategoricalProfile:
    return CategoricalProfile(
        name=str(d["name"]),
        categories=tuple(str(v) for v in d["categories"]),
        counts=tuple(int(v) for v in d["counts"]),
        other=int(d["other"]),
        n_missing=int(d["n_missing"]),
    )


def _json_ready(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def numeric_values(column: pd.Series) -> npt.NDArray[np.float64]:
    """A column as floats, NaN where missing or not a number (booleans become 0/1)."""
    if pd.api.types.is_bool_dtype(column):
        return np.asarray(column.astype(float).to_numpy(), dtype=float)
    return np.asarray(pd.to_numeric(column, errors="coerce"), dtype=float)


def category_values(column: pd.Series) -> pd.Series:
    """A column as text categories, missing kept as missing."""
    return column.astype("string").astype(object).where(column.notna(), None)


def numeric_profile(name: str, values: npt.NDArray[np.float64], n_bins: int = DEFAULT_BINS) -> NumericProfile:
    """Quantile bins of ``values`` (NaN = missing); the distinct values themselves when there are at most
    ``n_bins`` of them."""
    present = values[~np.isnan(values)]
    if present.size == 0:
        return NumericProfile(name, (), (0,), int(values.size), 0.0, 0.0)
    distinct = np.unique(present)
    if distinct.size <= n_bins:
        edges = distinct[1:]
    else:
        cuts = np.unique(np.quantile(present, np.linspace(0.0, 1.0, n_bins + 1)[1:-1]))
        edges = cuts[cuts > distinct[0]]
    counts = np.bincount(np.searchsorted(edges, present, side="right"), minlength=edges.size + 1)
    return NumericProfile(
        name=name,
        edges=tuple(float(e) for e in edges),
        counts=tuple(int(c) for c in counts),
        n_missing=int(values.size - present.size),
        mean=float(present.mean()),
        sd=float(present.std()),
    )


def categorical_profile(name: str, values: pd.Series, max_categories: int = MAX_CATEGORIES) -> CategoricalProfile:
    text = category_values(values)
    counts = text.dropna().value_counts()
    kept = counts.iloc[:max_categories]
    return CategoricalProfile(
        name=name,
        categories=tuple(str(c) for c in kept.index),
        counts=tuple(int(c) for c in kept.to_numpy()),
        other=int(counts.iloc[max_categories:].sum()),
        n_missing=int(text.isna().sum()),
    )


def encode_for_pca(
    frame: pd.DataFrame, names: Sequence[str], profile_cat: Mapping[str, CategoricalProfile]
) -> npt.NDArray[np.float64]:
    """Features as one float matrix: numbers as they are (NaN where missing), categories as their development
    frequency (0 for a category not seen in development; the missing share for a missing value)."""
    out = np.empty((len(frame), len(names)), dtype=float)
    for j, name in enumerate(names):
        cat = profile_cat.get(name)
        if cat is None:
            out[:, j] = numeric_values(frame[name])
        else:
            out[:, j] = categorical_frequency(frame[name], cat)
    return out


def category_codes(column: pd.Series, categories: Sequence[str]) -> npt.NDArray[np.intp]:
    """Position of each value's category in ``categories``; -1 for a missing value or a category not among them."""
    return np.asarray(
        pd.Index(list(categories), dtype=object).get_indexer(pd.Index(category_values(column))), dtype=np.intp
    )


def categorical_frequency(column: pd.Series, cat: CategoricalProfile) -> npt.NDArray[np.float64]:
    total = max(cat.n_present + cat.n_missing, 1)
    freq = {c: k / total for c, k in zip(cat.categories, cat.counts, strict=True)}
    codes = category_codes(column, cat.categories)
    table = np.array([*freq.values(), 0.0])  # code -1 (unseen or missing) -> 0, missing fixed below
    out = table[codes]
    out[column.isna().to_numpy()] = cat.n_missing / total
    return np.asarray(out, dtype=float)


def _pca_profile(
    frame: pd.DataFrame, names: Sequence[str], cats: Mapping[str, CategoricalProfile], seed: int
) -> PCAProfile | None:
    """PCA on standardised features keeping ``PCA_VARIANCE`` of the variance; the error statistics come from rows
    each scored by a PCA fitted without them (5-fold), so that new rows from the same population match them."""
    if len(names) < 2 or len(frame) < 4 * PCA_FOLDS:
        return None
    raw = encode_for_pca(frame, names, cats)
    means = np.nanmean(raw, axis=0)
    means = np.where(np.isfinite(means), means, 0.0)
    z = np.where(np.isnan(raw), means, raw)
    scales = z.std(axis=0)
    scales = np.where(scales > 0, scales, 1.0)
    z = (z - means) / scales
    components, explained = _components(z)
    folds = np.random.default_rng(seed).permutation(len(z)) % PCA_FOLDS
    errors = np.empty(len(z))
    for k in range(PCA_FOLDS):
        held = folds == k
        fit = z[~held]
        centre = fit.mean(axis=0)
        comps, _ = _components(fit - centre)
        errors[held] = reconstruction_error(z[held] - centre, comps)
    return PCAProfile(
        features=tuple(names),
        means=tuple(float(v) for v in means),
        scales=tuple(float(v) for v in scales),
        components=tuple(tuple(float(v) for v in row) for row in components),
        explained=explained,
        error_mean=float(errors.mean()),
        error_sd=float(errors.std(ddof=1)),
        n=len(z),
    )


def _components(z: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], float]:
    """Principal axes (rows) explaining ``PCA_VARIANCE`` of the variance, from the eigenvectors of the covariance
    (features x features: cheaper than an SVD of the rows)."""
    centred = z - z.mean(axis=0)
    values, vectors = np.linalg.eigh(centred.T @ centred)
    values, vectors = np.maximum(values[::-1], 0.0), vectors[:, ::-1]
    total = values.sum()
    share = np.cumsum(values) / total if total > 0 else np.ones_like(values)
    k = int(min(np.searchsorted(share, PCA_VARIANCE) + 1, values.size))
    return np.ascontiguousarray(vectors[:, :k].T), float(share[k - 1])


def reconstruction_error(
    z: npt.NDArray[np.floating[Any]], components: npt.NDArray[np.floating[Any]]
) -> npt.NDArray[np.float64]:
    """Euclidean distance between each standardised row and its reconstruction from the components (orthonormal
    rows): ``sqrt(|z|^2 - |z W|^2)``."""
    proj = z @ components.T
    sq = np.einsum("ij,ij->i", z, z) - np.einsum("ij,ij->i", proj, proj)
    return np.asarray(np.sqrt(np.maximum(sq, 0.0)), dtype=float)


def _calibration(
    scores: npt.NDArray[np.float64], y: npt.NDArray[np.float64], score: NumericProfile
) -> tuple[tuple[dict[str, float], ...], tuple[float, ...], tuple[float, ...]]:
    from sklearn.isotonic import IsotonicRegression

    cells = score.cell(scores)
    curve = []
    for c in range(len(score.counts)):
        inside = cells == c
        if inside.any():
            curve.append(
                {
                    "mean_score": float(scores[inside].mean()),
                    "observed": float(y[inside].mean()),
                    "n": int(inside.sum()),
                }
            )
    iso = IsotonicRegression(out_of_bounds="clip", increasing=True, y_min=0.0, y_max=1.0).fit(scores, y)
    return tuple(curve), tuple(float(v) for v in iso.X_thresholds_), tuple(float(v) for v in iso.y_thresholds_)


def build_profile(
    X: pd.DataFrame,
    features: Sequence[FeatureSpec],
    scores: npt.ArrayLike,
    y: npt.ArrayLike | None,
    *,
    threshold: float | None,
    n_bins: int = DEFAULT_BINS,
    seed: int = 0,
) -> ReferenceProfile:
    """The reference profile of development rows ``X`` (one column per feature), the model's ``scores`` on them
    (out of sample) and their outcomes ``y`` (None: no calibration curve or map). ``threshold`` is the deployed
    alert threshold when known."""
    p = np.asarray(scores, dtype=float)
    if p.shape != (len(X),):
        raise MonitorError(f"the profile needs one score per row: {p.size} scores for {len(X)} rows")
    names = [f.name for f in features]
    absent = [n for n in names if n not in X.columns]
    if absent:
        raise MonitorError(f"the development data lack the model's features: {', '.join(absent[:10])}")
    numeric = {
        f.name: numeric_profile(f.name, numeric_values(X[f.name]), n_bins) for f in features if f.kind == "numeric"
    }
    categorical = {f.name: categorical_profile(f.name, X[f.name]) for f in features if f.kind == "categorical"}
    score = numeric_profile("score", p, n_bins)
    curve: tuple[dict[str, float], ...] = ()
    cal_x: tuple[float, ...] = ()
    cal_y: tuple[float, ...] = ()
    prevalence = None
    if y is not None:
        yy = np.asarray(y, dtype=float)
        if yy.shape != p.shape:
            raise MonitorError(f"the profile needs one outcome per row: {yy.size} outcomes for {p.size} rows")
        known = ~np.isnan(yy) & ~np.isnan(p)
        if known.any():
            curve, cal_x, cal_y = _calibration(p[known], yy[known], score)
            prevalence = float(yy[known].mean())
    return ReferenceProfile(
        features=tuple(names),
        numeric=numeric,
        categorical=categorical,
        score=score,
        calibration_curve=curve,
        calibration_x=cal_x,
        calibration_y=cal_y,
        pca=_pca_profile(X, names, categorical, seed),
        n=len(X),
        prevalence=prevalence,
        threshold=None if threshold is None else float(threshold),
    )


def profile_of(metadata: Any) -> ReferenceProfile:
    """The reference profile stored in a bundle's metadata (a ``BundleMetadata`` or its dict), or MonitorError for
    a bundle trained before profiles were written."""
    extra = metadata.get("extra", {}) if isinstance(metadata, Mapping) else getattr(metadata, "extra", {})
    ref = metadata.get("name", "") if isinstance(metadata, Mapping) else getattr(metadata, "ref", "")
    stored = (extra or {}).get(PROFILE_KEY)
    if not stored:
        raise MonitorError(
            f"model {ref or '(unnamed)'} has no reference profile (it was trained before medml wrote one), so its "
            "drift and estimated performance cannot be measured",
            "retrain it with this medml (medml train) and deploy the new version",
        )
    return ReferenceProfile.from_dict(stored)
