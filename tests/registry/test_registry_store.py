"""The bundle store on its own (no MLflow): atomic saves, verified loads, references, listings."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest

from medml.config import Settings
from medml.errors import ConfigError, InputFileError, IntegrityError, NotFoundError
from medml.registry import ModelBundle, list_models, load_bundle, resolve, save_bundle, show_model, store
from medml.registry.manifest import write_manifest

Bundle = Callable[..., ModelBundle]
UNPICKLED: list[str] = []


def _explode() -> None:
    UNPICKLED.append("yes")
    raise RuntimeError("the tampered pickle ran")


class _Boom:
    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (_explode, ())


def _leftovers(settings: Settings) -> list[str]:
    return sorted(p.name for p in settings.models_dir.glob(".tmp-*"))


def test_save_and_load_round_trip(
    settings: Settings, make_bundle: Bundle, cancer: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, _ = cancer
    saved = save_bundle(make_bundle(kind="lgbm"), settings)
    loaded = load_bundle("sepsis-lr", settings)
    assert saved.version == loaded.version == 1
    np.testing.assert_array_equal(loaded.predict_proba(X), saved.model.predict_proba(X))
    assert loaded.features == saved.features
    assert loaded.features[0].unit == "mm"
    assert loaded.metadata == saved.metadata
    folder = settings.models_dir / "sepsis-lr" / "1"
    assert sorted(p.name for p in folder.iterdir()) == [
        "features.json",
        "manifest.json",
        "metadata.json",
        "model.joblib",
    ]
    assert _leftovers(settings) == []


def test_versions_increment_and_latest_resolves(settings: Settings, make_bundle: Bundle) -> None:
    for v in (None, 0, None):  # None and 0 both mean "not yet versioned"
        save_bundle(make_bundle(version=v), settings)
    assert [v for _, v, _ in (resolve(f"sepsis-lr@{i}", settings) for i in (1, 2, 3))] == [1, 2, 3]
    assert resolve("sepsis-lr@latest", settings)[:2] == ("sepsis-lr", 3)
    assert resolve("sepsis-lr", settings)[2] == settings.models_dir / "sepsis-lr" / "3"
    assert load_bundle("sepsis-lr@2", settings).version == 2


def test_concurrent_saves_get_distinct_versions(settings: Settings, make_bundle: Bundle) -> None:
    bundle = make_bundle()
    got: list[int] = []
    threads = [
        threading.Thread(target=lambda: got.append(save_bundle(bundle, settings).version or 0)) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == [1, 2, 3, 4]


def test_tampered_model_is_refused_before_unpickling(settings: Settings, make_bundle: Bundle) -> None:
    save_bundle(make_bundle(), settings)
    joblib.dump(_Boom(), settings.models_dir / "sepsis-lr" / "1" / "model.joblib")
    expected = (
        "bundle sepsis-lr@1 was modified after it was saved: file model.joblib hash mismatch; "
        "retrain or restore it from MLflow"
    )
    with pytest.raises(IntegrityError, match=re.escape(expected)):
        load_bundle("sepsis-lr@1", settings)
    assert UNPICKLED == []
    # the check is real: the same file does run when unpickled directly
    with pytest.raises(RuntimeError, match="tampered pickle ran"):
        joblib.load(settings.models_dir / "sepsis-lr" / "1" / "model.joblib")


def test_tampered_metadata_is_refused(settings: Settings, make_bundle: Bundle) -> None:
    save_bundle(make_bundle(), settings)
    path = settings.models_dir / "sepsis-lr" / "1" / "metadata.json"
    path.write_text(path.read_text().replace("Tests only", "Approved"))
    with pytest.raises(IntegrityError, match="file metadata.json hash mismatch"):
        load_bundle("sepsis-lr", settings)
    with pytest.raises(IntegrityError, match="metadata.json hash mismatch"):
        show_model("sepsis-lr", settings)
    row = list_models(settings)[0]
    assert "metadata.json hash mismatch" in row["problem"] and row["model_kind"] is None


@pytest.mark.parametrize("change", ["extra file", "missing file", "manifest edited"])
def test_other_changes_to_the_folder_are_refused(settings: Settings, make_bundle: Bundle, change: str) -> None:
    save_bundle(make_bundle(), settings)
    folder = settings.models_dir / "sepsis-lr" / "1"
    if change == "extra file":
        (folder / "notes.txt").write_text("hi")
        message = "notes.txt not in the manifest"
    elif change == "missing file":
        (folder / "features.json").unlink()
        message = "features.json missing"
    else:
        m = json.loads((folder / "manifest.json").read_text())
        m["files"]["model.joblib"]["sha256"] = "0" * 64
        (folder / "manifest.json").write_text(json.dumps(m))
        message = "bundle hash mismatch"
    with pytest.raises(IntegrityError, match=message):
        load_bundle("sepsis-lr", settings)


def test_metadata_missing_a_key_is_a_clear_error(settings: Settings, make_bundle: Bundle) -> None:
    """A bundle whose hashes agree but whose metadata lacks a key (written by hand or by old code)."""
    save_bundle(make_bundle(), settings)
    folder = settings.models_dir / "sepsis-lr" / "1"
    meta = json.loads((folder / "metadata.json").read_text())
    del meta["population"]
    (folder / "metadata.json").write_text(json.dumps(meta))
    write_manifest(folder)
    with pytest.raises(
        IntegrityError, match="bundle sepsis-lr@1 metadata.json is not valid bundle metadata: missing key 'population'"
    ):
        load_bundle("sepsis-lr", settings)


def test_metadata_of_another_version_is_refused(settings: Settings, make_bundle: Bundle) -> None:
    save_bundle(make_bundle(), settings)
    save_bundle(make_bundle(), settings)
    one, two = settings.models_dir / "sepsis-lr" / "1", settings.models_dir / "sepsis-lr" / "2"
    for p in two.iterdir():
        p.unlink()
    for p in one.iterdir():
        (two / p.name).write_bytes(p.read_bytes())
    with pytest.raises(IntegrityError, match="metadata.json describes sepsis-lr@1"):
        load_bundle("sepsis-lr@2", settings)


def test_bad_references(settings: Settings, make_bundle: Bundle) -> None:
    with pytest.raises(NotFoundError, match=r"no model named 'x'.*models: none yet"):
        resolve("x", settings)
    save_bundle(make_bundle("sepsis-lr"), settings)
    save_bundle(make_bundle("aki-gbm", kind="lgbm"), settings)
    with pytest.raises(NotFoundError, match=r"no model named 'sepsis' .*\(models: aki-gbm, sepsis-lr\)"):
        load_bundle("sepsis", settings)
    with pytest.raises(NotFoundError, match=r"has no version 7 \(versions: 1\)"):
        load_bundle("sepsis-lr@7", settings)
    for bad in ("sepsis-lr@", "sepsis-lr@v2", "sepsis-lr@0", "../etc@1", ""):
        with pytest.raises(ConfigError):
            resolve(bad, settings)


def test_attachments_are_stored_hashed_and_checked(settings: Settings, make_bundle: Bundle, tmp_path: Path) -> None:
    report = tmp_path / "r.html"
    report.write_text("<html>report</html>")
    save_bundle(make_bundle(), settings, attachments={"report.html": report})
    shown = show_model("sepsis-lr@1", settings)
    assert [f["name"] for f in shown["files"]] == ["features.json", "metadata.json", "model.joblib", "report.html"]
    assert all(len(f["sha256"]) == 64 for f in shown["files"])
    (settings.models_dir / "sepsis-lr" / "1" / "report.html").write_text("<html>edited</html>")
    with pytest.raises(IntegrityError, match="file report.html hash mismatch"):
        load_bundle("sepsis-lr", settings)


def test_bad_attachments_fail_before_anything_is_written(
    settings: Settings, make_bundle: Bundle, tmp_path: Path
) -> None:
    with pytest.raises(InputFileError, match="is not a file"):
        save_bundle(make_bundle(), settings, attachments={"report.html": tmp_path / "nope.html"})
    with pytest.raises(ConfigError, match="invalid attachment name"):
        save_bundle(make_bundle(), settings, attachments={"model.joblib": tmp_path})
    with pytest.raises(ConfigError, match="invalid attachment name"):
        save_bundle(make_bundle(), settings, attachments={"../x.html": tmp_path})
    assert list_models(settings) == []


def test_failed_write_leaves_nothing(settings: Settings, make_bundle: Bundle, monkeypatch: pytest.MonkeyPatch) -> None:
    save_bundle(make_bundle(), settings)

    def broken(folder: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(store, "write_manifest", broken)
    with pytest.raises(OSError, match="disk full"):
        save_bundle(make_bundle(), settings)
    assert store.versions(settings, "sepsis-lr") == [1]
    assert _leftovers(settings) == []


def test_stale_temp_folders_are_cleared_by_the_next_writer(settings: Settings, make_bundle: Bundle) -> None:
    stale = settings.models_dir / ".tmp-killed"
    stale.mkdir(parents=True)
    (stale / "model.joblib").write_bytes(b"half")
    save_bundle(make_bundle(), settings)
    assert _leftovers(settings) == []
    assert list_models(settings)[0]["name"] == "sepsis-lr"


def test_existing_version_is_never_overwritten(settings: Settings, make_bundle: Bundle) -> None:
    first = save_bundle(make_bundle(), settings)
    with pytest.raises(IntegrityError, match="already exists"):
        save_bundle(first, settings)


def test_list_and_show(settings: Settings, make_bundle: Bundle) -> None:
    assert list_models(settings) == []
    save_bundle(make_bundle("sepsis-lr"), settings)
    save_bundle(make_bundle("sepsis-lr", metrics={"auroc": 0.91}), settings)
    save_bundle(make_bundle("aki-gbm", kind="lgbm", dataset="mimic-demo", metrics={}), settings)
    rows = list_models(settings)
    assert [
        (r["name"], r["latest_version"], r["versions"], r["model_kind"], r["dataset"], r["auroc"]) for r in rows
    ] == [("aki-gbm", 1, [1], "lgbm", "mimic-demo", None), ("sepsis-lr", 2, [1, 2], "logistic", "breast-cancer", 0.91)]
    assert all(r["problem"] is None and r["created"] for r in rows)

    shown = show_model("sepsis-lr", settings)
    assert shown["ref"] == "sepsis-lr@2" and shown["verified"] is True and shown["versions"] == [1, 2]
    assert shown["metadata"]["intended_use"] == "Tests only: not for clinical use."
    assert shown["metadata"]["excluded_columns"] == {"patient_id": "identifier"}
    assert shown["features"][0] == {"name": "mean_radius", "kind": "numeric", "unit": "mm", "label": ""}
    assert len(shown["bundle_hash"]) == 64
    json.dumps(shown)  # plain data, ready for the CLI or a web page
