"""Trained weights on disk: a ``state_dict`` (tensors only, never a pickled module) and its sha256."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medml.errors import InputFileError, IntegrityError


def save_weights(model_state: Mapping[str, Any], path: str | Path) -> str:
    """Write ``model_state`` to ``path`` with ``torch.save``; return the file's sha256 to keep beside it."""
    import torch

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(model_state), p)
    return file_sha256(p)


def load_weights(path: str | Path, *, sha256: str | None = None) -> dict[str, Any]:
    """Read a ``state_dict`` saved by :func:`save_weights`, tensors only (``weights_only``); when ``sha256`` is
    given, refuse a file whose hash differs."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"no weights file at {p}", "give the path that save_weights wrote")
    if sha256 is not None and file_sha256(p) != sha256:
        raise IntegrityError(
            f"{p} does not match its sha256 {sha256[:12]}...",
            "the file changed after it was saved: save the weights again",
        )
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError or EOFError for a damaged file
        raise InputFileError(f"{p} is not a readable weights file ({e})", "save the weights again") from e
    if not isinstance(state, dict):
        raise InputFileError(f"{p} holds a {type(state).__name__}, not a state_dict", "save the weights again")
    return state


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
