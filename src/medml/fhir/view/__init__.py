"""SQL-on-FHIR v2 ViewDefinitions compiled to one set-based SQL query and run inside DuckDB.

``compile_view`` gives the SQL (through a dialect, DuckDB by default) and the output columns; ``run_view`` runs it on
a DuckDB connection holding the ``resources`` table of :class:`medml.fhir.store.FhirStore`; ``validate_view`` checks
a view against the specification's rules and raises :class:`InvalidViewError` with the reason; a valid view whose
data break a rule the specification names raises :class:`ViewEvaluationError` when it runs.
"""

from __future__ import annotations

from medml.fhir.view._compile import CompiledView, ViewColumn, compile_view, validate_view
from medml.fhir.view._errors import DialectLimitError, InvalidViewError, ViewEvaluationError
from medml.fhir.view._run import run_view

__all__ = [
    "CompiledView",
    "DialectLimitError",
    "InvalidViewError",
    "ViewColumn",
    "ViewEvaluationError",
    "compile_view",
    "run_view",
    "validate_view",
]
