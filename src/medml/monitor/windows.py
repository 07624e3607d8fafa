"""Windows of a stream of predictions: by count (every 200 predictions) or by time (every 7 days)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from medml.errors import MonitorError

__all__ = ["DEFAULT_WINDOW", "Windows", "windows_of"]

DEFAULT_WINDOW = 200


@dataclass(frozen=True)
class Windows:
    """Which window each row (prediction, in time order) falls in, and each window's bounds: first and last row
    for windows by count, start and end time for windows by time."""

    ids: npt.NDArray[np.intp]
    start: tuple[Any, ...]
    end: tuple[Any, ...]
    n: npt.NDArray[np.int64]
    by: str

    def __len__(self) -> int:
        return len(self.n)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame({"window": np.arange(len(self)), "start": self.start, "end": self.end, "n": self.n})

    def rows(self, w: int) -> npt.NDArray[np.intp]:
        return np.flatnonzero(self.ids == w)


def windows_of(n_rows: int, window: int | str | Windows = DEFAULT_WINDOW, times: Any = None) -> Windows:
    """Windows of ``window`` rows each (the last may be shorter), or with ``window`` a fixed time span such as
    ``"7D"`` or ``"12h"`` consecutive spans of ``times`` (one per row) from midnight UTC of the first one's day;
    spans without predictions are left out."""
    if isinstance(window, Windows):
        if window.ids.shape != (n_rows,):
            raise MonitorError(f"the windows cover {window.ids.size} rows, the stream has {n_rows}")
        return window
    if isinstance(window, bool) or not isinstance(window, int | str):
        raise MonitorError(f"a window is a number of predictions or a time span such as '7D', got {window!r}")
    if isinstance(window, int):
        if window < 1:
            raise MonitorError(f"a window must hold at least 1 prediction, got {window}", "use e.g. 200")
        ids = np.arange(n_rows, dtype=np.intp) // window
        count = int(ids[-1]) + 1 if n_rows else 0
        starts = np.arange(count) * window
        ends = np.minimum(starts + window, n_rows) - 1
        return Windows(
            ids, tuple(int(s) for s in starts), tuple(int(e) for e in ends), np.bincount(ids, minlength=count), "count"
        )
    if times is None:
        raise MonitorError(f"windows of {window!r} need the time of each prediction", "pass times, or a count")
    try:
        span = pd.Timedelta(window)
        stamps = pd.DatetimeIndex(pd.to_datetime(np.asarray(times), utc=True))
    except (ValueError, TypeError) as e:
        raise MonitorError(
            f"cannot cut windows of {window!r} from the prediction times ({e})",
            "use a fixed span such as '7D' or '12h'",
        ) from None
    if len(stamps) != n_rows:
        raise MonitorError(f"{len(stamps)} times for {n_rows} predictions")
    if stamps.isna().any():
        raise MonitorError("some predictions have no time", "give every prediction its time")
    if span <= pd.Timedelta(0):
        raise MonitorError(f"a time window must be longer than 0, got {window!r}")
    origin = stamps.min().floor("D")  # windows start at midnight (UTC) of the first prediction's day
    labels, codes = np.unique(np.asarray((stamps - origin) // span, dtype=np.int64), return_inverse=True)
    opens = pd.DatetimeIndex([origin + int(k) * span for k in labels])
    closes = opens + span
    return Windows(
        codes.astype(np.intp), tuple(opens), tuple(closes), np.bincount(codes, minlength=labels.size), "time"
    )
