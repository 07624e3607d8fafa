"""The atrial-fibrillation task and `medml vitals ecg`: counts against the challenge's REFERENCE.csv, a bad record
left out and named while the others go on, a classifier trained, registered and used, and each bad input."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from medml.config import get_settings
from medml.errors import DataError, InputFileError
from medml.vitals.af import af_task, read_reference, record_features

CINC = get_settings().data_root / "signals" / "physionet-2017-af"
pytestmark = pytest.mark.skipif(not CINC.is_dir(), reason=f"no PhysioNet 2017 records at {CINC} (set MEDML_DATA)")
MEDML = [sys.executable, "-m", "medml.cli"]


def test_reference_counts_match_the_source() -> None:
    """SOURCE.txt: 300 records, 150 normal / 50 AF / 70 other / 30 noisy."""
    labels = read_reference(CINC)
    assert len(labels) == 300
    assert labels.value_counts().to_dict() == {"N": 150, "O": 70, "A": 50, "~": 30}


def _subset(tmp_path: Path, per_label: dict[str, int]) -> Path:
    """A folder with the first records of each label, in the challenge's layout."""
    labels = read_reference(CINC)
    folder = tmp_path / "ecgs"
    folder.mkdir()
    chosen = [r for lab, n in per_label.items() for r in labels[labels == lab].index[:n]]
    for r in chosen:
        for suffix in (".hea", ".mat"):
            shutil.copy(CINC / f"{r}{suffix}", folder / f"{r}{suffix}")
    (folder / "REFERENCE.csv").write_text("".join(f"{r},{labels[r]}\n" for r in chosen))
    return folder


def test_a_bad_record_is_left_out_and_named_while_the_others_go_on(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MEDML_HOME", str(tmp_path / "home"))
    folder = _subset(tmp_path, {"A": 4, "N": 4})
    victim = sorted(folder.glob("*.mat"))[0]
    victim.write_bytes(victim.read_bytes()[:300])  # truncated
    recs = record_features(folder, cache=False)
    assert len(recs.features) == 7 and list(recs.left_out) == [victim.stem]
    assert victim.stem in recs.left_out[victim.stem]
    ds = af_task(folder)
    assert len(ds) == 7 and "1 record(s) that could not be scored were left out" in ds.population
    assert int(ds.binary_target.values.sum()) == len(recs.labels[recs.labels == "A"])


def test_reference_file_errors(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no REFERENCE.csv"):
        read_reference(tmp_path)
    (tmp_path / "REFERENCE.csv").write_text("A00001,N\nA00002,X\n")
    with pytest.raises(DataError, match="outside N, A, O, ~"):
        read_reference(tmp_path)
    (tmp_path / "REFERENCE.csv").write_text("A00001,N\nA00001,A\n")
    with pytest.raises(DataError, match="twice"):
        read_reference(tmp_path)


def _run(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEDML_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([*MEDML, *args], capture_output=True, text=True, env=env, timeout=900)


@pytest.mark.slow
def test_train_register_and_predict_from_the_command_line(tmp_path: Path) -> None:
    """A logistic AF model on 60 records through the usual pipeline (registry, report), then scored on records it
    did not see; AF records score higher than normal ones on average."""
    home = tmp_path / "home"
    folder = _subset(tmp_path, {"A": 25, "N": 35})
    proc = _run(
        ["vitals", "ecg", "train", str(folder), "--model", "logistic", "--budget-seconds", "5", "--n-boot", "50"], home
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "cinc2017-af-logistic@1" in proc.stdout and (home / "reports").is_dir()
    labels = read_reference(CINC)
    unseen_af, unseen_n = labels[labels == "A"].index[30:35], labels[labels == "N"].index[40:45]
    records = [str(CINC / f"{r}.mat") for r in [*unseen_af, *unseen_n]]
    proc = _run(["vitals", "ecg", "predict", "cinc2017-af-logistic", *records], home)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Decision support, not a diagnosis" in proc.stdout and "AUROC" in proc.stdout
    shown = {line.split()[1]: float(line.split()[3].rstrip("%")) for line in proc.stdout.splitlines() if "│ A0" in line}
    af = [shown[r] for r in unseen_af]
    normal = [shown[r] for r in unseen_n]
    assert sum(af) / len(af) > sum(normal) / len(normal)


def test_predict_with_no_readable_record_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "X1.hea"
    bad.write_text("not a header\n")
    proc = _run(["vitals", "ecg", "predict", "no-such-model", str(bad)], tmp_path / "home")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error:")


def test_peaks_of_a_too_short_record_is_one_clear_error(tmp_path: Path) -> None:
    for suffix in (".hea", ".mat"):
        shutil.copy(CINC / f"A00001{suffix}", tmp_path / f"A00001{suffix}")
    import numpy as np
    import scipy.io

    scipy.io.savemat(str(tmp_path / "A00001.mat"), {"val": np.zeros((1, 600), dtype=np.int16)})
    hea = tmp_path / "A00001.hea"
    hea.write_text(hea.read_text().replace(" 9000 ", " 600 ", 1))
    proc = _run(["vitals", "ecg", "peaks", str(hea)], tmp_path / "home")
    assert proc.returncode == 2 and "too short to score" in proc.stderr and "Traceback" not in proc.stderr


def test_features_frame_has_one_row_per_scored_record(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MEDML_HOME", str(tmp_path / "home"))
    folder = _subset(tmp_path, {"A": 2, "N": 2, "O": 1, "~": 1})
    first = record_features(folder)
    again = record_features(folder)  # from the cache
    pd.testing.assert_frame_equal(first.features, again.features)
    assert list(first.features.index) == list(read_reference(folder).index)
