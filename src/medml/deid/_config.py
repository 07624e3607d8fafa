"""The configuration format of Microsoft's FHIR Tools for Anonymization, read and checked once at load.

``fhirVersion`` (empty or R4), ``processingErrors`` (raise or skip), ``fhirPathRules`` (path, method and the
method's settings) and ``parameters`` (keys, date-shift scope, Safe Harbor's partial redaction). Anything wrong,
from an unknown method to a path that does not parse or a key that a method needs but the file does not give,
is a :class:`medml.errors.ConfigError` naming the rule.

medml's own parameters, which the anonymizer does not know: ``dateShiftScope: patient`` (one shift per patient,
from HMAC of the patient's id under the key, so that intervals within a patient's record hold across resources
and files; see :mod:`medml.deid._patients`), ``dateShiftKeepTime`` (shifted dateTimes keep their time of day)
and ``requiredElementsDataAbsentReason``.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from medml.deid._fhirpath import FhirPathSyntaxError, Node, parse
from medml.errors import ConfigError

METHODS = ("redact", "keep", "dateshift", "cryptohash", "encrypt", "substitute", "perturb", "generalize")
#: environment variables that give a key the configuration leaves empty (keys belong outside files)
KEY_VARIABLES = {
    "dateShiftKey": "MEDML_DEID_DATE_SHIFT_KEY",
    "cryptoHashKey": "MEDML_DEID_CRYPTO_HASH_KEY",
    "encryptKey": "MEDML_DEID_ENCRYPT_KEY",
}
#: the codes of http://terminology.hl7.org/CodeSystem/data-absent-reason that fit a value removed on purpose
DATA_ABSENT_REASONS = ("masked", "unknown", "not-applicable", "asked-declined")
_RESOURCE_PREFIX = re.compile(r"^(?P<type>[A-Z][a-zA-Z]*)?(\.)?(?P<expression>.*?)$", re.DOTALL)


@dataclass(frozen=True)
class Parameters:
    """The configuration's ``parameters``, keys resolved (from the file, else the environment)."""

    date_shift_key: str = ""
    date_shift_scope: Literal["resource", "file", "folder", "patient"] = "resource"
    date_shift_fixed_offset: int | None = None
    date_shift_keep_time: bool = False  # medml's: shifted dateTimes keep their time of day
    crypto_hash_key: str = ""
    encrypt_key: str = ""
    partial_ages: bool = False
    partial_dates: bool = False
    partial_zip_codes: bool = False
    restricted_zip_areas: tuple[str, ...] = ()
    required_data_absent_reason: str = ""  # medml's: a code to mark required elements the rules emptied


@dataclass(frozen=True)
class Rule:
    """One of ``fhirPathRules``: its position (earlier rules win), path, method and parsed settings.

    ``resource_type`` is the type the path starts with (``Patient.name`` -> ``Patient``; empty for
    ``nodesByType(...)``); ``expression`` the rest, evaluated on a resource of that type.
    """

    index: int
    path: str
    method: str  # lower case, one of METHODS
    resource_type: str
    expression: str
    tree: Node
    replace_with: Any = None
    span: float = 0.0
    proportional: bool = False
    round_to: int | None = None
    cases: tuple[tuple[Node, Node, str], ...] = ()
    other_values_redact: bool = True

    @property
    def whole_resource(self) -> bool:
        """A path that is only a resource type (``Resource``, ``Patient``): the rule takes the whole resource."""
        return self.path == self.resource_type


@dataclass(frozen=True)
class DeidConfig:
    """A loaded, checked anonymizer configuration."""

    rules: tuple[Rule, ...]
    parameters: Parameters
    skip_processing_errors: bool = False
    fhir_version: str = ""
    source: str = ""
    generated_keys: tuple[str, ...] = field(default=())


