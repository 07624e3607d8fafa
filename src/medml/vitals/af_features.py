"""More evidence for atrial fibrillation, other rhythms and noise in a single-lead ECG, beyond the classic HRV.

Three kinds, each from the literature the PhysioNet/CinC 2017 entries drew on:

- RR irregularity that ectopic beats do not fake (:func:`rr_evidence`): the normalised RMSSD, the turning-point
  ratio and the Shannon entropy of the RR histogram (Dash et al., Ann Biomed Eng 2009); the share of occupied cells of
  the RR-dRR map (Lian, Wang and Muessig, Am J Cardiol 2011); irregularity after the intervals that depart from their
  local median are dropped, and the most regular stretch of the record (the least irregular 8- and 12-interval
  windows): atrial fibrillation is irregular throughout, a sinus rhythm with a few premature beats is not.
- Atrial activity and morphology (:func:`beat_evidence`): the P-wave deflection of the average beat (no P wave in
  atrial fibrillation), the correlation of every beat with the average beat (ectopy, noise), and the spectrum of
  the residual after QRST cancellation (average-beat subtraction, Slocum et al., J Electrocardiol 1992; Stridh and
  Sornmo, IEEE TBME 2001): fibrillatory waves put their power at 4-9 Hz.
- Signal quality (:func:`noise_evidence`): the kurtosis of the cleaned ECG (Li, Mark and Clifford, Physiol Meas
  2008: a clean ECG is spiky, noise is not), the spread of the amplitude of one-second windows, and the share of
  samples that repeat the previous one (a saturated or disconnected lead).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.ndimage import median_filter
from scipy.signal import welch
from scipy.stats import kurtosis

FloatArray = npt.NDArray[np.float64]

RR_KEYS = (
    "nrmssd",
    "tpr",
    "rdr_cells",
    "rr_hist_entropy",
    "rr_outlier_share",
    "nrmssd_clean",
    "win12_drr_min",
    "win8_drr_min",
    "win8_irregular_share",
    "tachy_share",
    "pause_share",
)
BEAT_KEYS = ("p_amp", "beat_corr_med", "beat_corr_p10", "f_power_ratio", "f_dominant_hz", "f_concentration")
NOISE_KEYS = ("ecg_kurtosis", "window_amp_cv", "flat_share")


def nrmssd(rr: npt.ArrayLike) -> float:
    """RMSSD over the mean RR: irregularity that does not depend on the rate."""
    r = np.asarray(rr, dtype=float)
    return float(np.sqrt(np.mean(np.diff(r) ** 2)) / r.mean()) if r.size >= 2 else float("nan")


def turning_point_ratio(rr: npt.ArrayLike) -> float:
    """The share of inner intervals that are a local peak or trough; about 2/3 for a random series, ~0 for a
    regular or trending one (Dash et al. 2009)."""
    r = np.asarray(rr, dtype=float)
    if r.size < 3:
        return float("nan")
    turns = (r[1:-1] - r[:-2]) * (r[1:-1] - r[2:]) > 0
    return float(turns.mean())


def rdr_cells(rr_s: npt.ArrayLike, cell_s: float = 0.025) -> float:
    """Occupied cells of the RR-dRR map (RR_i against RR_i - RR_(i-1), 25 ms cells) per interval (Lian et al.
    2011): regular rhythm crowds a few cells, atrial fibrillation scatters into many."""
    r = np.asarray(rr_s, dtype=float)
    if r.size < 3:
        return float("nan")
    d = np.diff(r)
    cells = set(zip(np.floor(r[1:] / cell_s).tolist(), np.floor(d / cell_s).tolist(), strict=True))
    return len(cells) / d.size


def histogram_entropy(rr: npt.ArrayLike, width: float = 0.05) -> float:
    """Shannon entropy (nats) of the RR intervals over their median, in bins of ``width`` (Dash et al. 2009)."""
    r = np.asarray(rr, dtype=float)
    if r.size < 2:
        return float("nan")
    counts = np.unique(np.floor(r / np.median(r) / width), return_counts=True)[1]
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def _window_drr(rr: FloatArray, w: int) -> FloatArray:
    """Per window of ``w`` intervals: the median |successive difference| over the window's median interval."""
    win = np.lib.stride_tricks.sliding_window_view(rr, w)
    return np.median(np.abs(np.diff(win, axis=1)), axis=1) / np.median(win, axis=1)


