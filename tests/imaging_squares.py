"""A MedMNIST-format binary image task for the imaging tests (imported by module name: tests/ is on sys.path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_squares_npz(path: Path, sizes: tuple[int, int, int] = (120, 40, 40), seed: int = 0) -> Path:
    """Dim noise, and a bright 7 x 7 square somewhere in each positive image; half the images positive, in the
    ``train_``/``val_``/``test_`` layout of a MedMNIST ``.npz``."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for part, n in zip(("train", "val", "test"), sizes, strict=True):
        x = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
        y = (np.arange(n) % 2).astype(np.uint8)
        for i in np.flatnonzero(y):
            r, c = rng.integers(2, 19, size=2)
            x[i, r : r + 7, c : c + 7] = 230
        arrays[f"{part}_images"], arrays[f"{part}_labels"] = x, y[:, None]
    np.savez(path, **arrays)
    return path
