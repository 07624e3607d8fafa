"""The errors a de-identification run can meet, each saying what was wrong and what to do."""

from __future__ import annotations

from medml.errors import DataError, InputFileError

RAISE_FIX = "fix the rule, or set processingErrors to skip to empty such resources and go on"


class InvalidResourceError(InputFileError):
    """Input that is not a FHIR R4 resource: not an object, no resourceType, or elements R4 does not define."""


class DeidProcessingError(DataError):
    """A rule could not be applied to a resource (processingErrors ``raise``)."""


class RuleNotApplicableError(DataError):
    """A rule whose method cannot apply to what its path selects (generalize on a complex element)."""


__all__ = ["RAISE_FIX", "DeidProcessingError", "InvalidResourceError", "RuleNotApplicableError"]