def load_config(path: Path, *, generate_missing_keys: bool = False) -> DeidConfig:
    """Read and check a configuration file; see :func:`parse_config`."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"the configuration {path} does not exist", "give the path of an anonymizer JSON file"
        ) from None
    except OSError as e:
        raise ConfigError(f"cannot read the configuration {path}: {e.strerror}", "check its permissions") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ConfigError(f"the configuration {path} is not JSON ({e})", "fix the file's JSON syntax") from None
    return parse_config(data, source=str(path), generate_missing_keys=generate_missing_keys)


def parse_config(data: Any, *, source: str = "configuration", generate_missing_keys: bool = False) -> DeidConfig:
    """Check a configuration (parsed JSON) against the anonymizer's format and compile its paths.

    A key that a rule's method needs (cryptoHashKey for cryptoHash, encryptKey for encrypt) and neither the file
    nor its environment variable gives is an error: a random key, the anonymizer's default, would make every run's
    pseudonyms differ and encrypted values unreadable. With ``generate_missing_keys`` (the conformance runner, to
    mirror the anonymizer), a random key is used instead and named in ``generated_keys``.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source} is not a JSON object", "give an anonymizer configuration object")
    version = data.get("fhirVersion") or ""
    if not isinstance(version, str) or (version and version.upper() != "R4"):
        raise ConfigError(
            f"{source}: fhirVersion {version!r} is not supported", "set fhirVersion to R4 or leave it out"
        )
    errors = data.get("processingErrors", "raise")
    if not isinstance(errors, str) or errors.lower() not in ("raise", "skip"):
        raise ConfigError(
            f"{source}: processingErrors {errors!r} is not one the anonymizer defines",
            "use raise (stop at the first failure) or skip (an emptied resource in its place)",
        )
    raw_rules = data.get("fhirPathRules")
    if not isinstance(raw_rules, list):
        raise ConfigError(f"{source} has no fhirPathRules list", "add fhirPathRules: a list of {path, method} rules")
    rules = tuple(_rule(i, r, source) for i, r in enumerate(raw_rules))
    parameters, generated = _parameters(data.get("parameters"), rules, source, generate_missing_keys)
    return DeidConfig(rules, parameters, errors.lower() == "skip", version, source, generated)


def _where(source: str, index: int, path: object) -> str:
    return f"{source}: rule {index + 1} ({path})"


def _compile(text: str, where: str, what: str) -> Node:
    try:
        return parse(text)
    except FhirPathSyntaxError as e:
        raise ConfigError(f"{where}: {what} {text!r} is not valid FHIRPath ({e})", "correct the expression") from None


def _rule(index: int, raw: Any, source: str) -> Rule:
    if not isinstance(raw, dict) or "path" not in raw or "method" not in raw:
        raise ConfigError(f"{source}: rule {index + 1} lacks a path or a method", "give each rule a path and a method")
    path, method = raw["path"], raw["method"]
    where = _where(source, index, path)
    if not isinstance(path, str) or not isinstance(method, str):
        raise ConfigError(f"{where}: path and method must be strings", "write them as JSON strings")
    if method.lower() not in METHODS:
        raise ConfigError(
            f"{where}: unknown method {method!r}",
            "use one of redact, keep, dateShift, cryptoHash, encrypt, substitute, perturb, generalize",
        )
    tree = _compile(path, where, "path")
    m = _RESOURCE_PREFIX.match(path)
    resource_type = (m.group("type") or "") if m else ""
    expression = (m.group("expression") if m else "") or path
    if expression != path:
        tree = _compile(expression, where, "path")
    settings: dict[str, Any] = {}
    kind = method.lower()
    if kind == "substitute":
        if "replaceWith" not in raw:
            raise ConfigError(f"{where}: a substitute rule needs replaceWith", "add the value to put in its place")
        settings["replace_with"] = raw["replaceWith"]
    elif kind == "perturb":
        settings.update(_perturb_settings(raw, where))
    elif kind == "generalize":
        settings.update(_generalize_settings(raw, where))
    return Rule(index, path, kind, resource_type, expression, tree, **settings)


def _perturb_settings(raw: dict[str, Any], where: str) -> dict[str, Any]:
    span = raw.get("span")
    if span is None:
        raise ConfigError(f"{where}: a perturb rule needs span", "add span, the width of the noise (0 or more)")
    try:
        span = float(span)
    except (TypeError, ValueError):
        span = -1.0
    if not span >= 0:
        raise ConfigError(f"{where}: span {raw.get('span')!r} is not a number of 0 or more", "give a span >= 0")
    round_to = raw.get("roundTo")
    if round_to is not None:
        ok = isinstance(round_to, int | str) and str(round_to).lstrip("-").isdigit() and 0 <= int(round_to) <= 28
        if not ok:
            raise ConfigError(f"{where}: roundTo {round_to!r} is not a whole number 0-28", "give roundTo in 0..28")
        round_to = int(round_to)
    range_type = str(raw.get("rangeType", "fixed")).lower()
    if range_type not in ("fixed", "proportional"):
        raise ConfigError(f"{where}: rangeType {raw.get('rangeType')!r} is unknown", "use fixed or proportional")
    return {"span": span, "round_to": round_to, "proportional": range_type == "proportional"}


