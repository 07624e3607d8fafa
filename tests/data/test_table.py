"""A user's own table: CSV, Parquet and YAML specs, and one test per kind of bad input."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medml.data.datasets import TableSpec, load_spec_yaml, load_table
from medml.errors import ConfigError, DataError, InputFileError

CSV = """pid,age,sex,race,lactate,ward,died
p01,34,F,white,1.1,ICU,no
p02,45,M,black,2.5,ward,yes
p02,46,M,black,3.9,ICU,yes
p03,61,F,,0.9,ward,no
p04,72,M,asian,1.4,ward,no
p05,85,F,white,NA,ICU,yes
p06,55,M,white,2.2,ward,
p07,39,F,black,1.0,ward,no
"""


def write(tmp_path: Path, text: str, name: str = "cohort.csv") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def numeric_csv(tmp_path: Path, n: int = 20, bad: dict[int, str] | None = None) -> Path:
    rows = ["id,lab,outcome"]
    for i in range(n):
        value = (bad or {}).get(i, f"{1 + i / 10:.1f}")
        rows.append(f"{i},{value},{i % 2}")
    return write(tmp_path, "\n".join(rows) + "\n")


def test_csv_with_id_sensitive_and_a_yes_no_target(tmp_path: Path) -> None:
    ds = load_table(write(tmp_path, CSV), TableSpec(target="died", id="pid", sensitive=("sex", "race", "age")))
    # Row p06 has no target: left out and counted.
    assert len(ds) == 7 and "1 rows with no value of 'died'" in ds.population
    assert ds.binary_target.name == "died = yes"
    assert ds.binary_target.values.tolist() == [0, 1, 1, 0, 0, 1, 0]
    # Sensitive columns beside X, not inside it; features default to all other columns.
    assert list(ds.X.columns) == ["lactate", "ward"]
    assert list(ds.sensitive.columns) == ["sex", "race", "age"]
    assert ds.sensitive["race"].tolist()[3] == "Unknown"
    assert ds.sensitive["age"].tolist() == ["<40", "40-59", "40-59", "60-79", "60-79", "80+", "<40"]
    assert ds.X["lactate"].dtype == np.float64 and np.isnan(ds.X["lactate"].iloc[5])
    assert ds.X["ward"].dtype == "category"
    assert [f.kind for f in ds.features] == ["numeric", "categorical"]
    # Patients, not rows: p02 has two rows, each with its own sample id.
    assert ds.groups.tolist() == ["p01", "p02", "p02", "p03", "p04", "p05", "p07"]
    assert ds.ids.tolist()[1:3] == ["p02#1", "p02#2"]
    assert "6 patients" in ds.population
    assert ds.excluded["died"].startswith("the outcome") and "sensitive" in ds.excluded["race"]
    assert ds.name == "cohort" and "sha256" in ds.provenance


def test_sensitive_column_listed_as_feature_is_in_both(tmp_path: Path) -> None:
    spec = TableSpec(target="died", id="pid", features=("age", "sex", "lactate"), sensitive=("sex",))
    ds = load_table(write(tmp_path, CSV), spec)
    assert list(ds.X.columns) == ["age", "sex", "lactate"]
    assert "sex" in ds.sensitive.columns
    assert ds.excluded["ward"] == "not listed among the spec's features"


def test_without_id_each_row_is_a_patient(tmp_path: Path) -> None:
    ds = load_table(write(tmp_path, CSV), TableSpec(target="died", drop=("pid",)))
    assert "each row is taken to be a different patient" in ds.population
    assert len(set(ds.groups)) == len(ds) == 7
    assert "pid" not in ds.X.columns and ds.excluded["pid"] == "dropped by the spec"
    assert "race" in ds.X.columns and ds.sensitive.shape == (7, 0)


def test_zero_one_target_and_explicit_positive(tmp_path: Path) -> None:
    p = numeric_csv(tmp_path)
    ds = load_table(p, TableSpec(target="outcome", id="id"))
    assert ds.binary_target.values.tolist() == [i % 2 for i in range(20)]
    flipped = load_table(p, TableSpec(target="outcome", id="id", positive="0"))
    assert flipped.binary_target.values.tolist() == [1 - i % 2 for i in range(20)]
    assert flipped.binary_target.name == "outcome = 0"


def test_parquet_with_boolean_target_and_categories(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "mrn": ["007", "008", "009", "010"],
            "sbp": [120, 95, 140, 88],
            "ward": pd.Categorical(["a", "b", "a", "b"]),
            "on_insulin": [True, False, True, False],
            "sepsis": [False, True, False, True],
        }
    )
    p = tmp_path / "cohort.parquet"
    frame.to_parquet(p)
    ds = load_table(p, TableSpec(target="sepsis", id="mrn"))
    assert ds.binary_target.values.tolist() == [0, 1, 0, 1] and ds.binary_target.name == "sepsis = true"
    assert ds.groups.tolist() == ["007", "008", "009", "010"]  # leading zeros kept
    assert ds.X["sbp"].dtype == np.float64 and ds.X["on_insulin"].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert ds.X["ward"].dtype == "category"


def test_gzipped_csv_and_tsv(tmp_path: Path) -> None:
    gz = tmp_path / "cohort.csv.gz"
    with gzip.open(gz, "wt") as f:
        f.write(CSV)
    assert len(load_table(gz, TableSpec(target="died", id="pid"))) == 7
    tsv = write(tmp_path, CSV.replace(",", "\t"), "cohort.tsv")
    ds = load_table(tsv, TableSpec(target="died", id="pid"))
    assert ds.name == "cohort" and len(ds) == 7


def test_yaml_spec_resolves_the_table_beside_it(tmp_path: Path) -> None:
    sub = tmp_path / "study"
    sub.mkdir()
    write(sub, CSV)
    spec_path = write(
        sub,
        "table: cohort.csv\ntarget: died\nid: pid\npositive: yes\nsensitive: [sex, race]\n"
        "features: [age, lactate]\nname: sepsis-deaths\ntask: death in hospital\n",
        "spec.yaml",
    )
    table_path, spec = load_spec_yaml(spec_path)
    assert table_path == sub / "cohort.csv"
    assert spec == TableSpec(
        target="died",
        id="pid",
        positive=True,
        sensitive=("sex", "race"),
        features=("age", "lactate"),
        name="sepsis-deaths",
        task="death in hospital",
    )
    ds = load_table(table_path, spec)
    # YAML reads `yes` as true: it still picks the "yes" value.
    assert ds.binary_target.name == "died = yes" and ds.name == "sepsis-deaths" and ds.task == "death in hospital"
    assert list(ds.X.columns) == ["age", "lactate"]


# ---- bad input: one test per case, each a medml error that names the problem ----


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no file at .*nothing.csv"):
        load_table(tmp_path / "nothing.csv", TableSpec(target="y"))


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"empty \(0 bytes\)"):
        load_table(write(tmp_path, ""), TableSpec(target="y"))


def test_header_only(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="header .*but no data rows"):
        load_table(write(tmp_path, "a,b,y\n"), TableSpec(target="y"))


def test_unsupported_format(tmp_path: Path) -> None:
    p = tmp_path / "cohort.xlsx"
    p.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(InputFileError, match=r"unsupported format '\.xlsx'.*CSV.*Parquet"):
        load_table(p, TableSpec(target="y"))


def test_unreadable_parquet(tmp_path: Path) -> None:
    p = tmp_path / "cohort.parquet"
    p.write_bytes(b"this is not parquet at all")
    with pytest.raises(InputFileError, match="not a readable Parquet file"):
        load_table(p, TableSpec(target="y"))


def test_csv_that_is_not_text(tmp_path: Path) -> None:
    p = tmp_path / "cohort.csv"
    p.write_bytes(b"a,y\n\xff\xfe\x00\x81,1\n")
    with pytest.raises(InputFileError, match="not UTF-8"):
        load_table(p, TableSpec(target="y"))


def test_ragged_csv(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="not a readable CSV.*line 3"):
        load_table(write(tmp_path, "a,y\n1,0\n2,1,7\n"), TableSpec(target="y"))


def test_duplicate_column_names(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="duplicate column names: a"):
        load_table(write(tmp_path, "a,a,y\n1,2,0\n3,4,1\n"), TableSpec(target="y"))


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        (TableSpec(target="death"), "target 'death'"),
        (TableSpec(target="died", id="patient"), "id 'patient'"),
        (TableSpec(target="died", features=("lactate", "creatinine")), "feature 'creatinine'"),
        (TableSpec(target="died", sensitive=("gender",)), "sensitive 'gender'"),
    ],
)
def test_missing_columns_are_named_with_the_ones_that_exist(tmp_path: Path, spec: TableSpec, named: str) -> None:
    with pytest.raises(DataError) as e:
        load_table(write(tmp_path, CSV), spec)
    assert named in str(e.value)
    assert "its columns are: pid, age, sex, race, lactate, ward, died" in str(e.value)


def test_one_outcome_value(tmp_path: Path) -> None:
    p = write(tmp_path, "a,y\n1,0\n2,0\n3,0\n")
    with pytest.raises(DataError, match=r"only one outcome value \(0\) in 3 rows.*a model needs both"):
        load_table(p, TableSpec(target="y"))


def test_more_than_two_outcome_values(tmp_path: Path) -> None:
    p = write(tmp_path, "a,stage\n1,I\n2,II\n3,III\n")
    with pytest.raises(DataError, match="'stage' has 3 different values in 3 rows.*exactly two"):
        load_table(p, TableSpec(target="stage"))


def test_positive_value_cannot_be_guessed(tmp_path: Path) -> None:
    p = write(tmp_path, "a,arm\n1,drug\n2,placebo\n")
    with pytest.raises(DataError, match="cannot tell which value .*'drug' or 'placebo'.*--positive"):
        load_table(p, TableSpec(target="arm"))
    assert load_table(p, TableSpec(target="arm", positive="drug")).binary_target.values.tolist() == [1, 0]


def test_positive_value_not_in_target(tmp_path: Path) -> None:
    p = write(tmp_path, "a,died\n1,yes\n2,no\n")
    with pytest.raises(DataError, match="positive value 'dead' is not one of .*'no', 'yes'"):
        load_table(p, TableSpec(target="died", positive="dead"))


def test_text_in_a_numeric_column(tmp_path: Path) -> None:
    p = numeric_csv(tmp_path, bad={4: "<0.5", 9: "high"})
    with pytest.raises(DataError) as e:
        load_table(p, TableSpec(target="outcome", id="id"))
    msg = str(e.value)
    assert "column 'lab'" in msg and "2 of its 20 filled cells are text" in msg
    assert "'<0.5' in data row 5 (line 6 of the file)" in msg


def test_mostly_text_column_is_categorical_not_an_error(tmp_path: Path) -> None:
    p = numeric_csv(tmp_path, bad={i: f"code{i}" for i in range(0, 20, 3)})
    ds = load_table(p, TableSpec(target="outcome", id="id"))
    assert ds.X["lab"].dtype == "category"


def test_target_listed_as_a_feature(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="target 'died' is also listed as a feature"):
        load_table(write(tmp_path, CSV), TableSpec(target="died", features=("age", "died")))


def test_empty_id(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="id column 'pid' is empty in 1 rows"):
        load_table(write(tmp_path, CSV.replace("p04,", ",")), TableSpec(target="died", id="pid"))


def test_spec_yaml_errors(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no spec file"):
        load_spec_yaml(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML at line 2: mapping values are not allowed"):
        load_spec_yaml(write(tmp_path, "table: a.csv\ntarget: y: z\n", "bad.yaml"))
    with pytest.raises(ConfigError, match="no 'table' entry"):
        load_spec_yaml(write(tmp_path, "target: y\n", "notable.yaml"))
    with pytest.raises(ConfigError, match="unknown entries: outcome"):
        load_spec_yaml(write(tmp_path, "table: a.csv\ntarget: y\noutcome: z\n", "unknown.yaml"))
    with pytest.raises(ConfigError, match="no 'target' entry"):
        load_spec_yaml(write(tmp_path, "table: a.csv\n", "notarget.yaml"))
    with pytest.raises(ConfigError, match="is empty"):
        load_spec_yaml(write(tmp_path, "", "empty.yaml"))


def test_spec_rejects_bad_types() -> None:
    with pytest.raises(ConfigError, match="target must be a column name"):
        TableSpec(target="")
    with pytest.raises(ConfigError, match="'features' must be a column name or a list"):
        TableSpec(target="y", features=(1, 2))  # type: ignore[arg-type]
    assert TableSpec(target="y", features=["a", "b"], sensitive="sex").features == ("a", "b")  # type: ignore[arg-type]


# ---- plausible ranges stated by the user ----


def test_yaml_plausible_ranges_reach_the_features_and_flag_values_outside(tmp_path: Path) -> None:
    from medml.data.task import implausible

    write(tmp_path, CSV.replace("p04,72,M,asian,1.4", "p04,72,M,asian,140"))
    spec_path = write(
        tmp_path,
        "table: cohort.csv\ntarget: died\nid: pid\nfeatures: [age, lactate]\nplausible: {lactate: [0, 30]}\n",
        "spec.yaml",
    )
    table_path, spec = load_spec_yaml(spec_path)
    ds = load_table(table_path, spec)
    specs = {f.name: f for f in ds.features}
    assert specs["lactate"].plausible == (0.0, 30.0) and specs["age"].plausible is None
    bad = implausible(ds.X, ds.features)
    assert list(bad) == ["lactate"]
    assert ds.X["lactate"][bad["lactate"]].tolist() == [140.0]  # the one value outside; NA is missing, not bad


def test_training_refuses_a_value_outside_the_users_range(tmp_path: Path) -> None:
    import subprocess
    import sys

    rows = ["id,lab,outcome", *(f"{i},{1 + i / 10:.1f},{i % 2}" for i in range(40))]
    rows[5] = "4,99,0"
    write(tmp_path, "\n".join(rows) + "\n", "labs.csv")
    spec = write(tmp_path, "table: labs.csv\ntarget: outcome\nid: id\nplausible: {lab: [0, 20]}\n", "spec.yaml")
    env = {"MEDML_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "medml.cli", "train", str(spec)], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 2, proc.stderr
    assert "lab: 1 value(s) outside 0-20" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "home" / "registry").exists() or not any((tmp_path / "home" / "registry").iterdir())


@pytest.mark.parametrize(
    ("plausible", "message"),
    [
        ("[0, 30]", "must map columns"),
        ("{lactate: [30, 0]}", "low < high"),
        ("{lactate: [0]}", "two finite numbers"),
        ("{lactate: [0, .inf]}", "two finite numbers"),
        ("{lactate: [a, b]}", "two finite numbers"),
        ("{potassium: [1, 9]}", "not a column"),
        ("{ward: [0, 1]}", "not a feature"),
    ],
)
def test_bad_plausible_ranges_are_refused(tmp_path: Path, plausible: str, message: str) -> None:
    write(tmp_path, CSV)
    spec_path = write(
        tmp_path,
        f"table: cohort.csv\ntarget: died\nid: pid\nfeatures: [age, lactate]\nplausible: {plausible}\n",
        "s.yaml",
    )
    with pytest.raises(ConfigError, match=message):
        table_path, spec = load_spec_yaml(spec_path)
        load_table(table_path, spec)


def test_a_range_for_a_text_feature_is_refused(tmp_path: Path) -> None:
    write(tmp_path, CSV)
    spec = TableSpec(target="died", id="pid", features=("age", "ward"), plausible={"ward": (0, 1)})
    with pytest.raises(ConfigError, match="holds text"):
        load_table(tmp_path / "cohort.csv", spec)
