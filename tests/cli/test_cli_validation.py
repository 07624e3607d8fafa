"""`medml train --cv / --repeats / --validation bootstrap`: bad input is one line, exit 2, nothing registered."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_cli_bad_input import PIMA_HEADER, one_line_error, pima_rows, run


def nothing_registered(home: Path) -> bool:
    models = home / "models"
    return not models.exists() or not any(models.iterdir())


def test_more_folds_than_patients_with_the_outcome(tmp_path: Path) -> None:
    rows = pima_rows()
    positives = [i for i, r in enumerate(rows) if r[-1].strip() == "1"]
    for i in positives[3:]:  # keep 3 patients with the outcome
        rows[i][-1] = "0"
    table = tmp_path / "three-events.csv"
    table.write_text(PIMA_HEADER + "\n" + "\n".join(",".join(r) for r in rows) + "\n")
    home = tmp_path / "home"
    proc = run(["train", str(table), "--target", "outcome", "--cv", "5", "--model", "logistic"], home)
    one_line_error(proc, "--cv 5", "with the outcome (3)", "--cv 3")
    assert nothing_registered(home)


def test_zero_repeats(tmp_path: Path) -> None:
    home = tmp_path / "home"
    one_line_error(run(["train", "pima", "--cv", "5", "--repeats", "0"], home), "--repeats must be 1 or more")
    assert nothing_registered(home)


def test_one_fold_and_disagreeing_options(tmp_path: Path) -> None:
    home = tmp_path / "home"
    one_line_error(run(["train", "pima", "--cv", "1"], home), "--cv must be 2 or more")
    one_line_error(run(["train", "pima", "--cv", "5", "--validation", "bootstrap"], home), "exclude each other")
    one_line_error(run(["train", "pima", "--repeats", "3"], home), "--repeats", "--cv")
    one_line_error(run(["train", "pima", "--validation", "loo"], home), "unknown --validation")
    assert nothing_registered(home)


def test_bootstrap_on_one_patient_group(tmp_path: Path) -> None:
    rows = pima_rows()
    table = tmp_path / "one-patient.csv"
    table.write_text(PIMA_HEADER + ",pid\n" + "\n".join(",".join([*r, "p1"]) for r in rows) + "\n")
    home = tmp_path / "home"
    proc = run(
        ["train", str(table), "--target", "outcome", "--id", "pid", "--validation", "bootstrap", "--model", "logistic"],
        home,
    )
    one_line_error(proc, "1 patient group", "bootstrap")
    assert nothing_registered(home)


@pytest.mark.slow  # a few minutes on 2 busy cores: 3 folds x 2 repeats and the final model
def test_train_with_cv_prints_the_validation_and_registers_one_model(tmp_path: Path) -> None:
    home = tmp_path / "home"
    args = ["train", "heart-cleveland", "--model", "logistic", "--cv", "3", "--repeats", "2"]
    proc = run([*args, "--budget-seconds", "1", "--max-trials", "3", "--n-boot", "50"], home)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "on cross-validated predictions" in proc.stdout
    assert "AUROC: pooled out-of-fold" in proc.stdout and "Minimum sample size (Riley et al. 2020)" in proc.stdout
    assert "short of Riley et al.'s minimum sample size" in proc.stderr  # 303 patients, 20 candidate parameters
    assert [p.name for p in (home / "models" / "heart-cleveland-logistic").iterdir() if p.name.isdigit()] == ["1"]
