"""Issue 13, item 8: everything medml writes under MEDML_HOME can hold PHI and is readable by its owner only.

Before the fix the FHIR store, the Parquet cache, reports, mlflow.db and model files were created 0644 in 0755
folders. Checked on real commands in a fresh process with the usual umask (022).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

MEDML = [sys.executable, "-m", "medml.cli"]
SYNTHEA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fhir" / "synthea-r4"


def others_can_read(home: Path) -> list[str]:
    found = []
    for path in [home, *home.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if not path.is_symlink() and mode & 0o077:
            found.append(f"{path.relative_to(home)} {oct(mode)}")
    return found


def run(args: list[str], home: Path) -> None:
    env = {**os.environ, "MEDML_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        ["sh", "-c", 'umask 022 && exec "$@"', "medml", *MEDML, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(not SYNTHEA.is_dir(), reason="../shared/data/fhir/synthea-r4 is not beside the checkout")
def test_training_ingest_and_reports_leave_nothing_readable_by_other_users(tmp_path: Path) -> None:
    home = tmp_path / "home"
    bundle = sorted(SYNTHEA.glob("*.json*"))[0]
    run(["fhir", "ingest", str(bundle)], home)
    run(["train", "pima", "--model", "logistic", "--budget-seconds", "2", "--max-trials", "2", "--n-boot", "20"], home)
    written = {p.name for p in home.rglob("*")}
    assert {"fhir.duckdb", "mlflow.db"} <= written and any(n.endswith(".html") for n in written)
    assert others_can_read(home) == []


def test_an_existing_home_open_to_others_is_made_owner_only(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    run(["models", "list"], home)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
