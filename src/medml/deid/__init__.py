"""De-identification of FHIR R4 data with the configuration format of Microsoft's FHIR Tools for Anonymization.

:func:`load_config` reads and checks a configuration; :class:`Anonymizer` applies it to resources (a Bundle's
entries and contained resources each under their own rules); :func:`deidentify_path` runs it over files and
folders; :func:`verify` searches an output for the identifying values of its original and reports k-anonymity.
``built_in_config("safe-harbor")`` is medml's Safe Harbor configuration.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from medml.deid._config import DeidConfig, Parameters, Rule, load_config, parse_config
from medml.deid._conformance import CaseResult, run_cases
from medml.deid._engine import Anonymizer
from medml.deid._errors import DeidProcessingError, InvalidResourceError, RuleNotApplicableError
from medml.deid._io import RunSummary, deidentify_path
from medml.deid._verify import KAnonymity, ReferenceCheck, Residual, VerificationReport, verify

BUILT_IN_CONFIGS = ("safe-harbor",)


def built_in_config(name: str) -> Path:
    """The path of a configuration that ships with medml (``safe-harbor``)."""
    if name not in BUILT_IN_CONFIGS:
        raise ValueError(f"no built-in configuration {name!r}; there are: {', '.join(BUILT_IN_CONFIGS)}")
    return Path(str(resources.files("medml.deid").joinpath("configs", f"{name}.json")))


__all__ = [
    "BUILT_IN_CONFIGS",
    "Anonymizer",
    "CaseResult",
    "DeidConfig",
    "DeidProcessingError",
    "InvalidResourceError",
    "KAnonymity",
    "Parameters",
    "ReferenceCheck",
    "Residual",
    "Rule",
    "RuleNotApplicableError",
    "RunSummary",
    "VerificationReport",
    "built_in_config",
    "deidentify_path",
    "load_config",
    "parse_config",
    "run_cases",
    "verify",
]
