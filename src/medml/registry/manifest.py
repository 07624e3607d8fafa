"""manifest.json: the sha256 of every file in a bundle folder and one hash over them all.

The manifest catches a bundle changed after it was saved (by hand, by a bad copy, by disk rot). It is not a
signature: someone who can rewrite the manifest too is not stopped, so load bundles only from trusted stores.
The bundle hash is also written to the MLflow model version as a tag, for comparison.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medml.errors import IntegrityError

MANIFEST = "manifest.json"
FORMAT = 1
_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def bundle_hash(files: Mapping[str, Mapping[str, Any]]) -> str:
    """One hash over the file names and their hashes, independent of the order they are listed in."""
    lines = "".join(f"{name}\t{files[name]['sha256']}\n" for name in sorted(files))
    return sha256_bytes(lines.encode())


def write_manifest(folder: Path) -> dict[str, Any]:
    """Hash every file in ``folder`` (flat: bundles have no sub-folders) and write ``manifest.json``."""
    files = {
        p.name: {"sha256": sha256_file(p), "size": p.stat().st_size}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != MANIFEST
    }
    manifest = {"format": FORMAT, "algorithm": "sha256", "files": files, "bundle_hash": bundle_hash(files)}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(folder: Path, ref: str) -> dict[str, Any]:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_bytes())
        files = manifest["files"]
        ok = (
            manifest.get("format") == FORMAT
            and isinstance(files, dict)
            and all(isinstance(v, dict) and isinstance(v.get("sha256"), str) for v in files.values())
        )
    except FileNotFoundError:
        raise _modified(ref, "manifest.json is missing") from None
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:  # RecursionError: JSON nested too deep
        raise _modified(ref, f"manifest.json cannot be read ({e})") from None
    if not ok:
        raise _modified(ref, "manifest.json is not in a format this medml knows")
    if manifest.get("bundle_hash") != bundle_hash(files):
        raise _modified(ref, "manifest.json bundle hash mismatch")
    return manifest


def verify_folder(folder: Path, ref: str, keep: tuple[str, ...] = ()) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Check every file against the manifest before anything is parsed or unpickled.

    Returns the manifest and the verified bytes of the files named in ``keep``: callers parse exactly the
    bytes that were hashed, so a file swapped between the check and the load is never read.
    """
    manifest = read_manifest(folder, ref)
    expected = manifest["files"]
    present = {p.name for p in folder.iterdir()} - {MANIFEST}
    if missing := sorted(set(expected) - present):
        raise _modified(ref, f"file {', '.join(missing)} missing")
    if unlisted := sorted(present - set(expected)):
        raise _modified(ref, f"file {', '.join(unlisted)} not in the manifest")
    kept: dict[str, bytes] = {}
    for name in sorted(expected):
        path = folder / name
        if name in keep:
            data = path.read_bytes()
            digest = sha256_bytes(data)
            kept[name] = data
        else:
            digest = sha256_file(path)
        if digest != expected[name]["sha256"]:
            raise _modified(ref, f"file {name} hash mismatch")
    return manifest, kept


def _modified(ref: str, what: str) -> IntegrityError:
    return IntegrityError(f"bundle {ref} was modified after it was saved: {what}", "retrain or restore it from MLflow")
