"""Warfarin: the IWPC equation (Klein et al., NEJM 2009) computed by hand, and CPIC 2017's adjustments."""

from __future__ import annotations

import pytest

from medml.errors import DataError
from medml.pgx.warfarin import WarfarinPatient, iwpc_weekly_dose, warfarin_dose


def _patient(**kw: object) -> WarfarinPatient:
    base: dict[str, object] = {
        "age_years": 65,
        "height_cm": 175,
        "weight_kg": 80,
        "race": "white",
        "cyp2c9": "*1/*3",
        "vkorc1": "AG",
    }
    return WarfarinPatient(**{**base, **kw})  # type: ignore[arg-type]


def test_iwpc_european_patient() -> None:
    """65 y (decade 6), 175 cm, 80 kg, white, CYP2C9 *1/*3, VKORC1 A/G, no interacting drugs.

    5.6044 - 0.2614*6 + 0.0087*175 + 0.0128*80 - 0.8677 - 0.9357
      = 5.6044 - 1.5684 + 1.5225 + 1.0240 - 0.8677 - 0.9357 = 4.7791;  4.7791**2 = 22.8398 mg/week
    """
    assert iwpc_weekly_dose(_patient()) == pytest.approx(22.8398, abs=1e-4)
    dose = warfarin_dose(_patient())
    assert (dose.low_weekly_mg, dose.high_weekly_mg) == pytest.approx((22.8398, 22.8398), abs=1e-4)
    assert not dose.dose_clinically and not dose.consider_alternative


def test_iwpc_amiodarone_inducer_and_unknown_genotypes() -> None:
    """Same patient, genotypes unknown, amiodarone and an enzyme inducer:

    5.6044 - 1.5684 + 1.5225 + 1.0240 - 0.4854 - 0.2188 + 1.1816 - 0.5503 = 6.5096;  6.5096**2 = 42.3749
    """
    p = _patient(cyp2c9=None, vkorc1=None, amiodarone=True, enzyme_inducer=True)
    assert iwpc_weekly_dose(p) == pytest.approx(42.3749, abs=1e-3)


def test_cyp4f2_star3_adds_5_to_10_percent() -> None:
    dose = warfarin_dose(_patient(cyp4f2_star3_copies=1))
    assert (dose.low_weekly_mg, dose.high_weekly_mg) == pytest.approx((22.8398 * 1.05, 22.8398 * 1.10), abs=1e-3)


def test_african_ancestry_cyp2c9_star8_and_rs12777823() -> None:
    """50 y (decade 5), 160 cm, 90 kg, Black, CYP2C9 *1/*8 (IWPC reads *1/*1), VKORC1 G/G:

    5.6044 - 0.2614*5 + 0.0087*160 + 0.0128*90 - 0.2760 = 5.6044 - 1.3070 + 1.3920 + 1.1520 - 0.2760 = 6.5654
    6.5654**2 = 43.1045 mg/week; *8 carrier -15..30% -> 30.1731..36.6388; rs12777823 A -10..25% -> 22.6299..32.9750
    """
    p = WarfarinPatient(
        age_years=50,
        height_cm=160,
        weight_kg=90,
        race="black",
        cyp2c9="*1/*8",
        vkorc1="GG",
        african_ancestry=True,
        cyp2c9_african_alleles_tested=True,
    )
    assert iwpc_weekly_dose(p) == pytest.approx(43.1045, abs=1e-3)
    dose = warfarin_dose(p)
    assert (dose.low_weekly_mg, dose.high_weekly_mg) == pytest.approx((30.1731, 36.6388), abs=1e-3)
    both = warfarin_dose(WarfarinPatient(**{**p.__dict__, "rs12777823_a_copies": 1}))
    assert (both.low_weekly_mg, both.high_weekly_mg) == pytest.approx((22.6299, 32.9750), abs=1e-3)


def test_african_ancestry_without_the_african_alleles_is_dosed_clinically() -> None:
    dose = warfarin_dose(_patient(race="black", african_ancestry=True))
    assert dose.dose_clinically and "dose clinically" in dose.notes[0]


def test_poor_metabolizer_considers_an_alternative_and_bad_units_fail() -> None:
    assert warfarin_dose(_patient(cyp2c9="*3/*3")).consider_alternative
    with pytest.raises(DataError, match="units"):
        iwpc_weekly_dose(_patient(height_cm=1.75))