def _generalize_settings(raw: dict[str, Any], where: str) -> dict[str, Any]:
    cases = raw.get("cases")
    if not isinstance(cases, dict):
        raise ConfigError(f"{where}: a generalize rule needs cases", "add cases: {condition: value expression}")
    compiled = tuple(
        (_compile(cond, where, "case"), _compile(str(value), where, "case value"), cond)
        for cond, value in cases.items()
    )
    other = str(raw.get("otherValues", "redact")).lower()
    if other not in ("redact", "keep"):
        raise ConfigError(f"{where}: otherValues {raw.get('otherValues')!r} is unknown", "use redact or keep")
    return {"cases": compiled, "other_values_redact": other == "redact"}


def _flag(params: dict[str, Any], name: str, source: str) -> bool:
    value = params.get(name, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{source}: parameters.{name} {value!r} is not true or false", "write true or false")
    return value


def _parameters(raw: Any, rules: tuple[Rule, ...], source: str, generate: bool) -> tuple[Parameters, tuple[str, ...]]:
    params: dict[str, Any] = raw if isinstance(raw, dict) else {}
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{source}: parameters is not an object", "write parameters as a JSON object")
    used = {r.method for r in rules}
    keys: dict[str, str] = {}
    generated: list[str] = []
    for name, variable in KEY_VARIABLES.items():
        value = params.get(name) or os.environ.get(variable, "")
        if not isinstance(value, str):
            raise ConfigError(f"{source}: parameters.{name} is not a string", "write the key as a JSON string")
        method = {"dateShiftKey": "dateshift", "cryptoHashKey": "cryptohash", "encryptKey": "encrypt"}[name]
        if not value and method in used:
            if generate or name == "dateShiftKey":
                value = secrets.token_hex(16)  # 32 characters: also a valid 256-bit AES key
                generated.append(name)
            else:
                label = {"cryptohash": "cryptoHash", "encrypt": "encrypt"}[method]
                raise ConfigError(
                    f"{source} uses {label} but gives no {name}",
                    f"set parameters.{name} in the file or the environment variable {variable}",
                )
        keys[name] = value
    if keys["encryptKey"] and len(keys["encryptKey"].encode("utf-8")) not in (16, 24, 32):
        bits = len(keys["encryptKey"].encode("utf-8")) * 8
        raise ConfigError(
            f"{source}: encryptKey is {bits} bits long", "give a key of 128, 192 or 256 bits (16, 24 or 32 bytes)"
        )
    scope = str(params.get("dateShiftScope", "resource")).lower()
    if scope not in ("resource", "file", "folder", "patient"):
        raise ConfigError(
            f"{source}: dateShiftScope {scope!r} is unknown",
            "use resource, file or folder (the anonymizer's) or patient (medml's: one shift per patient)",
        )
    fixed = params.get("dateShiftFixedOffsetInDays")
    if fixed is not None and (isinstance(fixed, bool) or not isinstance(fixed, int)):
        raise ConfigError(f"{source}: dateShiftFixedOffsetInDays {fixed!r} is not a whole number", "give days")
    areas = params.get("restrictedZipCodeTabulationAreas") or []
    if not isinstance(areas, list) or not all(isinstance(a, str) for a in areas):
        raise ConfigError(
            f"{source}: restrictedZipCodeTabulationAreas is not a list of strings", 'write e.g. ["036", "059"]'
        )
    absent = params.get("requiredElementsDataAbsentReason") or ""
    if absent not in ("", *DATA_ABSENT_REASONS):
        raise ConfigError(
            f"{source}: requiredElementsDataAbsentReason {absent!r} is not a data-absent-reason code",
            f"use one of {', '.join(DATA_ABSENT_REASONS)}",
        )
    parameters = Parameters(
        date_shift_key=keys["dateShiftKey"],
        date_shift_scope=scope,  # type: ignore[arg-type]
        date_shift_fixed_offset=fixed,
        crypto_hash_key=keys["cryptoHashKey"],
        encrypt_key=keys["encryptKey"],
        date_shift_keep_time=_flag(params, "dateShiftKeepTime", source),
        partial_ages=_flag(params, "enablePartialAgesForRedact", source),
        partial_dates=_flag(params, "enablePartialDatesForRedact", source),
        partial_zip_codes=_flag(params, "enablePartialZipCodesForRedact", source),
        restricted_zip_areas=tuple(areas),
        required_data_absent_reason=absent,
    )
    return parameters, tuple(generated)


__all__ = ["KEY_VARIABLES", "METHODS", "DeidConfig", "Parameters", "Rule", "load_config", "parse_config"]
