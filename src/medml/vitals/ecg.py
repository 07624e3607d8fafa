"""ECG: R peaks, heart-rate variability, and the rhythm features an atrial-fibrillation classifier reads.

R peaks come from NeuroKit2 (Makowski et al., Behav Res Methods 2021): its default cleaning (0.5 Hz high-pass,
50 Hz powerline filter) and its QRS detector (steep-slope, after Nabian et al.), with no artefact "correction" that
would move peaks. A peak is matched to an annotated beat within a tolerance (150 ms by default, the usual
criterion of ANSI/AAMI EC57 comparisons) for :func:`match_beats`.

The rhythm features (:func:`rhythm_features`) follow what separates atrial fibrillation from sinus rhythm in the
PhysioNet/CinC 2017 entries: the irregularity of the RR intervals (SD, RMSSD, pNN50, the coefficient of variation,
the spread of successive differences in a Poincaré plot, the sample entropy of the RR series), the rate, and
signal quality (NeuroKit2's average-QRS template correlation), plus the QRS morphology variability, so that noise
and ectopy are not read as AF; :mod:`medml.vitals.af_features` adds ectopy-robust RR irregularity, atrial
activity after QRST cancellation and signal quality.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from medml.errors import DataError
from medml.vitals.af_features import beat_evidence, noise_evidence, rr_evidence

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: bumped whenever :func:`rhythm_features` changes, so that cached features are recomputed
FEATURES_VERSION = 3

#: the shortest ECG scored: fewer seconds hold too few beats for a rhythm (the 2017 records are 9-61 s)
MIN_SECONDS = 5.0


def _check(signal: npt.ArrayLike, fs: float, what: str) -> FloatArray:
    x = np.asarray(signal, dtype=float).ravel()
    if not (math.isfinite(fs) and fs > 0):
        raise DataError(f"{what}: sampling rate must be positive, got {fs}", "read it from the record's header")
    if x.size < MIN_SECONDS * fs:
        raise DataError(
            f"{what} is {x.size / fs:.1f} s long: too short to score (at least {MIN_SECONDS:g} s)",
            "give a longer recording",
        )
    if not np.isfinite(x).any():
        raise DataError(f"{what} holds no finite sample", "check the recording")
    return np.where(np.isfinite(x), x, np.nanmedian(x))


def r_peaks(signal: npt.ArrayLike, fs: float, *, what: str = "the ECG") -> IntArray:
    """Sample indices of the R peaks of a single-lead ECG (NeuroKit2's cleaning and detector)."""
    import neurokit2 as nk

    x = _check(signal, fs, what)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NeuroKit2 warns on flat segments; an empty result is handled below
        cleaned = nk.ecg_clean(x, sampling_rate=fs, method="neurokit")
        _, info = nk.ecg_peaks(cleaned, sampling_rate=fs, method="neurokit", correct_artifacts=False)
    return np.asarray(info["ECG_R_Peaks"], dtype=np.int64)


@dataclass(frozen=True)
class BeatMatch:
    """Detected peaks against annotated beats: true positives, misses, extra detections."""

    n_reference: int
    n_detected: int
    true_positives: int

    @property
    def sensitivity(self) -> float:
        return self.true_positives / self.n_reference if self.n_reference else float("nan")

    @property
    def ppv(self) -> float:
        return self.true_positives / self.n_detected if self.n_detected else float("nan")


def match_beats(detected: npt.ArrayLike, reference: npt.ArrayLike, fs: float, tolerance_s: float = 0.150) -> BeatMatch:
    """One-to-one matching of detections to reference beats within ``tolerance_s``, nearest first."""
    det = np.sort(np.asarray(detected, dtype=np.int64))
    ref = np.sort(np.asarray(reference, dtype=np.int64))
    tol = tolerance_s * fs
    pairs = []
    for i, r in enumerate(ref):
        j = int(np.searchsorted(det, r))
        for k in (j - 1, j):
            if 0 <= k < det.size and abs(det[k] - r) <= tol:
                pairs.append((abs(int(det[k]) - int(r)), i, k))
    used_r: set[int] = set()
    used_d: set[int] = set()
    for _, i, k in sorted(pairs):
        if i not in used_r and k not in used_d:
            used_r.add(i)
            used_d.add(k)
    return BeatMatch(int(ref.size), int(det.size), len(used_r))


def heart_rate(peaks: npt.ArrayLike, fs: float) -> float:
    """Mean heart rate (beats/min) from the RR intervals between ``peaks``; NaN with fewer than two peaks."""
    rr = np.diff(np.asarray(peaks, dtype=float)) / fs
    return float(60.0 / rr.mean()) if rr.size else float("nan")


def _sample_entropy(x: FloatArray, m: int = 2, r: float = 0.2) -> float:
    """Sample entropy (Richman and Moorman 2000) with tolerance ``r`` x SD; NaN when undefined."""
    n = x.size
    if n < m + 3 or x.std() == 0:
        return float("nan")
    tol = r * x.std()

    def matches(k: int) -> int:
        emb = np.lib.stride_tricks.sliding_window_view(x, k)[: n - m]
        d = np.abs(emb[:, None, :] - emb[None, :, :]).max(axis=2)
        return int((d <= tol).sum() - len(emb))

    b, a = matches(m), matches(m + 1)
    return float(-math.log(a / b)) if a > 0 and b > 0 else float("nan")


def hrv_features(peaks: npt.ArrayLike, fs: float) -> dict[str, float]:
    """Time-domain heart-rate variability and RR irregularity from R peaks (intervals in ms)."""
    rr = np.diff(np.asarray(peaks, dtype=float)) / fs * 1000.0
    nan = float("nan")
    if rr.size < 3:
        keys = ("hr_mean", "rr_sd", "rmssd", "pnn50", "rr_cv", "sd1", "sd2", "sd1_sd2", "rr_sampen", "rr_range")
        return {k: nan for k in keys} | {"n_beats": float(np.asarray(peaks).size)}
    d = np.diff(rr)
    sd1 = float(np.sqrt(0.5) * d.std())
    sd2 = float(np.sqrt(max(2 * rr.var() - 0.5 * d.var(), 0.0)))
    return {
        "n_beats": float(rr.size + 1),
        "hr_mean": float(60000.0 / rr.mean()),
        "rr_sd": float(rr.std(ddof=1)),
        "rmssd": float(np.sqrt(np.mean(d**2))),
        "pnn50": float(np.sum(np.abs(d) > 50.0) / rr.size),  # of all NN intervals (Task Force 1996, NeuroKit2)
        "rr_cv": float(rr.std() / rr.mean()),
        "sd1": sd1,
        "sd2": sd2,
        "sd1_sd2": sd1 / sd2 if sd2 > 0 else nan,
        "rr_sampen": _sample_entropy(rr / rr.mean()),
        "rr_range": float((np.percentile(rr, 90) - np.percentile(rr, 10)) / rr.mean()),
    }


def rhythm_features(signal: npt.ArrayLike, fs: float, *, what: str = "the ECG") -> dict[str, float]:
    """The features :mod:`medml.vitals.af` classifies a single-lead ECG by (see the module docstring)."""
    import neurokit2 as nk

    x = _check(signal, fs, what)
    peaks = r_peaks(x, fs, what=what)
    out = hrv_features(peaks, fs)
    out["seconds"] = x.size / fs
    nan = float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cleaned = nk.ecg_clean(x, sampling_rate=fs, method="neurokit")
        try:
            quality = np.asarray(nk.ecg_quality(cleaned, rpeaks=peaks, sampling_rate=fs), dtype=float)
        except Exception:  # too few beats for a template: no quality to report
            quality = np.array([nan])
    out["quality_mean"] = float(np.nanmean(quality)) if np.isfinite(quality).any() else nan
    out["quality_low"] = float(np.mean(quality < 0.5)) if np.isfinite(quality).any() else nan
    # QRS morphology: correlation of each beat (+-60 ms) with the median beat, and R amplitude spread
    half = int(0.06 * fs)
    inner = peaks[(peaks > half) & (peaks < cleaned.size - half)]
    if inner.size >= 3:
        beats = np.stack([cleaned[p - half : p + half] for p in inner])
        template = np.median(beats, axis=0)
        tc = template - template.mean()
        bc = beats - beats.mean(axis=1, keepdims=True)
        denom = np.linalg.norm(bc, axis=1) * np.linalg.norm(tc)
        corr = np.where(denom > 0, bc @ tc / np.where(denom > 0, denom, 1.0), 0.0)
        amp = cleaned[inner]
        peak = np.abs(template).max()
        out["qrs_width_ms"] = float(np.sum(np.abs(template) > 0.3 * peak) / fs * 1000) if peak > 0 else nan
        out["qrs_corr_mean"] = float(corr.mean())
        out["qrs_corr_low"] = float(np.mean(corr < 0.8))
        out["r_amp_cv"] = float(amp.std() / abs(amp.mean())) if amp.mean() != 0 else nan
    else:
        out["qrs_corr_mean"] = out["qrs_corr_low"] = out["r_amp_cv"] = out["qrs_width_ms"] = nan
    # the share of the recording's power in the QRS band against baseline and high-frequency noise
    spectrum = np.abs(np.fft.rfft(x - x.mean())) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / fs)
    total = spectrum.sum()
    out["power_qrs"] = float(spectrum[(freqs >= 5) & (freqs <= 25)].sum() / total) if total > 0 else nan
    out["power_high"] = float(spectrum[freqs > 40].sum() / total) if total > 0 else nan
    # atrial activity between beats: irregular fibrillatory waves raise the 4-9 Hz power of the T-Q segments
    out["atrial_4_9hz"] = _atrial_power(cleaned, peaks, fs)
    out.update(_p_wave_features(cleaned, peaks, fs))
    out.update(_rr_robust(peaks, fs))
    out.update(rr_evidence(np.diff(peaks.astype(float)) / fs))
    out.update(beat_evidence(cleaned, peaks, fs))
    out.update(noise_evidence(x, cleaned, fs))
    return out


