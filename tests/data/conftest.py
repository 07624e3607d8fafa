"""Fixtures for the data tests: each real dataset is loaded once per session, from ../shared/data in place."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from medml.config import get_settings
from medml.data import Cohort, TaskDataset


@pytest.fixture(scope="session", autouse=True)
def medml_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh MEDML_HOME, so that caches never land in the checkout."""
    home = tmp_path_factory.mktemp("medml-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDML_HOME", str(home))
        yield home


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = get_settings().data_root
    if not (root / "tabular").is_dir():
        pytest.skip(f"the shared real data is not at {root} (set MEDML_DATA)")
    return root


@pytest.fixture(scope="session")
def diabetes_cohort(data_root: Path) -> Cohort:
    from medml.data.datasets import diabetes130

    return diabetes130.load_cohort(data_root)


@pytest.fixture(scope="session")
def diabetes(diabetes_cohort: Cohort) -> TaskDataset:
    from medml.data.datasets import diabetes130

    return diabetes130.readmission_within(diabetes_cohort, days=30)


@pytest.fixture(scope="session")
def support2(data_root: Path) -> TaskDataset:
    from medml.data.datasets import support2

    return support2.load(data_root)


@pytest.fixture(scope="session")
def physionet_cohort(data_root: Path) -> Cohort:
    from medml.data.datasets import physionet2012

    return physionet2012.load_cohort(data_root)


@pytest.fixture(scope="session")
def physionet(physionet_cohort: Cohort) -> TaskDataset:
    from medml.data.datasets import physionet2012

    return physionet2012.in_hospital_death(physionet_cohort, hours=48)


@pytest.fixture(scope="session")
def heart(data_root: Path) -> dict[str, TaskDataset]:
    from medml.data.datasets import uci_heart

    return {f"heart-{site}": uci_heart.load(site, data_root) for site in ("cleveland", "hungary", "switzerland", "va")}


@pytest.fixture(scope="session")
def pima(data_root: Path) -> TaskDataset:
    from medml.data.datasets import pima

    return pima.load(data_root)


@pytest.fixture(scope="session")
def all_datasets(
    diabetes: TaskDataset,
    support2: TaskDataset,
    physionet: TaskDataset,
    heart: dict[str, TaskDataset],
    pima: TaskDataset,
) -> dict[str, TaskDataset]:
    return {"diabetes-130": diabetes, "support2": support2, "physionet-2012": physionet, **heart, "pima": pima}
