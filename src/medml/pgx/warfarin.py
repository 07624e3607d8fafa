"""Warfarin: CPIC's 2017 dosing recommendation, with the IWPC pharmacogenetic equation it points to.

CPIC has no lookup rows for warfarin; its guideline (Johnson et al., Clin Pharmacol Ther 2017;102:397-404, Figure 2)
is a flowchart: calculate the dose with a validated pharmacogenetic algorithm, then adjust by ancestry and the
variants the algorithm lacks. This module computes the IWPC algorithm and applies that flowchart.

IWPC pharmacogenetic equation (International Warfarin Pharmacogenetics Consortium, Klein et al., N Engl J Med
2009;360:753-764, Supplementary Appendix S1e), for the stable weekly dose reaching INR 2-3::

    sqrt(dose mg/week) = 5.6044 - 0.2614 age_decades + 0.0087 height_cm + 0.0128 weight_kg
        - 0.8677 VKORC1 A/G - 1.6974 VKORC1 A/A - 0.4854 VKORC1 unknown
        - 0.5211 *1/*2 - 0.9357 *1/*3 - 1.0616 *2/*2 - 1.9206 *2/*3 - 2.3312 *3/*3 - 0.2188 CYP2C9 unknown
        - 0.1092 Asian - 0.2760 Black or African American - 0.1032 missing or mixed race
        + 1.1816 enzyme inducer (carbamazepine, phenytoin, rifampin/rifampicin) - 0.5503 amiodarone

``age_decades`` is the decade of life as IWPC coded it (floor(age / 10): 1 for 10-19, ..., 9 for 90+). VKORC1 is
-1639G>A (rs9923231; PharmCAT's ``-1639 GG/AG/AA``). Alleles IWPC did not type (*5, *6, *8, *11, ...) count as *1 in the
equation (its assays would have read them so); CPIC's step below adjusts for them. No CYP2C9 result is 'unknown'.

CPIC 2017 Figure 2 adjustments (the percentages are transcribed from the figure; its footnotes, which the stored
public copies of the figure carry, are quoted in the notes):

- not of African ancestry: use the algorithm dose (strong); CYP4F2*3 (rs2108622 T) carriers: +5-10% (optional);
- African ancestry: if CYP2C9*5, *6, *8 and *11 were not tested, dose clinically (footnote c); otherwise use the
  algorithm dose, and carriers of *5, *6, *8 or *11: -15-30% (footnote g: 20-40% for variant homozygotes);
  African Americans with rs12777823 A/G or A/A: -10-25%;
- footnote e: consider an alternative agent for CYP2C9 poor metabolizers (*2/*3, *3/*3) or VKORC1 A carriers who
  are also CYP2C9 poor metabolizers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from medml.errors import DataError

__all__ = ["WarfarinDose", "WarfarinPatient", "iwpc_weekly_dose", "warfarin_dose"]

Race = Literal["white", "asian", "black", "mixed_or_missing"]
VKORC1 = Literal["GG", "AG", "AA"]

#: IWPC (Klein 2009, Appendix S1e) pharmacogenetic coefficients on the square root of the weekly dose
IWPC = {
    "intercept": 5.6044,
    "age_decades": -0.2614,
    "height_cm": 0.0087,
    "weight_kg": 0.0128,
    "VKORC1 AG": -0.8677,
    "VKORC1 AA": -1.6974,
    "VKORC1 unknown": -0.4854,
    "CYP2C9 *1/*2": -0.5211,
    "CYP2C9 *1/*3": -0.9357,
    "CYP2C9 *2/*2": -1.0616,
    "CYP2C9 *2/*3": -1.9206,
    "CYP2C9 *3/*3": -2.3312,
    "CYP2C9 unknown": -0.2188,
    "asian": -0.1092,
    "black": -0.2760,
    "mixed_or_missing": -0.1032,
    "enzyme_inducer": 1.1816,
    "amiodarone": -0.5503,
}
_AFRICAN_CYP2C9 = frozenset({"*5", "*6", "*8", "*11"})
_IWPC_CYP2C9 = frozenset({"*1/*1", "*1/*2", "*1/*3", "*2/*2", "*2/*3", "*3/*3"})


@dataclass(frozen=True)
class WarfarinPatient:
    """What the algorithm and the flowchart need; genotypes as PharmCAT reports them (``*1/*3``, ``AG``)."""

    age_years: float
    height_cm: float
    weight_kg: float
    race: Race
    cyp2c9: str | None
    vkorc1: VKORC1 | None
    amiodarone: bool = False
    enzyme_inducer: bool = False
    african_ancestry: bool = False
    #: CYP4F2*3 (rs2108622 T) copies; None when not tested
    cyp4f2_star3_copies: int | None = None
    #: rs12777823 A copies; None when not tested
    rs12777823_a_copies: int | None = None
    #: whether CYP2C9*5, *6, *8 and *11 were tested (needed for patients of African ancestry)
    cyp2c9_african_alleles_tested: bool = False


@dataclass(frozen=True)
class WarfarinDose:
    """The IWPC weekly dose and CPIC's adjusted range (mg/week); ``dose_clinically`` when genotype cannot guide it."""

    iwpc_weekly_mg: float
    low_weekly_mg: float
    high_weekly_mg: float
    dose_clinically: bool
    consider_alternative: bool
    notes: tuple[str, ...]
    guideline: str = "CPIC warfarin 2017 (Johnson et al., Clin Pharmacol Ther 102:397), IWPC algorithm (NEJM 2009)"


def _cyp2c9_key(genotype: str | None) -> str:
    """The IWPC term: alleles IWPC did not type (*5, *8, ...) count as *1, the CPIC step adjusts for them."""
    if genotype is None:
        return "CYP2C9 unknown"
    alleles = sorted(a if a in ("*2", "*3") else "*1" for a in genotype.split("/"))
    label = "/".join(alleles)
    return f"CYP2C9 {label}" if label in _IWPC_CYP2C9 else "CYP2C9 unknown"


def iwpc_weekly_dose(p: WarfarinPatient) -> float:
    """The IWPC pharmacogenetic weekly dose in mg (Klein 2009), before any CPIC adjustment."""
    if not (18 <= p.age_years <= 120 and 100 <= p.height_cm <= 250 and 20 <= p.weight_kg <= 300):
        raise DataError(
            f"warfarin inputs out of range: age {p.age_years}, height {p.height_cm} cm, weight {p.weight_kg} kg",
            "the IWPC algorithm is for adults; check units (years, cm, kg)",
        )
    x = IWPC["intercept"] + IWPC["age_decades"] * min(math.floor(p.age_years / 10), 9)
    x += IWPC["height_cm"] * p.height_cm + IWPC["weight_kg"] * p.weight_kg
    x += IWPC.get(f"VKORC1 {p.vkorc1}", 0.0) if p.vkorc1 else IWPC["VKORC1 unknown"]
    x += IWPC.get(_cyp2c9_key(p.cyp2c9), 0.0)
    x += IWPC.get(p.race, 0.0)
    x += IWPC["enzyme_inducer"] * p.enzyme_inducer + IWPC["amiodarone"] * p.amiodarone
    return x * x


def warfarin_dose(p: WarfarinPatient) -> WarfarinDose:
    """CPIC 2017 Figure 2 applied to the IWPC dose: the adjusted weekly range and the notes a prescriber sees."""
    dose = iwpc_weekly_dose(p)
    low = high = dose
    notes = []
    alleles = set(p.cyp2c9.split("/")) if p.cyp2c9 else set()
    poor = _cyp2c9_key(p.cyp2c9) in ("CYP2C9 *2/*3", "CYP2C9 *3/*3")
    consider_alternative = poor
    if consider_alternative:
        notes.append("CYP2C9 poor metabolizer: consider an alternative agent (CPIC 2017 Fig. 2 footnote e)")
    if p.african_ancestry:
        if not p.cyp2c9_african_alleles_tested:
            notes.append("African ancestry and CYP2C9*5, *6, *8, *11 not tested: dose clinically (footnote c)")
            return WarfarinDose(dose, dose, dose, True, consider_alternative, tuple(notes))
        carried = sorted(alleles & _AFRICAN_CYP2C9)
        if carried:
            homozygous = len(carried) == 1 and p.cyp2c9 is not None and p.cyp2c9.count(carried[0]) == 2
            lo, hi = (0.20, 0.40) if homozygous else (0.15, 0.30)
            low, high = low * (1 - hi), high * (1 - lo)
            notes.append(
                f"CYP2C9 {', '.join(carried)} carrier: decrease the calculated dose by "
                f"{lo:.0%}-{hi:.0%} (CPIC 2017 Fig. 2{', footnote g' if homozygous else ''})"
            )
        if p.rs12777823_a_copies:
            low, high = low * 0.75, high * 0.90
            notes.append("rs12777823 A carrier (African American): decrease the dose by 10-25% (CPIC 2017 Fig. 2)")
    elif p.cyp4f2_star3_copies:
        low, high = low * 1.05, high * 1.10
        notes.append("CYP4F2*3 carrier: increase the dose by 5-10% (CPIC 2017 Fig. 2, optional)")
    return WarfarinDose(dose, low, high, False, consider_alternative, tuple(notes))
