"""Without the imaging extra (torch, MONAI), `medml image train` says how to install it: one line, exit 2.

Runs everywhere, CI included: a stand-in `torch` package that fails to import takes the real one's place.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np


def test_cli_without_torch_says_how_to_install(tmp_path: Path) -> None:
    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'torch'\")\n")
    data = tmp_path / "ok.npz"
    rng = np.random.default_rng(0)
    np.savez(
        data,
        **{
            f"{p}_{k}": (rng.integers(0, 255, (10, 28, 28)) if k == "images" else np.arange(10)[:, None] % 2).astype(
                np.uint8
            )
            for p in ("train", "val", "test")
            for k in ("images", "labels")
        },
    )
    env = {**os.environ, "MEDML_HOME": str(tmp_path / "home"), "PYTHONPATH": str(fake.parent)}
    r = subprocess.run(
        [sys.executable, "-m", "medml.cli", "image", "train", str(data)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().startswith("error:") and "pip install -e '.[imaging]'" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "home" / "models").exists()


def test_predict_with_fhir_output_without_torch_says_how_to_install_and_writes_nothing(tmp_path: Path) -> None:
    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'torch'\")\n")
    (tmp_path / "a.png").write_bytes(b"")
    env = {**os.environ, "MEDML_HOME": str(tmp_path / "home"), "PYTHONPATH": str(fake.parent)}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "medml.cli",
            "image",
            "predict",
            "m",
            str(tmp_path / "a.png"),
            "--fhir",
            str(tmp_path / "out.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert r.returncode == 2, r.stderr
    assert "pip install -e '.[imaging]'" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out.json").exists()
