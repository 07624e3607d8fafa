"""The real datasets medml ships adapters for, and a user's own tables.

Each adapter module maps its source to a :class:`~medml.data.Cohort`, defines its task as one function with a
clinical name (``readmission_within``, ``in_hospital_death``, ...) and documents who is in it, the index time,
the outcome and the exclusions in its docstring. The files are read in place from the shared data folder
(``get_settings().data_root``, ``MEDML_DATA``); nothing is downloaded or copied.

Across the adapters: sex is a feature where the data has it (a biological covariate); race/ethnicity never is,
and stays in ``sensitive`` for the fairness audit; age bands are "<40", "40-59", "60-79", "80+" ("Unknown"
when missing).

The catalogue of these datasets, each with its loader and serving contract, is :mod:`medml.pipelines.catalogue`:
it also names the FHIR reading of PhysioNet 2012, which sits above this package.
"""

from __future__ import annotations

from medml.data.datasets._tableio import read_table
from medml.data.datasets.table import TableSpec, load_spec_yaml, load_table

__all__ = ["TableSpec", "load_spec_yaml", "load_table", "read_table"]
