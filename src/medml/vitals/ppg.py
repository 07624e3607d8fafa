"""PPG heart rate with a signal-quality gate: a pulse rate is reported only for windows clean enough to trust.

Pulse peaks come from NeuroKit2's PPG pipeline (``ppg_clean`` with Elgendi et al.'s band-pass, ``ppg_peaks``,
Elgendi et al. 2013). Each window (10 s by default) is then judged by three checks, any of which rejects it:

1. **template match** (NeuroKit2's ``ppg_quality`` "templatematch", Orphanidou et al. 2015): the mean correlation of
   the window's pulses with the record's average pulse below ``min_quality`` (0.9);
2. **pulse rhythm**: fewer than 4 pulses, a rate outside 30-220/min, or beat-to-beat intervals varying by more
   than ``max_interval_cv`` (a coefficient of variation of 0.25: motion and clipping make missed and double peaks);
3. **flat or clipped signal**: a window whose range is zero.

A clinician sees a rate only where the gate passed, and the share of time rejected: a monitor that shows a wrong
rate in an artefact is worse than one that shows none.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from medml.errors import DataError
from medml.vitals.ecg import heart_rate, r_peaks

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class GateSettings:
    window_s: float = 10.0
    min_quality: float = 0.9
    max_interval_cv: float = 0.25
    min_pulses: int = 4
    rate_range: tuple[float, float] = (30.0, 220.0)


def pulse_peaks(ppg: npt.ArrayLike, fs: float) -> tuple[npt.NDArray[np.int64], FloatArray]:
    """(pulse peak indices, per-sample template-match quality in 0-1) of a PPG signal."""
    import neurokit2 as nk

    x = np.asarray(ppg, dtype=float).ravel()
    if x.size < 4 * fs:
        raise DataError(f"the PPG is {x.size / fs:.1f} s long: too short for a pulse rate", "give at least 4 s")
    x = np.where(np.isfinite(x), x, np.nanmedian(x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cleaned = nk.ppg_clean(x, sampling_rate=fs)
        info = nk.ppg_findpeaks(cleaned, sampling_rate=fs)
        peaks = np.asarray(info["PPG_Peaks"], dtype=np.int64)
        try:
            quality = np.asarray(nk.ppg_quality(cleaned, peaks=peaks, sampling_rate=fs), dtype=float)
        except Exception:  # too few pulses for a template: nothing can be trusted
            quality = np.zeros_like(cleaned)
    return peaks, quality


def gated_rates(
    ppg: npt.ArrayLike, fs: float, settings: GateSettings | None = None, *, ecg: npt.ArrayLike | None = None
) -> pd.DataFrame:
    """One row per window: start (s), the PPG pulse rate, whether the gate accepted it and why not, and, given
    ``ecg`` (one lead, or leads x samples) at the same rate, the ECG-derived heart rate in the same window for
    comparison: from the lead whose RR intervals are most regular there, since a noisy lead misses beats (the
    false-alarm records are noisy by design)."""
    g = settings or GateSettings()
    x = np.asarray(ppg, dtype=float).ravel()
    peaks, quality = pulse_peaks(x, fs)
    leads = [] if ecg is None else list(np.atleast_2d(np.asarray(ecg, dtype=float)))
    lead_peaks = [r_peaks(lead, fs, what=f"ECG lead {i + 1}") for i, lead in enumerate(leads)]
    width = int(g.window_s * fs)
    rows = []
    for start in range(0, x.size - width + 1, width):
        stop = start + width
        seg = x[start:stop]
        inside = peaks[(peaks >= start) & (peaks < stop)]
        rate = heart_rate(inside, fs)
        intervals = np.diff(inside) / fs
        cv = float(intervals.std() / intervals.mean()) if intervals.size >= 2 else float("nan")
        q = float(np.nanmean(quality[start:stop]))
        why = ""
        finite = seg[np.isfinite(seg)]
        if finite.size < 0.5 * seg.size or np.ptp(finite) == 0:
            why = "flat or missing signal"
        elif inside.size < g.min_pulses:
            why = f"fewer than {g.min_pulses} pulses"
        elif not g.rate_range[0] <= rate <= g.rate_range[1]:
            why = f"rate {rate:.0f}/min outside {g.rate_range[0]:g}-{g.rate_range[1]:g}"
        elif q < g.min_quality:
            why = f"pulse shape quality {q:.2f} below {g.min_quality:g}"
        elif cv > g.max_interval_cv:
            why = f"pulse intervals vary (CV {cv:.2f} above {g.max_interval_cv:g})"
        row: dict[str, float | str | bool] = {
            "start_s": start / fs,
            "ppg_rate": rate,
            "quality": q,
            "interval_cv": cv,
            "accepted": not why,
        }
        row["rejected_because"] = why
        if lead_peaks:
            row["ecg_rate"] = _ecg_rate(lead_peaks, start, stop, fs)
        rows.append(row)
    return pd.DataFrame(rows)


def _ecg_rate(lead_peaks: list[npt.NDArray[np.int64]], start: int, stop: int, fs: float) -> float:
    best, best_cv = float("nan"), float("inf")
    for p in lead_peaks:
        inside = p[(p >= start) & (p < stop)]
        rr = np.diff(inside) / fs
        if rr.size < 2:
            continue
        cv = float(rr.std() / rr.mean())
        if cv < best_cv:
            best, best_cv = heart_rate(inside, fs), cv
    return best
