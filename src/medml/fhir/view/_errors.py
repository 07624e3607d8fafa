"""The errors of the view engine: a view the specification rejects, and a view the data make fail for a named reason."""

from __future__ import annotations

from dataclasses import dataclass

from medml.errors import ConfigError, DataError


class InvalidViewError(ConfigError):
    """A ViewDefinition the specification rejects: a missing resource, a bad FHIRPath, clashing columns."""


class ViewEvaluationError(DataError):
    """A valid view that fails on the data for a reason the specification names.

    Two such reasons: several values for a column that is not a ``collection`` ("Multiple values found but not
    expected for column", the processing algorithm), and a ``where`` path whose value is not a boolean.
    """


class DialectLimitError(ConfigError):
    """A valid view that one SQL engine's dialect cannot compute faithfully (another engine can)."""


@dataclass(frozen=True)
class RuntimeCheck:
    """An error the compiled SQL raises on the data for a reason the specification names: its message, what to do.

    The message is unique to the check, so :func:`medml.fhir.view.run_view` can tell this error from other failures.
    """

    message: str
    fix: str
