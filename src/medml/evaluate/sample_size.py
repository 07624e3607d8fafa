"""The minimum sample size to develop a binary-outcome prediction model (Riley et al., BMJ 2020; Stat Med 2019).

Three criteria, each giving a minimum number of participants; the largest is required:

1. expected uniform shrinkage of the predictor effects at least ``shrinkage`` (0.9: overfitting of 10% at most);
2. a small optimism in the apparent Nagelkerke R-squared (an absolute difference of at most ``delta``, 0.05);
3. the overall risk (the model intercept) estimated within a margin of error of ``margin`` (0.05) with 95%
   confidence: the precision of the overall outcome proportion.

Inputs are the outcome prevalence, the number of candidate predictor parameters and an anticipated Cox-Snell
R-squared. Numbers equal those of the ``pmsampsize`` package (R and Python), whose worked examples test them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from medml.errors import ConfigError

#: Riley et al.'s conservative default when nothing better is known: 15% of the largest Cox-Snell R-squared
CONSERVATIVE_SHARE = 0.15
_Z95 = 1.96


@dataclass(frozen=True)
class SampleSize:
    """The three criteria's minimum sizes, the required size (their maximum) and what it assumed."""

    prevalence: float
    parameters: int
    r2_cs: float
    max_r2_cs: float
    shrinkage: float
    n_shrinkage: int
    n_optimism: int
    n_intercept: int
    #: the shrinkage criterion 2 implies; the final model's expected shrinkage is the larger of it and ``shrinkage``
    shrinkage_optimism: float
    r2_source: str = ""

    @property
    def required(self) -> int:
        return max(self.n_shrinkage, self.n_optimism, self.n_intercept)

    @property
    def events(self) -> float:
        return self.required * self.prevalence

    @property
    def events_per_parameter(self) -> float:
        return self.events / self.parameters

    @property
    def nagelkerke_r2(self) -> float:
        return self.r2_cs / self.max_r2_cs

    def binding(self) -> str:
        """Which criterion sets the required size."""
        sizes = {"shrinkage": self.n_shrinkage, "optimism": self.n_optimism, "intercept": self.n_intercept}
        return max(sizes, key=lambda k: sizes[k])

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "required": self.required,
            "events": self.events,
            "events_per_parameter": self.events_per_parameter,
            "nagelkerke_r2": self.nagelkerke_r2,
            "binding": self.binding(),
        }


def max_cox_snell_r2(prevalence: float) -> float:
    """The largest Cox-Snell R-squared a binary outcome of this prevalence allows: 1 - L_null^(2/n)."""
    _check_prevalence(prevalence)
    phi = prevalence
    log_l_null_per_n = phi * math.log(phi) + (1 - phi) * math.log(1 - phi)
    return 1 - math.exp(2 * log_l_null_per_n)


def conservative_r2(prevalence: float, share: float = CONSERVATIVE_SHARE) -> float:
    """Riley et al.'s default anticipated Cox-Snell R-squared: ``share`` (15%) of the largest possible."""
    return share * max_cox_snell_r2(prevalence)


def cox_snell_r2(y_true: npt.ArrayLike, y_prob: npt.ArrayLike) -> float:
    """Cox-Snell R-squared of predictions: 1 - exp(-(null deviance - model deviance) / n).

    Negative when the predictions fit worse than the prevalence alone (as out-of-sample predictions can).
    """
    y = np.asarray(y_true, dtype=float)
    p = np.clip(np.asarray(y_prob, dtype=float), 1e-12, 1 - 1e-12)
    phi = float(y.mean())
    if phi in (0.0, 1.0):
        raise ConfigError("Cox-Snell R-squared needs both outcome classes", "use data with events and non-events")
    ll_model = float(np.sum(y * np.log(p) + (1 - y) * np.log1p(-p)))
    ll_null = len(y) * (phi * math.log(phi) + (1 - phi) * math.log(1 - phi))
    return 1 - math.exp(-2 * (ll_model - ll_null) / len(y))


def _check_prevalence(prevalence: float) -> None:
    if not (isinstance(prevalence, int | float) and 0 < prevalence < 1):
        raise ConfigError(f"prevalence must lie strictly between 0 and 1, got {prevalence!r}", "e.g. 0.174")


def _n_for_shrinkage(parameters: int, r2_cs: float, shrinkage: float) -> int:
    """Riley et al. equation (criterion 1): n = p / ((S - 1) ln(1 - R2cs / S))."""
    return math.ceil(parameters / ((shrinkage - 1) * math.log(1 - r2_cs / shrinkage)))


def riley_binary(
    prevalence: float,
    parameters: int,
    r2_cs: float,
    *,
    shrinkage: float = 0.9,
    delta: float = 0.05,
    margin: float = 0.05,
    r2_source: str = "",
    r_rounding: bool = False,
) -> SampleSize:
    """Minimum development sample size for a binary outcome by Riley et al.'s three criteria.

    ``parameters`` counts candidate predictor parameters (a categorical predictor of k levels counts k - 1, a
    spline term its degrees of freedom), not predictors. ``r2_cs`` is the anticipated Cox-Snell R-squared.
    The numbers equal the Python ``pmsampsize``'s; ``r_rounding`` rounds as the R package does (the largest R-squared
    to 2 decimals and criterion 2's shrinkage to 3, as in Riley et al.'s worked examples), which can add a few
    participants to criterion 2.
    """
    _check_prevalence(prevalence)
    if isinstance(parameters, bool) or not isinstance(parameters, int) or parameters < 1:
        raise ConfigError(f"parameters must be a whole number from 1, got {parameters!r}", "count them per predictor")
    if not 0 < shrinkage < 1:
        raise ConfigError(f"shrinkage must lie strictly between 0 and 1, got {shrinkage!r}", "0.9 is usual")
    top = max_cox_snell_r2(prevalence)
    if not (isinstance(r2_cs, int | float) and 0 < r2_cs < min(top, shrinkage)):
        raise ConfigError(
            f"the anticipated Cox-Snell R-squared must lie between 0 and {min(top, shrinkage):.3f} (the largest "
            f"possible at prevalence {prevalence:g}, or the shrinkage), got {r2_cs!r}",
            f"e.g. {conservative_r2(prevalence):.3f}, 15% of the largest possible",
        )
    if r_rounding:
        top = round(top, 2)
    s_optimism = r2_cs / (r2_cs + delta * top)
    if r_rounding:
        s_optimism = round(s_optimism, 3)
    return SampleSize(
        prevalence=float(prevalence),
        parameters=parameters,
        r2_cs=float(r2_cs),
        max_r2_cs=top,
        shrinkage=float(shrinkage),
        n_shrinkage=_n_for_shrinkage(parameters, r2_cs, shrinkage),
        n_optimism=_n_for_shrinkage(parameters, r2_cs, s_optimism),
        n_intercept=math.ceil((_Z95 / margin) ** 2 * prevalence * (1 - prevalence)),
        shrinkage_optimism=s_optimism,
        r2_source=r2_source,
    )


__all__ = [
    "CONSERVATIVE_SHARE",
    "SampleSize",
    "conservative_r2",
    "cox_snell_r2",
    "max_cox_snell_r2",
    "riley_binary",
]
