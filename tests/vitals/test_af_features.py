"""AF evidence features against closed forms: RR irregularity measures on series whose values are known by hand,
a regular rhythm with ectopic beats against a random one, and the atrial activity of synthetic ECGs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medml.vitals.af_features import (
    beat_evidence,
    histogram_entropy,
    noise_evidence,
    nrmssd,
    rdr_cells,
    rr_evidence,
    turning_point_ratio,
)
from medml.vitals.ecg import _rr_robust

FS = 300.0


def test_nrmssd_of_an_alternating_series() -> None:
    # successive differences all +-0.2 s: RMSSD 0.2, mean 1.1
    assert nrmssd([1.0, 1.2] * 10) == pytest.approx(0.2 / 1.1)
    assert nrmssd([0.8] * 20) == 0.0


def test_turning_point_ratio_closed_forms_and_a_random_series() -> None:
    assert turning_point_ratio([1.0, 1.2] * 10) == 1.0  # every inner point is a peak or a trough
    assert turning_point_ratio(np.linspace(0.6, 1.0, 30)) == 0.0  # monotone: none
    # i.i.d. series: expected 2/3, SD sqrt((16n - 29) / 90) / n (Kendall and Stuart) = 0.0024 at n = 30,000
    rr = np.random.default_rng(1).uniform(0.4, 1.2, 30_000)
    assert turning_point_ratio(rr) == pytest.approx(2 / 3, abs=0.01)


def test_rdr_map_and_histogram_entropy() -> None:
    assert rdr_cells([0.8] * 21) == pytest.approx(1 / 20)  # one cell for 20 (RR, dRR) points
    assert histogram_entropy([0.8] * 20) == 0.0
    assert histogram_entropy([0.5] * 10 + [1.0] * 10) == pytest.approx(math.log(2))  # two equal bins


def test_cosen_of_a_period_two_series() -> None:
    """A, B, A, B...: every template matches exactly the others of its phase at m and m+1, so SampEn = 0 and
    COSEn = -ln(2r) - ln(mean RR) with r = 30 ms (Lake and Moorman 2011)."""
    rr = np.array([0.7, 0.9] * 15)
    peaks = np.concatenate([[0], np.cumsum(np.round(rr * FS))]).astype(np.int64)
    assert _rr_robust(peaks, FS)["cosen"] == pytest.approx(-math.log(0.06) - math.log(0.8), abs=1e-9)


def test_ectopic_beats_are_not_read_as_irregular_rhythm() -> None:
    """A regular rhythm with two premature beats (short then compensatory pause) is irregular only at two spots:
    the ectopy-robust measures stay at zero, unlike on random RR intervals (atrial fibrillation's signature)."""
    rr = np.full(40, 0.8)
    rr[[10, 25]], rr[[11, 26]] = 0.5, 1.1
    ectopy = rr_evidence(rr)
    assert ectopy["rr_outlier_share"] == pytest.approx(4 / 40)
    assert ectopy["nrmssd_clean"] == 0.0 and ectopy["win8_drr_min"] == 0.0 and ectopy["win12_drr_min"] == 0.0
    assert ectopy["pause_share"] == 0.0 and ectopy["tachy_share"] == pytest.approx(2 / 40)
    assert ectopy["nrmssd"] > 0.1  # the classic measure is fooled
    af = rr_evidence(np.random.default_rng(0).uniform(0.4, 1.2, 40))
    assert af["win12_drr_min"] > 0.05 and af["win8_drr_min"] > 0.01 and af["nrmssd_clean"] > 0.1
    assert af["win8_irregular_share"] > 0.9
    assert ectopy["win8_irregular_share"] < 0.5
    assert all(math.isnan(v) for v in rr_evidence([0.8] * 5).values())  # too short to say


def _ecg(p_wave: bool, f_wave_hz: float | None, seconds: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian QRS (amplitude 1) every 0.8 s, optionally a P wave (0.15, 160 ms before R) or a 0.05 f-wave."""
    t = np.arange(int(seconds * FS)) / FS
    peaks = np.arange(int(0.5 * FS), t.size - int(0.5 * FS), int(0.8 * FS))
    x = np.zeros_like(t)
    for p in peaks:
        x += np.exp(-0.5 * ((t - p / FS) / 0.012) ** 2)
        if p_wave:
            x += 0.15 * np.exp(-0.5 * ((t - p / FS + 0.16) / 0.025) ** 2)
    if f_wave_hz is not None:
        x += 0.05 * np.sin(2 * np.pi * f_wave_hz * t)
    return x, peaks.astype(np.int64)


def test_p_wave_and_fibrillatory_waves_of_synthetic_ecgs() -> None:
    sinus = beat_evidence(*_ecg(p_wave=True, f_wave_hz=None), FS)
    assert sinus["p_amp"] == pytest.approx(0.15, abs=0.01)  # the P wave's height over the QRS's
    assert sinus["beat_corr_med"] == pytest.approx(1.0) and sinus["beat_corr_p10"] == pytest.approx(1.0)
    fib = beat_evidence(*_ecg(p_wave=False, f_wave_hz=6.0), FS)
    assert fib["f_dominant_hz"] == pytest.approx(6.0, abs=0.25)
    assert fib["f_power_ratio"] > 0.9 and fib["f_concentration"] > 0.9  # the residual is the 6 Hz wave
    assert fib["p_amp"] < sinus["p_amp"]


def test_noise_evidence_tells_a_spiky_ecg_from_noise_and_a_flat_lead() -> None:
    x, _ = _ecg(p_wave=True, f_wave_hz=None)
    noise = np.random.default_rng(2).normal(size=x.size)
    assert noise_evidence(x, x, FS)["ecg_kurtosis"] > 10
    assert noise_evidence(noise, noise, FS)["ecg_kurtosis"] == pytest.approx(0.0, abs=0.2)  # Gaussian: 0 excess
    half_flat = np.concatenate([noise[: x.size // 2], np.zeros(x.size - x.size // 2)])
    assert noise_evidence(half_flat, half_flat, FS)["flat_share"] == pytest.approx(0.5, abs=0.01)
