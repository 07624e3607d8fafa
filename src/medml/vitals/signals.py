"""Physiological signal files read into one shape: a :class:`Recording` of named channels in physical units.

Two formats, as PhysioNet publishes them:

- **WFDB** (``NAME.hea`` + ``NAME.dat``, or a ``.mat`` signal file named in the header): read with the ``wfdb``
  package, PhysioNet's own reader (MIT-BIH, the 2015 false-alarm challenge's ECG + PPG records). Beat annotations
  (``NAME.atr``) with :func:`read_beats`.
- **PhysioNet/CinC 2017** single-lead ECGs (``A00001.mat`` + ``A00001.hea``): the ``.mat`` holds ``val``, the digital
  samples; the header gives the sampling rate, the gain (ADC units per mV) and the sample count. ``wfdb`` cannot
  parse these headers' base-date field, so the header's numbers are read here and the signal with scipy.

What a file is checked for, each a clear :class:`~medml.errors.InputFileError` naming the file: missing or empty,
a header that is not WFDB, a truncated or unreadable signal, and a header that disagrees with its signal (sample
count, number of channels).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from medml.errors import InputFileError

FloatArray = npt.NDArray[np.float64]

#: the annotation symbols that mark a beat in WFDB annotation files (PhysioNet's ``wfdb.io.annotation``
#: ``ann_label_table``: normal, bundle branch block, premature, escape, paced, fusion, unclassifiable)
BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")


@dataclass(frozen=True)
class Recording:
    """Channels of one record in physical units (``signals`` is samples x channels)."""

    name: str
    fs: float  #: samples per second
    channels: tuple[str, ...]
    units: tuple[str, ...]
    signals: FloatArray
    comments: tuple[str, ...] = ()

    @property
    def seconds(self) -> float:
        return float(self.signals.shape[0] / self.fs)

    def channel(self, *names: str) -> FloatArray:
        """The first channel called one of ``names`` (case-insensitive), NaN gaps as they are."""
        wanted = [n.lower() for n in names]
        for i, c in enumerate(self.channels):
            if c.lower() in wanted:
                return np.asarray(self.signals[:, i], dtype=float)
        raise InputFileError(
            f"record {self.name} has no {' or '.join(names)} channel",
            f"its channels are: {', '.join(self.channels)}",
        )


@contextmanager
def _quiet() -> Iterator[None]:
    """wfdb 4.3 calls pandas in ways pandas 3 deprecates: its warnings are not the user's to act on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


def _header_path(path: str | Path) -> Path:
    p = Path(path)
    hea = p.with_suffix(".hea") if p.suffix in (".hea", ".mat", ".dat", "") else p
    if p.suffix == "" and not hea.exists():
        hea = Path(str(p) + ".hea")
    if not hea.is_file():
        raise InputFileError(f"no WFDB header at {hea}", "give the record's .hea (its signal file beside it)")
    if hea.stat().st_size == 0:
        raise InputFileError(f"the header {hea} is empty", "restore the record's .hea file")
    return hea


_RECORD_LINE = re.compile(r"^(\S+)\s+(\d+)\s+([0-9.]+)(?:/[0-9.]+)?(?:\(\S+\))?\s+(\d+)")


def _cinc2017_header(hea: Path) -> tuple[int, float, int, float, float, str, str]:
    """(channels, fs, samples, gain, baseline, unit, channel name) of a one-channel PhysioNet 2017 header."""
    lines = [ln for ln in hea.read_text(encoding="ascii", errors="replace").splitlines() if ln and ln[0] != "#"]
    head = _RECORD_LINE.match(lines[0]) if lines else None
    if head is None or len(lines) < 2:
        raise InputFileError(
            f"{hea} is not a WFDB header (expected 'NAME CHANNELS FS SAMPLES' then one line per channel)",
            "restore the record's .hea file",
        )
    n_sig, fs, n_samples = int(head.group(2)), float(head.group(3)), int(head.group(4))
    parts = lines[1].split()
    gain_field = parts[2] if len(parts) > 2 else "200"
    m = re.match(r"([0-9.eE+-]+)(?:\(([-0-9]+)\))?(?:/(\S+))?", gain_field)
    gain = float(m.group(1)) if m and float(m.group(1)) != 0 else 200.0
    baseline = float(m.group(2)) if m and m.group(2) else float(parts[4]) if len(parts) > 4 else 0.0
    unit = m.group(3) if m and m.group(3) else "mV"
    name = parts[8] if len(parts) > 8 else "ECG"
    return n_sig, fs, n_samples, gain, baseline, unit, name


