"""The `medml` command as a user meets it: bad input gets one clear line, exit code 2, nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

MEDML = [sys.executable, "-m", "medml.cli"]


def run(args: list[str], home: Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEDML_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([*MEDML, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def assert_clear_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    msg = " ".join(proc.stderr.split())
    assert msg.startswith("error:"), msg
    for f in fragments:
        assert f.lower() in msg.lower(), (f, msg)


def files_under(home: Path) -> list[Path]:
    return sorted(p for p in home.rglob("*") if p.is_file()) if home.exists() else []


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    return tmp_path / "medml-home"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


CASES = {
    "missing file": (lambda d: ["train", str(d / "nope.csv"), "--target", "y"], ["not found", "nope.csv"]),
    "empty file": (lambda d: ["train", str(write(d / "empty.csv", "")), "--target", "y"], ["empty"]),
    "missing target column": (
        lambda d: ["train", str(write(d / "t.csv", "age,sex\n50,F\n60,M\n")), "--target", "died"],
        ["died", "age"],
    ),
    "target with one class": (
        lambda d: ["train", str(write(d / "one.csv", "age,died\n" + "50,0\n61,0\n" * 20)), "--target", "died"],
        ["one", "both"],
    ),
    "text in a numeric column": (
        lambda d: [
            "train",
            str(write(d / "txt.csv", "age,died\n" + "".join(f"{50 + i},{i % 2}\n" for i in range(40)) + "sixty,1\n")),
            "--target",
            "died",
        ],
        ["age", "sixty"],
    ),
    "unknown model": (lambda d: ["train", "pima", "--model", "xgboost"], ["xgboost", "lgbm"]),
    "unknown dataset": (lambda d: ["train", "mimic-v"], ["mimic-v", "diabetes-130"]),
    "unknown registered model": (lambda d: ["report", "no-such-model"], ["no-such-model"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_clear_line_and_writes_nothing(case: str, home: Path, tmp_path: Path) -> None:
    args, fragments = CASES[case]
    proc = run(args(tmp_path), home)
    assert_clear_error(proc, *fragments)
    assert files_under(home) == [], "nothing may be written under MEDML_HOME on bad input"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    home = tmp_path_factory.mktemp("home")
    proc = run(["train", "heart-cleveland", "--model", "logistic", "--budget-seconds", "2", "--n-boot", "200"], home)
    return home, proc


def test_train_prints_test_metrics_and_where_things_are(trained) -> None:
    home, proc = trained
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    for fragment in (
        "AUROC (95% CI)",
        "AUPRC",
        "Brier",
        "cal. slope",
        "heart-cleveland-logistic@1",
        "external validation: heart-hungary",
        "report:",
    ):
        assert fragment in text, fragment
    report = Path(text.split("report:")[1].split()[0])
    assert report.is_file() and report.stat().st_size > 10_000
    assert (home / "models" / "heart-cleveland-logistic" / "1" / "metadata.json").is_file()


def test_registry_commands_and_external_validation(trained) -> None:
    home, _ = trained
    listing = run(["models", "list"], home)
    assert listing.returncode == 0 and "heart-cleveland-logistic" in listing.stdout
    shown = run(["models", "show", "heart-cleveland-logistic@1"], home)
    assert shown.returncode == 0, shown.stderr
    info = json.loads(shown.stdout)
    assert json.dumps(info).count("heart-cleveland") >= 1
    ext = run(["evaluate", "heart-cleveland-logistic", "--dataset", "heart-va", "--n-boot", "100"], home)
    assert ext.returncode == 0, ext.stderr
    assert "heart-va (external)" in " ".join(ext.stdout.split())
    again = run(["report", "heart-cleveland-logistic@1"], home)
    assert again.returncode == 0 and "report:" in again.stdout


def test_a_users_own_table_from_the_cli(home: Path, tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 400
    df = pd.DataFrame(
        {
            "patient": rng.integers(0, 250, n),
            "age": rng.normal(60, 10, n).round(),
            "sex": rng.choice(["F", "M"], n),
            "lactate": rng.gamma(2, 1, n).round(1),
        }
    )
    df["died"] = (rng.random(n) < 1 / (1 + np.exp(-(df["lactate"] - 3)))).map({True: "yes", False: "no"})
    path = tmp_path / "icu.parquet"
    df.to_parquet(path)
    proc = run(
        [
            "train",
            str(path),
            "--target",
            "died",
            "--id",
            "patient",
            "--sensitive",
            "sex",
            "--model",
            "logistic",
            "--budget-seconds",
            "1",
            "--n-boot",
            "100",
        ],
        home,
    )
    assert proc.returncode == 0, proc.stderr
    assert "AUROC" in proc.stdout and "report:" in proc.stdout
    # The same table described by a YAML spec, named and with its own task words.
    spec = tmp_path / "icu.yaml"
    spec.write_text(
        "table: icu.parquet\ntarget: died\npositive: 'yes'\nid: patient\nsensitive: [sex]\n"
        "name: icu-death\ntask: in-hospital death\n"
    )
    proc = run(["train", str(spec), "--model", "lgbm", "--budget-seconds", "1", "--n-boot", "100"], home)
    assert proc.returncode == 0, proc.stderr
    assert "icu-death-lgbm@1" in proc.stdout


def test_a_broken_yaml_spec_is_one_clear_line(home: Path, tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("table: [unclosed\n")
    assert_clear_error(run(["train", str(spec)], home), "bad.yaml", "yaml")
    assert files_under(home) == []


def test_datasets_lists_rows_and_prevalence(home: Path) -> None:
    proc = run(["datasets"], home)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    # Counts from ../shared/data's SOURCE files, after each adapter's documented exclusions.
    for fragment in (
        "diabetes-130",
        "99,343",
        "69,990",
        "11.4%",
        "physionet-2012",
        "3,996",
        "13.9%",
        "heart-va",
        "pima",
        "768",
        "34.9%",
        "support2",
        "9,105",
    ):
        assert fragment in text, fragment


def test_predict_scores_new_patients_with_their_factors_and_the_model(trained, tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd

    from medml.config import Settings
    from medml.pipelines.catalogue import load_dataset
    from medml.registry import load_bundle

    home, _ = trained
    site = load_dataset("heart-hungary")
    table = site.X.assign(patient=[f"H{i}" for i in range(len(site))])
    path = tmp_path / "hungary.csv"
    table.to_csv(path, index=False)
    out_csv = tmp_path / "scores.csv"
    proc = run(["predict", "heart-cleveland-logistic@1", str(path), "--id", "patient", "--out", str(out_csv)], home)
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "heart-cleveland-logistic@1" in text and "not a diagnosis" in text and "AUROC" in text
    scores = pd.read_csv(out_csv)
    assert list(scores["id"][:2]) == ["H0", "H1"] and (scores["model"] == "heart-cleveland-logistic@1").all()
    # The CSV round trip gives the same risks as the bundle scoring the frame in memory.
    bundle = load_bundle("heart-cleveland-logistic@1", Settings(home=home, data_root=home))
    np.testing.assert_allclose(scores["risk"], bundle.model.predict_proba(site.X)[:, 1], atol=1e-9)
    assert scores["factor_1"].str.contains("risk").all()

    missing = tmp_path / "missing.csv"
    table.drop(columns=[table.columns[0]]).to_csv(missing, index=False)
    assert_clear_error(run(["predict", "heart-cleveland-logistic@1", str(missing)], home), table.columns[0])
