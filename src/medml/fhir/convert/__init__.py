"""Converters from public datasets to FHIR R4 resources (Patient, Encounter, Observation) and Bulk Data NDJSON."""

from medml.fhir.convert.physionet2012 import (
    MAPPINGS,
    StayOutcome,
    VariableMap,
    convert_record,
    mapping_markdown,
    read_outcomes,
    stay_bundle,
    write_ndjson,
)

__all__ = [
    "MAPPINGS",
    "StayOutcome",
    "VariableMap",
    "convert_record",
    "mapping_markdown",
    "read_outcomes",
    "stay_bundle",
    "write_ndjson",
]