def read_cinc2017(path: str | Path) -> Recording:
    """A PhysioNet/CinC 2017 record (``.mat`` or ``.hea``; both must lie together) in millivolts."""
    import scipy.io

    hea = _header_path(path)
    mat = hea.with_suffix(".mat")
    n_sig, fs, n_samples, gain, baseline, unit, name = _cinc2017_header(hea)
    if not mat.is_file():
        raise InputFileError(f"no signal file {mat} beside {hea.name}", "restore the record's .mat file")
    try:
        val = scipy.io.loadmat(str(mat))["val"]
    except KeyError:
        raise InputFileError(f"{mat} holds no 'val' array", "restore the record's .mat file") from None
    except Exception as e:  # scipy raises ValueError, TypeError or OSError on truncated or foreign files
        raise InputFileError(
            f"{mat} cannot be read as a MATLAB signal file ({type(e).__name__}: {str(e)[:120]})",
            "the file is truncated or not a .mat; restore it",
        ) from None
    values = np.atleast_2d(np.asarray(val, dtype=float))
    if values.shape[0] != n_sig:
        raise InputFileError(
            f"{hea.name} says {n_sig} channel(s) but {mat.name} holds {values.shape[0]}", "restore a matching pair"
        )
    if values.shape[1] != n_samples:
        raise InputFileError(
            f"{hea.name} says {n_samples} samples but {mat.name} holds {values.shape[1]}: header and signal disagree",
            "restore a matching pair (a truncated signal file is the usual cause)",
        )
    return Recording(
        name=hea.stem,
        fs=fs,
        channels=(name,),
        units=(unit,),
        signals=((values - baseline) / gain).T,
    )


def read_wfdb(path: str | Path) -> Recording:
    """A WFDB record (header + signal files) with ``wfdb.rdrecord``, in physical units."""
    with _quiet():
        import wfdb

    hea = _header_path(path)
    try:
        with _quiet():
            rec = wfdb.rdrecord(str(hea.with_suffix("")))
    except FileNotFoundError as e:
        raise InputFileError(f"record {hea.stem}: {e}", "put the signal file named in the header beside it") from None
    except Exception as e:  # wfdb raises ValueError/IndexError on headers and signals that disagree
        raise InputFileError(
            f"record {hea.stem} cannot be read ({type(e).__name__}: {str(e)[:160]})",
            "check that the header matches its signal file (a truncated signal is the usual cause)",
        ) from None
    signals = np.asarray(rec.p_signal, dtype=float)
    if signals.ndim != 2 or signals.shape[0] != rec.sig_len:
        raise InputFileError(
            f"record {hea.stem}: the header says {rec.sig_len} samples, the signal holds {signals.shape[0]}",
            "restore a matching header and signal",
        )
    return Recording(
        name=hea.stem,
        fs=float(rec.fs),
        channels=tuple(str(c) for c in rec.sig_name),
        units=tuple(str(u) for u in rec.units),
        signals=signals,
        comments=tuple(str(c) for c in (rec.comments or ())),
    )


def read_recording(path: str | Path) -> Recording:
    """Either format: a PhysioNet 2017 ``.mat`` single-lead ECG, else a WFDB record."""
    hea = _header_path(path)
    first = next((ln for ln in hea.read_text(encoding="ascii", errors="replace").splitlines() if ln.strip()), "")
    fields = first.split()
    # the 2017 headers carry a base date and time ('2014-05-08 05:05:15') that wfdb cannot parse
    if hea.with_suffix(".mat").is_file() and len(fields) > 4 and re.match(r"\d{4}-\d{2}-\d{2}", fields[4]):
        return read_cinc2017(hea)
    return read_wfdb(hea)


def read_beats(path: str | Path, extension: str = "atr") -> npt.NDArray[np.int64]:
    """The sample indices of the beats annotated in ``NAME.atr`` (non-beat annotations left out)."""
    with _quiet():
        import wfdb

    hea = _header_path(path)
    ann_file = hea.with_suffix(f".{extension}")
    if not ann_file.is_file():
        raise InputFileError(f"no annotation file {ann_file}", f"give a record with a .{extension} file")
    try:
        with _quiet():
            ann = wfdb.rdann(str(hea.with_suffix("")), extension)
    except Exception as e:
        raise InputFileError(f"{ann_file} cannot be read ({type(e).__name__})", "restore the annotation file") from None
    return np.asarray([s for s, sym in zip(ann.sample, ann.symbol, strict=True) if sym in BEAT_SYMBOLS], dtype=np.int64)
