"""The same views, features and scoring on Apache Spark (PySpark, imported only where used).

``spark_session`` starts a checked session; ``run_view_spark`` runs a ViewDefinition through the compiler's Spark
dialect; ``ingest_ndjson`` writes NDJSON to Parquet partitioned by resource type; ``build_features_spark`` builds a
FeatureDefinition's features with the same SQL as DuckDB; ``score_spark`` scores a registered model with mapInPandas.
"""

from __future__ import annotations

from medml.scale._session import check_master, java_executable, require_pyspark, spark_session
from medml.scale.views import SparkEngine, run_view_spark

__all__ = [
    "SparkEngine",
    "check_master",
    "java_executable",
    "require_pyspark",
    "run_view_spark",
    "spark_session",
]
