"""The bundle store: one folder per version, ``models_dir/<name>/<version>/``, written atomically.

A bundle is built in ``models_dir/.tmp-<uuid>/`` and moved into place with one ``os.replace``, so a version
folder is either complete or absent. Writers hold ``models_dir/.lock`` (an ``flock``) for the whole write,
which makes version numbering safe between processes on one machine; readers take no lock. Loading checks
every file against ``manifest.json`` before anything is unpickled. Nothing here touches MLflow.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medml.errors import ConfigError, InputFileError, IntegrityError, MedmlError, NotFoundError
from medml.registry.bundle import BundleMetadata, ModelBundle, check_name, headline
from medml.registry.manifest import MANIFEST, read_manifest, sha256_bytes, verify_folder, write_manifest

try:
    import fcntl
except ImportError:  # not POSIX: no inter-process lock, one writer at a time is then the user's job
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from medml.config import Settings
    from medml.data.task import FeatureSpec

MODEL = "model.joblib"
WEIGHTS = "model.pt"
#: the model file of each artifact kind; load_bundle tells the kind by which of them the manifest lists
MODEL_FILES = {"joblib": MODEL, "torch-state-dict": WEIGHTS}
FEATURES = "features.json"
METADATA = "metadata.json"
RESERVED = frozenset({MODEL, WEIGHTS, FEATURES, METADATA, MANIFEST})
_ATTACHMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_TMP_PREFIX = ".tmp-"
LOCK_TIMEOUT_S = 300.0


class StoreBusy(MedmlError):
    """Another process holds the store lock: it is writing (registering) now."""


# --- references -------------------------------------------------------------------------------------------


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``"name"`` and ``"name@latest"`` -> ``(name, None)``; ``"name@3"`` -> ``(name, 3)``."""
    name, at, version = ref.partition("@")
    check_name(name)
    if not at or version == "latest":
        return name, None
    if version.isdigit() and int(version) >= 1:
        return name, int(version)
    raise ConfigError(f"invalid model reference {ref!r}", "write name, name@latest or name@<version number>")


def model_names(settings: Settings) -> list[str]:
    """Names with at least one saved version."""
    root = settings.models_dir
    if not root.is_dir():
        return []
    return sorted(
        p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and versions(settings, p.name)
    )


def versions(settings: Settings, name: str) -> list[int]:
    folder = settings.models_dir / name
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())


def bundle_dir(settings: Settings, name: str, version: int) -> Path:
    return settings.models_dir / name / str(version)


def resolve(ref: str, settings: Settings) -> tuple[str, int, Path]:
    """``(name, version, folder)`` of a saved bundle, or NotFoundError naming what exists."""
    name, version = parse_ref(ref)
    have = versions(settings, name)
    if not have:
        names = model_names(settings)
        listing = ", ".join(names) if names else "none yet"
        raise NotFoundError(
            f"no model named {name!r} in {settings.models_dir} (models: {listing})",
            "check the name with `medml models list`, or train and register one",
        )
    if version is None:
        version = have[-1]
    elif version not in have:
        raise NotFoundError(
            f"model {name!r} has no version {version} (versions: {', '.join(map(str, have))})",
            f"use one of these, or {name}@latest",
        )
    return name, version, bundle_dir(settings, name, version)


# --- writing ----------------------------------------------------------------------------------------------


