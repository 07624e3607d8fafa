"""One SparkSession for every Spark test: local[2] (CI's two cores), two shuffle partitions, started once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    pytest.importorskip("pyspark", reason="the Spark extra is not installed (pip install -e '.[spark]')")
    from medml.scale import spark_session

    session = spark_session("local[2]", shuffle_partitions=2, app_name="medml-tests")
    yield session
    session.stop()
