"""A FeatureDefinition's features on Spark: the SQL of :func:`medml.fhir.features.feature_queries` in the Spark
dialect, then the same assembly as on DuckDB, so both engines build the same training set."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pandas as pd

from medml.fhir.features import (
    BuiltFeatures,
    FeatureDefinition,
    assemble_features,
    feature_queries,
    index_frame,
    index_table,
    measure_table,
)
from medml.scale._session import pandas_interop
from medml.scale.views import RESOURCES

_TABLES = ("_medml_index", "_medml_measures", "_medml_matched", RESOURCES)


def build_features_spark(
    spark: Any,
    resources: Any,
    definition: FeatureDefinition,
    index_times: Mapping[str, datetime] | pd.Series,
) -> BuiltFeatures:
    """The definition's features for each patient at their index time, from a Spark table of resources
    (resource_type, id, resource JSON text; see :func:`medml.scale.ingest.load_resources`)."""
    index = index_frame(index_times)
    queries = feature_queries(definition, dialect="spark")
    resources.createOrReplaceTempView(RESOURCES)
    with pandas_interop():
        spark.createDataFrame(index_table(index)).createOrReplaceTempView("_medml_index")
        spark.createDataFrame(measure_table(definition)).createOrReplaceTempView("_medml_measures")
    matched = spark.sql(queries.matched).cache()
    try:
        with pandas_interop():  # results come back through Arrow (PySpark's toPandas trips pandas 3 warnings)
            matched.createOrReplaceTempView("_medml_matched")
            long = spark.sql(queries.aggregate).toArrow().to_pandas()
            units = spark.sql(queries.dropped_units).toArrow().to_pandas()
            implausible = spark.sql(queries.dropped_implausible).toArrow().to_pandas()
            demo = spark.sql(queries.demographics).toArrow().to_pandas() if definition.age or definition.sex else None
    finally:
        matched.unpersist()
        for name in _TABLES:
            spark.catalog.dropTempView(name)
    return assemble_features(definition, index, long, units, implausible, demo)