@contextmanager
def store_lock(settings: Settings, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold ``models_dir/.lock`` exclusively: one writer at a time on this machine. StoreBusy after ``timeout_s``
    (at once with 0) while another process holds it."""
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    with (settings.models_dir / ".lock").open("a") as f:
        if fcntl is None:
            yield
            return
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreBusy(
                        f"another process has been writing to {settings.models_dir} for over {timeout_s:.0f} s",
                        "wait for it to finish, or stop it",
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def staging(settings: Settings) -> Iterator[Path]:
    """A fresh ``.tmp-<uuid>`` folder under models_dir, removed on exit unless committed. Hold the lock.

    Under the lock no other writer is running, so any temporary folder still there was left by a killed
    process and is removed too.
    """
    root = settings.models_dir
    for stale in root.glob(f"{_TMP_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
    tmp.mkdir(parents=True)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already when committed


def check_attachments(attachments: Mapping[str, str | os.PathLike[str]] | None) -> dict[str, Path]:
    """Extra files to store in the bundle (``{"report.html": path}``): plain names, existing files."""
    out: dict[str, Path] = {}
    for name, src in (attachments or {}).items():
        if not isinstance(name, str) or not _ATTACHMENT.match(name) or name in RESERVED:
            raise ConfigError(
                f"invalid attachment name {name!r}",
                f"use a plain file name (letters, digits, '_.-') other than {sorted(RESERVED)}",
            )
        path = Path(src)
        if not path.is_file():
            raise InputFileError(f"attachment {name!r}: {path} is not a file", "check the path")
        out[name] = path
    return out


def write_bundle(bundle: ModelBundle, folder: Path, attachments: Mapping[str, Path]) -> dict[str, Any]:
    """Write the bundle files and the attachments into ``folder``, then the manifest; returns the manifest."""
    if bundle.artifact == "torch-state-dict":
        import torch

        torch.save(dict(bundle.model), folder / WEIGHTS)
    else:
        import joblib

        joblib.dump(bundle.model, folder / MODEL)
    (folder / FEATURES).write_text(json.dumps([f.to_dict() for f in bundle.features], indent=2) + "\n")
    (folder / METADATA).write_text(json.dumps(bundle.metadata.to_dict(), indent=2) + "\n")
    for name, src in attachments.items():
        shutil.copyfile(src, folder / name)
    manifest = write_manifest(folder)
    for p in folder.iterdir():
        _fsync(p)
    return manifest


def commit(staged: Path, settings: Settings, name: str, version: int) -> Path:
    """Move a staged bundle into ``models_dir/<name>/<version>`` in one step; never overwrite a version."""
    target = bundle_dir(settings, name, version)
    if target.exists():
        raise IntegrityError(
            f"bundle {name}@{version} already exists in {settings.models_dir}",
            "versions are never overwritten; save this one as a new version",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, target)
    _fsync(target.parent)
    return target


def save_bundle(
    bundle: ModelBundle, settings: Settings, attachments: Mapping[str, str | os.PathLike[str]] | None = None
) -> ModelBundle:
    """Save to the bundle store only (no MLflow); returns the bundle with its version.

    A bundle without a version gets the highest saved version + 1. Use :func:`medml.registry.register` for
    models meant for use: it also tracks and registers them in MLflow, with the same version number. Do not
    mix the two for one model name: MLflow would then hand out numbers the store already holds.
    """
    files = check_attachments(attachments)
    name = bundle.name
    with store_lock(settings):
        version = bundle.version or (max(versions(settings, name), default=0) + 1)
        saved = bundle.with_metadata(bundle.metadata.with_version(version))
        with staging(settings) as tmp:
            write_bundle(saved, tmp, files)
            commit(tmp, settings, name, version)
    return saved


# --- reading ----------------------------------------------------------------------------------------------


def load_bundle(ref: str, settings: Settings) -> ModelBundle:
    """Load ``name``, ``name@latest`` or ``name@3``; every file is verified before the model is read.

    A joblib model is unpickled, which runs code: load only from a store you trust. The hashes catch changes
    after saving, not a forger who rewrites the manifest as well. A torch state_dict is read as tensors only.
    """
    name, version, folder = resolve(ref, settings)
    r = f"{name}@{version}"
    manifest, data = verify_folder(folder, r, keep=(MODEL, WEIGHTS, FEATURES, METADATA))
    metadata = _metadata(data[METADATA], r, name, version)
    features = _features(data[FEATURES], r)
    kinds = [k for k, f in MODEL_FILES.items() if f in manifest["files"]]
    if len(kinds) != 1:
        raise IntegrityError(
            f"bundle {r} holds {len(kinds)} model files (of {', '.join(MODEL_FILES.values())})",
            "retrain or restore it from MLflow",
        )
    kind = kinds[0]
    if kind == "torch-state-dict":
        return ModelBundle(_state_dict(data[WEIGHTS], r), features, metadata, artifact="torch-state-dict")
    import joblib

    model = joblib.load(io.BytesIO(data[MODEL]))  # exactly the bytes that were hashed
    return ModelBundle(model, features, metadata)


def _state_dict(data: bytes, ref: str) -> dict[str, Any]:
    """Tensors only (``weights_only=True``): a state_dict cannot run code when it is read."""
    import pickle

    import torch

    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        raise IntegrityError(
            f"bundle {ref}: model.pt is not a readable state_dict ({e})", "retrain or restore it from MLflow"
        ) from None
    if not isinstance(state, dict):
        raise IntegrityError(
            f"bundle {ref}: model.pt holds a {type(state).__name__}, not a state_dict",
            "retrain or restore it from MLflow",
        )
    return state


def show_model(ref: str, settings: Settings) -> dict[str, Any]:
    """Metadata, features and files (with verified hashes) of one version; the model is not unpickled."""
    name, version, folder = resolve(ref, settings)
    r = f"{name}@{version}"
    manifest, data = verify_folder(folder, r, keep=(FEATURES, METADATA))
    metadata = _metadata(data[METADATA], r, name, version)
    return {
        "ref": r,
        "name": name,
        "version": version,
        "versions": versions(settings, name),
        "path": str(folder),
        "verified": True,
        "bundle_hash": manifest["bundle_hash"],
        "files": [
            {"name": n, "size": f.get("size"), "sha256": f["sha256"]} for n, f in sorted(manifest["files"].items())
        ],
        "features": [f.to_dict() for f in _features(data[FEATURES], r)],
        "metadata": metadata.to_dict(),
    }


def list_models(settings: Settings) -> list[dict[str, Any]]:
    """One row per model name (its latest version), from the store alone; ``problem`` says why a row is empty.

    Only metadata.json is checked against the manifest here; the model file is checked when loaded.
    """
    rows = []
    for name in model_names(settings):
        have = versions(settings, name)
        folder = bundle_dir(settings, name, have[-1])
        row: dict[str, Any] = {
            "name": name,
            "latest_version": have[-1],
            "versions": have,
            "model_kind": None,
            "dataset": None,
            "task": None,
            "created": None,
            "auroc": None,
            "problem": None,
        }
        try:
            manifest = read_manifest(folder, f"{name}@{have[-1]}")
            data = (folder / METADATA).read_bytes()
            if sha256_bytes(data) != manifest["files"].get(METADATA, {}).get("sha256"):
                raise IntegrityError(
                    f"bundle {name}@{have[-1]} was modified after it was saved: file metadata.json hash mismatch",
                    "retrain or restore it from MLflow",
                )
            meta = json.loads(data)
            row.update({k: meta.get(k) for k in ("model_kind", "dataset", "task", "created")})
            row["auroc"] = headline(meta.get("metrics") or {}, "auroc")
        except IntegrityError as e:
            row["problem"] = str(e)
        except (OSError, ValueError, AttributeError, RecursionError) as e:
            row["problem"] = f"metadata.json cannot be read ({e}); run `medml models show {name}`"
        rows.append(row)
    return rows


def _metadata(data: bytes, ref: str, name: str, version: int) -> BundleMetadata:
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as e:  # RecursionError: nested too deep
        raise IntegrityError(
            f"bundle {ref}: metadata.json is not JSON ({e})", "retrain or restore it from MLflow"
        ) from None
    metadata = BundleMetadata.from_dict(raw, source=f"bundle {ref} metadata.json")
    if (metadata.name, metadata.version) != (name, version):
        raise IntegrityError(
            f"bundle {ref}: metadata.json describes {metadata.ref}",
            "a bundle folder was moved or copied by hand; restore it from MLflow",
        )
    return metadata


def _features(data: bytes, ref: str) -> list[FeatureSpec]:
    from medml.data.task import FeatureSpec

    try:
        return [FeatureSpec.from_dict(d) for d in json.loads(data)]
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError, MedmlError) as e:
        raise IntegrityError(
            f"bundle {ref}: features.json is not a list of feature specs ({e})", "retrain or restore it from MLflow"
        ) from None


def _fsync(path: Path) -> None:
    """Flush a file or folder to disk, so a completed version survives a power cut too."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
