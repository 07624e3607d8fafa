"""The error an invalid ViewDefinition raises."""

from __future__ import annotations

from medml.errors import ConfigError


class InvalidViewError(ConfigError):
    """A ViewDefinition the specification rejects: a missing resource, a bad FHIRPath, clashing columns."""
