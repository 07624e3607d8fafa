"""The catalogue of real datasets: its keys and sources, its errors, and the serving contract a task declares."""

from __future__ import annotations

from pathlib import Path

import pytest

from medml.config import get_settings
from medml.errors import InputFileError, NotFoundError
from medml.fhir.features import ServingSpec
from medml.fhir.tasks import physionet_serving
from medml.pipelines.catalogue import DatasetInfo, dataset_summary, list_datasets, load_dataset

KEYS = [
    "diabetes-130",
    "support2",
    "physionet-2012",
    "physionet-2012-fhir",
    "physionet-2012-ews",
    "heart-cleveland",
    "heart-hungary",
    "heart-switzerland",
    "heart-va",
    "pima",
]


@pytest.fixture(scope="module")
def data_root() -> Path:
    root = get_settings().data_root
    if not (root / "tabular").is_dir():
        pytest.skip(f"the shared real data is not at {root} (set MEDML_DATA)")
    return root


def test_catalogue_lists_the_keys_with_sources_under_the_data_root(data_root: Path) -> None:
    infos = list_datasets()
    assert [i.key for i in infos] == KEYS
    assert all(isinstance(i, DatasetInfo) and i.title and i.task and i.outcome for i in infos)
    for info in infos:
        assert (data_root / info.source).is_file(), info.source
    by_key = {i.key: i for i in infos}
    assert by_key["heart-cleveland"].external == ("heart-hungary", "heart-switzerland", "heart-va")
    assert all(by_key[k].external == () for k in KEYS if k != "heart-cleveland")


def test_unknown_key_lists_the_valid_ones() -> None:
    with pytest.raises(NotFoundError) as e:
        load_dataset("mimic-iv")
    assert "mimic-iv" in str(e.value)
    assert all(k in str(e.value) for k in KEYS)


def test_missing_data_root_names_the_path(tmp_path: Path) -> None:
    gone = tmp_path / "no-such-shared-data"
    with pytest.raises(InputFileError) as e:
        load_dataset("pima", data_root=gone)
    assert str(gone) in str(e.value) and "MEDML_DATA" in str(e.value)


def test_missing_source_file_names_it(tmp_path: Path) -> None:
    (tmp_path / "tabular").mkdir()
    with pytest.raises(InputFileError) as e:
        load_dataset("support2", data_root=tmp_path)
    assert "support2.csv.gz" in str(e.value)


def test_summary_reports_rows_patients_prevalence(data_root: Path) -> None:
    s = dataset_summary("pima", data_root)
    assert s == {"rows": 768, "patients": 768, "prevalence": pytest.approx(268 / 768), "task": s["task"]}
    assert "diabetes" in s["task"]


def test_only_physionet_declares_a_fhir_reading_and_its_task_carries_it(data_root: Path) -> None:
    served = {i.key for i in list_datasets() if i.serving is not None}
    assert served == {"physionet-2012", "physionet-2012-fhir"}
    assert load_dataset("pima", data_root).serving is None
    spec = load_dataset("physionet-2012", data_root).serving
    assert isinstance(spec, ServingSpec) and spec == physionet_serving(48)
    assert (spec.anchor, spec.hours, spec.encounter_classes) == ("encounter-start", 48, ("IMP", "ACUTE", "ICU"))