def _rr_robust(peaks: IntArray, fs: float) -> dict[str, float]:
    """Irregularity that one ectopic beat does not inflate, and the coefficient of sample entropy.

    COSEn (Lake and Moorman, Am J Physiol 2011): the sample entropy of the RR series (seconds) at a fixed
    tolerance r = 30 ms, minus ln(2r) and ln(mean RR): the AF measure built for short records.
    """
    rr = np.diff(np.asarray(peaks, dtype=float)) / fs
    nan = float("nan")
    if rr.size < 4:
        keys = ("premature", "rr_alternation", "drr_mad", "drr_big", "cosen", "rr_min_ratio", "rr_max_ratio")
        return dict.fromkeys(keys, nan)
    d = np.diff(rr)
    med = float(np.median(rr))
    r = 0.03
    sampen = nan
    if rr.size >= 6:
        emb2 = np.lib.stride_tricks.sliding_window_view(rr, 2)[:-1]
        emb3 = np.lib.stride_tricks.sliding_window_view(rr, 3)
        b = int((np.abs(emb2[:, None, :] - emb2[None, :, :]).max(axis=2) <= r).sum() - len(emb2))
        a = int((np.abs(emb3[:, None, :] - emb3[None, :, :]).max(axis=2) <= r).sum() - len(emb3))
        # no match at m+1: the least a record of this length could show (the convention of Lake and Moorman)
        sampen = -math.log(max(a, 1) / b) if b > 0 else nan
    premature = (rr[:-1] < 0.85 * med) & (rr[1:] > 1.1 * med)  # a short interval then a compensatory pause
    return {
        "premature": float(premature.mean()),
        "rr_alternation": float(np.mean(np.sign(d[:-1]) != np.sign(d[1:]))) if d.size > 1 else nan,
        "drr_mad": float(np.median(np.abs(d)) / med),
        "drr_big": float(np.mean(np.abs(d) > 0.1 * med)),
        "cosen": sampen - math.log(2 * r) - math.log(float(rr.mean())) if math.isfinite(sampen) else nan,
        "rr_min_ratio": float(rr.min() / med),
        "rr_max_ratio": float(rr.max() / med),
    }