def rr_evidence(rr_s: npt.ArrayLike) -> dict[str, float]:
    """RR features of the module docstring from RR intervals in seconds; NaN where the record is too short."""
    rr = np.asarray(rr_s, dtype=float)
    out = dict.fromkeys(RR_KEYS, float("nan"))
    if rr.size < 6:
        return out
    med = float(np.median(rr))
    local = median_filter(rr, size=7, mode="nearest")
    kept = rr[np.abs(rr - local) < 0.15 * local]
    out.update(
        nrmssd=nrmssd(rr),
        tpr=turning_point_ratio(rr),
        rdr_cells=rdr_cells(rr),
        rr_hist_entropy=histogram_entropy(rr),
        rr_outlier_share=1.0 - kept.size / rr.size,
        nrmssd_clean=nrmssd(kept) if kept.size >= 4 else float("nan"),
        tachy_share=float(np.mean(rr < 0.6)),
        pause_share=float(np.mean(rr > 1.5 * med)),
    )
    if rr.size >= 12:
        out["win12_drr_min"] = float(_window_drr(rr, 12).min())
    if rr.size >= 8:
        w8 = _window_drr(rr, 8)
        out["win8_drr_min"] = float(w8.min())
        out["win8_irregular_share"] = float(np.mean(w8 > 0.06))
    return out


def beat_evidence(cleaned: FloatArray, peaks: npt.NDArray[np.int64], fs: float) -> dict[str, float]:
    """P wave, beat-to-average correlation and the QRST-cancelled residual's spectrum (module docstring)."""
    out = dict.fromkeys(BEAT_KEYS, float("nan"))
    before, after = int(0.25 * fs), int(0.45 * fs)
    inner = peaks[(peaks > before) & (peaks < cleaned.size - after)]
    if inner.size < 4:
        return out
    beats = np.stack([cleaned[p - before : p + after] for p in inner])
    template = np.median(beats, axis=0)
    amp = float(np.abs(template - np.median(template[: int(0.04 * fs)])).max())
    if amp <= 0:
        return out
    out["p_amp"] = float(np.ptp(template[: before - int(0.08 * fs)]) / amp)  # 250-80 ms before R
    tc = template - template.mean()
    bc = beats - beats.mean(axis=1, keepdims=True)
    corr = bc @ tc / (np.linalg.norm(bc, axis=1) * np.linalg.norm(tc) + 1e-12)
    out["beat_corr_med"] = float(np.median(corr))
    out["beat_corr_p10"] = float(np.percentile(corr, 10))
    out.update(_residual_spectrum(cleaned, inner, fs))
    return out


def _residual_spectrum(cleaned: FloatArray, inner: npt.NDArray[np.int64], fs: float) -> dict[str, float]:
    """Subtract the (amplitude-scaled) average beat from -100 to +450 ms of each R peak, then Welch's spectrum of
    what is left: the share of 1-40 Hz power at 4-9 Hz, the dominant 3-12 Hz frequency and how much of the
    3-12 Hz power lies within 1 Hz of it (organised f-waves)."""
    before, after = int(0.10 * fs), int(0.45 * fs)
    inner = inner[(inner > before) & (inner < cleaned.size - after)]
    beats = np.stack([cleaned[p - before : p + after] for p in inner])
    template = np.median(beats, axis=0)
    energy = float(template @ template)
    residual = cleaned.copy()
    for p, beat in zip(inner, beats, strict=True):
        residual[p - before : p + after] = beat - (beat @ template) / energy * template
    residual = residual[inner[0] - before : inner[-1] + after]
    f, power = welch(residual, fs=fs, nperseg=min(residual.size, int(4 * fs)))
    total = power[(f >= 1) & (f <= 40)].sum()
    band = (f >= 3) & (f <= 12)
    if total <= 0 or power[band].sum() <= 0:
        return {}
    dominant = float(f[band][np.argmax(power[band])])
    return {
        "f_power_ratio": float(power[(f >= 4) & (f <= 9)].sum() / total),
        "f_dominant_hz": dominant,
        "f_concentration": float(power[(f >= dominant - 1) & (f <= dominant + 1)].sum() / power[band].sum()),
    }


def noise_evidence(raw: FloatArray, cleaned: FloatArray, fs: float) -> dict[str, float]:
    """Signal-quality features of the module docstring."""
    n = int(fs)
    windows = cleaned[: cleaned.size // n * n].reshape(-1, n)
    amp = np.ptp(windows, axis=1)
    return {
        "ecg_kurtosis": float(kurtosis(cleaned)),
        "window_amp_cv": float(amp.std() / amp.mean()) if amp.mean() > 0 else float("nan"),
        "flat_share": float(np.mean(np.diff(raw) == 0)),
    }
