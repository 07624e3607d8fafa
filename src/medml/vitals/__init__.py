"""Vital signs: early warning scores (NEWS2, qSOFA) and a streaming monitor of FHIR vital-sign Observations.

Decision support, not a diagnosis: every result names the score and its version (``NEWS2``, ``RCP 2017``; ``qSOFA``,
``Sepsis-3``), and a missing or stale parameter is named, never scored as normal.
"""

from medml.vitals.news2 import NEWS2Result, news2
from medml.vitals.qsofa import QSOFAResult, qsofa
from medml.vitals.signs import Reading, VitalSigns, as_of
from medml.vitals.stream import Assessment, EarlyWarningStream, StreamConfig

__all__ = [
    "Assessment",
    "EarlyWarningStream",
    "NEWS2Result",
    "QSOFAResult",
    "Reading",
    "StreamConfig",
    "VitalSigns",
    "as_of",
    "news2",
    "qsofa",
]
