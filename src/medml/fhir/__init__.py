"""FHIR R4: a DuckDB store, Bundle and Bulk Data NDJSON ingest, and a SQL-on-FHIR v2 ViewDefinition engine."""
