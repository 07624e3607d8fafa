"""Local polynomial regression (loess) in numpy, as R's ``loess`` defaults: span 0.75, degree 2, tricube
weights, no robustness iterations (robustness weights would down-weight the rarer class of a 0/1 outcome)."""

from __future__ import annotations

import numpy as np

from medml.evaluate._checks import FloatArray

_CHUNK_ELEMENTS = 2_000_000


def _neighbourhood_radius(x_sorted: FloatArray, at: FloatArray, q: int) -> FloatArray:
    """Distance from each point of ``at`` to its ``q``-th nearest neighbour in ``x_sorted``.

    The q nearest points form a window x[s : s + q]; the best start s is where x[s] + x[s + q - 1] first
    reaches 2 x0, or the one before.
    """
    n = x_sorted.size
    mids = x_sorted[: n - q + 1] + x_sorted[q - 1 :]
    s = np.searchsorted(mids, 2.0 * at)
    best = np.full(at.size, np.inf)
    for start in (np.clip(s - 1, 0, n - q), np.clip(s, 0, n - q)):
        radius = np.maximum(at - x_sorted[start], x_sorted[start + q - 1] - at)
        best = np.minimum(best, radius)
    return best


def loess(x: FloatArray, y: FloatArray, at: FloatArray, *, span: float = 0.75, degree: int = 2) -> FloatArray:
    """Loess fit of ``y`` on ``x`` evaluated at the points ``at``."""
    n = x.size
    q = max(degree + 1, min(n, int(np.floor(span * n))))
    h = _neighbourhood_radius(np.sort(x), at, q)
    h = np.where(h > 0, h, 1e-12)
    centre, scale = float(np.mean(x)), float(np.std(x)) or 1.0
    z = (x - centre) / scale  # standardised, so the normal equations stay well conditioned
    z_at = (at - centre) / scale
    powers = np.stack([z**k for k in range(2 * degree + 1)])  # (2 degree + 1) x n
    design_at = np.stack([z_at**k for k in range(degree + 1)], axis=1)
    out = np.empty(at.size)
    step = max(1, _CHUNK_ELEMENTS // max(n, 1))
    for start in range(0, at.size, step):
        sl = slice(start, start + step)
        u = np.abs(x[None, :] - at[sl, None]) / h[sl, None]
        np.minimum(u, 1.0, out=u)
        w = (1.0 - u**3) ** 3
        moments = w @ powers.T  # sums of w z^k
        rhs = (w * y[None, :]) @ powers[: degree + 1].T
        gram = np.stack([moments[:, i : i + degree + 1] for i in range(degree + 1)], axis=1)
        coef = np.einsum("gij,gj->gi", np.linalg.pinv(gram, rcond=1e-12), rhs)
        out[sl] = np.einsum("gi,gi->g", coef, design_at[sl])
    return out