def _p_wave_features(cleaned: FloatArray, peaks: IntArray, fs: float) -> dict[str, float]:
    """Whether a P wave precedes each QRS the same way: in sinus rhythm the 300-80 ms before each R peak repeat
    one shape (a P wave); in atrial fibrillation there is no P wave, only irregular f-waves.

    ``p_corr``: the mean correlation of each beat's pre-QRS segment with their median; ``p_energy``: the median
    segment's variance against the beats' own (a visible P wave against noise)."""
    nan = float("nan")
    lo, hi = int(0.30 * fs), int(0.08 * fs)
    inner = peaks[peaks > lo]
    if inner.size < 4:
        return {"p_corr": nan, "p_energy": nan}
    segs = np.stack([cleaned[p - lo : p - hi] for p in inner])
    segs = segs - segs.mean(axis=1, keepdims=True)
    template = np.median(segs, axis=0)
    denom = np.linalg.norm(segs, axis=1) * np.linalg.norm(template)
    corr = np.where(denom > 0, segs @ template / np.where(denom > 0, denom, 1.0), 0.0)
    spread = float(np.mean(segs.var(axis=1)))
    return {"p_corr": float(corr.mean()), "p_energy": float(template.var() / spread) if spread > 0 else nan}


def _atrial_power(cleaned: FloatArray, peaks: IntArray, fs: float) -> float:
    """The share of the 4-9 Hz band in the signal between QRS complexes (from 200 ms after an R peak to 100 ms
    before the next), where f-waves of atrial fibrillation live and a sinus P wave does not fill the band."""
    segs = []
    for a, b in itertools.pairwise(peaks):
        lo, hi = a + int(0.2 * fs), b - int(0.1 * fs)
        if hi - lo >= int(0.15 * fs):
            s = cleaned[lo:hi]
            segs.append(s - s.mean())
    if not segs:
        return float("nan")
    x = np.concatenate(segs)
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / fs)
    band = spectrum[(freqs >= 1) & (freqs <= 40)].sum()
    return float(spectrum[(freqs >= 4) & (freqs <= 9)].sum() / band) if band > 0 else float("nan")
