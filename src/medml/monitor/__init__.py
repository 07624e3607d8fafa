"""Watching models in production: the service's prediction records, read back for drift and performance checks.

Importing this package imports nothing heavy (pandas loads only in :meth:`PredictionLog.frame`).
"""

from medml.monitor.records import InputSummary, PredictionLog, PredictionRecord, summarize_inputs

__all__ = ["InputSummary", "PredictionLog", "PredictionRecord", "summarize_inputs"]
