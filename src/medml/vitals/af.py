"""Atrial fibrillation from a single-lead ECG: records -> rhythm features -> a task the tabular pipeline trains.

Who: the records of a folder laid out as the PhysioNet/CinC Challenge 2017 publishes them (``REFERENCE.csv`` of
``record,label`` with N normal, A atrial fibrillation, O other rhythm, ~ too noisy; one ``.mat`` + ``.hea`` per
record; `../shared/data/signals/physionet-2017-af` holds 300 of the challenge's validation records). Each record is
one patient (the challenge gives no patient ids).
Outcome: atrial fibrillation (label A) against everything else (N, O and ~): what a clinician acts on. The
challenge's own four-class score (mean F1 of N, A and O) is measured in ``benchmarks/bench_signals.py`` on the same
features.
Features: :func:`medml.vitals.ecg.rhythm_features` of the whole record (RR irregularity, COSEn, P-wave consistency,
QRS morphology, signal quality, and :mod:`medml.vitals.af_features`: ectopy-robust and windowed RR irregularity,
QRST-cancelled atrial activity, beat-to-average correlation, ECG kurtosis). They are computed once per record and
cached under ``MEDML_HOME/cache``, keyed by the folder's files (names, sizes, modification times) and the feature
code's version.
A record that cannot be read or scored (truncated, header and signal disagree, too short) is left out, named and
counted in ``population``: one bad file does not stop the others.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from medml.config import get_settings
from medml.data.datasets._common import id_array
from medml.data.targets import BinaryTarget
from medml.data.task import TaskDataset, infer_features
from medml.errors import DataError, InputFileError, MedmlError
from medml.vitals.ecg import FEATURES_VERSION, rhythm_features
from medml.vitals.signals import read_recording

log = logging.getLogger(__name__)

LABELS = {"N": "normal sinus rhythm", "A": "atrial fibrillation", "O": "other rhythm", "~": "too noisy to classify"}

#: feature -> (label, unit) in the words a clinician reads on a card
FEATURE_LABELS: dict[str, tuple[str, str]] = {
    "n_beats": ("Beats detected", "count"),
    "hr_mean": ("Mean heart rate", "/min"),
    "rr_sd": ("SD of RR intervals", "ms"),
    "rmssd": ("RMSSD of RR intervals", "ms"),
    "pnn50": ("Share of successive RR differences over 50 ms", "fraction"),
    "rr_cv": ("RR coefficient of variation", "ratio"),
    "sd1": ("Poincare SD1", "ms"),
    "sd2": ("Poincare SD2", "ms"),
    "sd1_sd2": ("Poincare SD1/SD2", "ratio"),
    "rr_sampen": ("Sample entropy of RR", ""),
    "rr_range": ("RR 10-90% range / mean", "ratio"),
    "seconds": ("Recording length", "s"),
    "quality_mean": ("ECG quality (template match)", "0-1"),
    "quality_low": ("Share of low-quality beats", "fraction"),
    "qrs_corr_mean": ("QRS shape consistency", "correlation"),
    "qrs_corr_low": ("Share of unlike QRS complexes", "fraction"),
    "r_amp_cv": ("R amplitude variation", "ratio"),
    "power_qrs": ("Power in the QRS band", "fraction"),
    "power_high": ("Power above 40 Hz", "fraction"),
    "atrial_4_9hz": ("Atrial 4-9 Hz activity between beats", "fraction"),
    "p_corr": ("P-wave consistency before QRS", "correlation"),
    "p_energy": ("P-wave energy", "ratio"),
    "drr_mad": ("Median successive RR change / median RR", "ratio"),
    "drr_big": ("Share of successive RR changes over 10%", "fraction"),
    "cosen": ("COSEn (RR entropy)", ""),
    "rr_min_ratio": ("Shortest RR / median RR", "ratio"),
    "rr_max_ratio": ("Longest RR / median RR", "ratio"),
    "premature": ("Share of premature beats (short RR then pause)", "fraction"),
    "rr_alternation": ("Share of alternating RR changes", "fraction"),
    "qrs_width_ms": ("QRS width (median beat)", "ms"),
    "nrmssd": ("RMSSD / mean RR", "ratio"),
    "tpr": ("RR turning-point ratio", "fraction"),
    "rdr_cells": ("Occupied RR-dRR map cells per beat", "ratio"),
    "rr_hist_entropy": ("RR histogram entropy", "nats"),
    "rr_outlier_share": ("Share of RR intervals off their local median", "fraction"),
    "nrmssd_clean": ("RMSSD / mean RR without outlying intervals", "ratio"),
    "win12_drr_min": ("Most regular 12-beat stretch: RR change / RR", "ratio"),
    "win8_drr_min": ("Most regular 8-beat stretch: RR change / RR", "ratio"),
    "win8_irregular_share": ("Share of irregular 8-beat stretches", "fraction"),
    "tachy_share": ("Share of RR intervals under 600 ms", "fraction"),
    "pause_share": ("Share of RR intervals over 1.5 x median", "fraction"),
    "p_amp": ("P-wave deflection / QRS amplitude (average beat)", "ratio"),
    "beat_corr_med": ("Beat-to-average correlation (median)", "correlation"),
    "beat_corr_p10": ("Beat-to-average correlation (10th centile)", "correlation"),
    "f_power_ratio": ("Atrial 4-9 Hz power after QRST cancellation", "fraction"),
    "f_dominant_hz": ("Dominant atrial frequency after QRST cancellation", "Hz"),
    "f_concentration": ("Atrial power within 1 Hz of the dominant frequency", "fraction"),
    "ecg_kurtosis": ("ECG kurtosis (low: noise)", ""),
    "window_amp_cv": ("Variation of 1 s amplitudes", "ratio"),
    "flat_share": ("Share of repeated samples (saturated lead)", "fraction"),
}


@dataclass(frozen=True)
class Records:
    """Feature rows of the records that could be scored, their labels, and the ones left out (name -> why)."""

    features: pd.DataFrame
    labels: pd.Series
    left_out: dict[str, str]


def read_reference(folder: Path) -> pd.Series:
    """REFERENCE.csv as record -> label (N, A, O, ~); a clear error for a missing or malformed file."""
    ref = folder / "REFERENCE.csv"
    if not ref.is_file():
        raise InputFileError(
            f"{folder} has no REFERENCE.csv", "give the folder of a PhysioNet 2017-style set (record,label lines)"
        )
    try:
        frame = pd.read_csv(ref, header=None, names=["record", "label"], dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InputFileError(f"{ref} cannot be read as record,label lines: {e}", "fix or restore the file") from None
    frame["label"] = frame["label"].str.strip()
    bad = frame[~frame["label"].isin(list(LABELS))]
    if len(bad):
        raise DataError(
            f"{ref} has {len(bad)} label(s) outside N, A, O, ~ (first: record {bad.iloc[0]['record']}, "
            f"label {bad.iloc[0]['label']!r})",
            "use the challenge's labels",
        )
    if frame["record"].duplicated().any():
        dup = frame.loc[frame["record"].duplicated(), "record"].iloc[0]
        raise DataError(f"{ref} lists record {dup} twice", "keep one label per record")
    return pd.Series(frame["label"].to_numpy(), index=frame["record"].to_numpy(), name="label")


def _fingerprint(folder: Path, names: list[str]) -> str:
    h = hashlib.sha256(f"features {FEATURES_VERSION}".encode())
    for name in names:
        for suffix in (".mat", ".hea"):
            p = folder / f"{name}{suffix}"
            st = p.stat() if p.exists() else None
            h.update(f"{name}{suffix}:{st.st_size if st else -1}:{st.st_mtime_ns if st else -1}".encode())
    return h.hexdigest()[:24]


def record_features(
    folder: str | Path, *, progress: Callable[[int, int], None] | None = None, cache: bool = True
) -> Records:
    """The rhythm features of every record in REFERENCE.csv (see the module docstring)."""
    root = Path(folder)
    if not root.is_dir():
        raise InputFileError(f"no folder at {root}", "give the folder holding REFERENCE.csv and the records")
    labels = read_reference(root)
    names = list(labels.index)
    cache_file = get_settings().home / "cache" / f"af-features-{_fingerprint(root, names)}.parquet"
    if cache and cache_file.is_file():
        frame = pd.read_parquet(cache_file)
        scored = frame.dropna(subset=["_ok"])
        return Records(scored.drop(columns=["_ok", "_why"]), labels.loc[scored.index], _left_out(frame))
    rows: dict[str, dict[str, float]] = {}
    why: dict[str, str] = {}
    for i, name in enumerate(names):
        try:
            rec = read_recording(root / f"{name}.hea")
            rows[name] = rhythm_features(rec.signals[:, 0], rec.fs, what=f"record {name}")
        except MedmlError as e:
            why[name] = str(e)
            log.warning("record %s left out: %s", name, e)
        if progress:
            progress(i + 1, len(names))
    frame = pd.DataFrame.from_dict(rows, orient="index").reindex(names)
    frame["_ok"] = [1.0 if n in rows else np.nan for n in names]
    frame["_why"] = [why.get(n, "") for n in names]
    if cache:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp")
        frame.to_parquet(tmp)
        tmp.replace(cache_file)
    scored = frame.dropna(subset=["_ok"])
    return Records(scored.drop(columns=["_ok", "_why"]), labels.loc[scored.index], why)


def _left_out(frame: pd.DataFrame) -> dict[str, str]:
    return {str(k): str(v) for k, v in frame.loc[frame["_ok"].isna(), "_why"].items()}


def af_task(folder: str | Path, *, progress: Callable[[int, int], None] | None = None) -> TaskDataset:
    """Atrial fibrillation against any other label, one record per patient, as a TaskDataset."""
    root = Path(folder)
    recs = record_features(root, progress=progress)
    if recs.features.empty:
        raise DataError(f"no record of {root} could be scored", "check the records (see the messages above)")
    y = np.asarray(recs.labels == "A", dtype=np.int8)
    if y.min() == y.max():
        raise DataError(f"{root}: every scored record is {'AF' if y[0] else 'not AF'}", "a classifier needs both")
    X = recs.features.reset_index(drop=True).astype(float)
    ids = id_array(recs.features.index.to_numpy())
    counts = recs.labels.value_counts()
    mix = ", ".join(f"{counts.get(k, 0)} {v}" for k, v in LABELS.items())
    left = f"; {len(recs.left_out)} record(s) that could not be scored were left out" if recs.left_out else ""
    return TaskDataset(
        name="cinc2017-af",
        task="atrial fibrillation on a single-lead ECG (30-60 s)",
        X=X,
        y=BinaryTarget(y, "atrial fibrillation"),
        groups=ids,
        features=infer_features(
            X, {k: u for k, (_, u) in FEATURE_LABELS.items()}, {k: lab for k, (lab, _) in FEATURE_LABELS.items()}
        ),
        sensitive=pd.DataFrame(index=X.index),
        ids=ids,
        population=f"{len(X)} single-lead ECG records of {root.name} (PhysioNet/CinC 2017 layout): {mix}{left}",
        provenance=f"{root.resolve()} (REFERENCE.csv + .mat/.hea records); features by medml.vitals.ecg",
        excluded={"label": "the outcome: A = atrial fibrillation; N, O and ~ are the other class"},
    )


def features_of(paths: list[Path]) -> tuple[pd.DataFrame, dict[str, str]]:
    """Rhythm features of single records to score (any readable format), and the ones that could not be read."""
    rows: dict[str, dict[str, float]] = {}
    why: dict[str, str] = {}
    for p in paths:
        try:
            rec = read_recording(p)
            rows[rec.name] = rhythm_features(rec.signals[:, 0], rec.fs, what=f"record {rec.name}")
        except MedmlError as e:
            why[Path(p).stem] = str(e)
    return pd.DataFrame.from_dict(rows, orient="index"), why
