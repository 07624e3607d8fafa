"""The methods applied to one primitive value, with their parameters, random source and memos: the same id,
date or generalized value recurs across a dataset, so each is computed once."""

from __future__ import annotations

import random
from datetime import date
from decimal import Decimal
from typing import Any

from medml.deid import _methods as m
from medml.deid._config import Parameters, Rule
from medml.deid._errors import RAISE_FIX, DeidProcessingError
from medml.deid._fhirpath import FhirPathEvaluationError, Item, boolean, evaluate, plain
from medml.deid._model import DATE_TYPES, NUMERIC_TYPES
from medml.deid._plan import INF, Position
from medml.deid._values import FhirTemporal

_V3 = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
REDACT, ABSTRACT, CRYPTOHASH, ENCRYPT, PERTURB, SUBSTITUTE, GENERALIZE = (1 << i for i in range(7))
#: the security labels the anonymizer adds to ``meta.security``, in its order
SECURITY_LABELS: tuple[tuple[int, dict[str, str]], ...] = (
    (REDACT, {"system": _V3, "code": "REDACTED", "display": "redacted"}),
    (ABSTRACT, {"system": _V3, "code": "ABSTRED", "display": "abstracted"}),
    (CRYPTOHASH, {"system": _V3, "code": "CRYTOHASH", "display": "cryptographic hash function"}),
    (ENCRYPT, {"system": _V3, "code": "MASKED", "display": "masked"}),
    (PERTURB, {"code": "PERTURBED", "display": "exact value is replaced with another exact value"}),
    (SUBSTITUTE, {"code": "SUBSTITUTED", "display": "exact value is replaced with a predefined value"}),
    (GENERALIZE, {"code": "GENERALIZED", "display": "exact value is replaced with a general value"}),
)
_MEMO_LIMIT = 200_000
_MISSING = object()


class RunState:
    """What one top-level element's processing needs to carry: prefixes for date shifting and the id read."""

    __slots__ = ("file_name", "folder_name", "patient", "root_id", "root_id_final", "root_id_winner")

    def __init__(self, file_name: str, folder_name: str) -> None:
        self.file_name = file_name
        self.folder_name = folder_name
        self.patient = ""  # dateShiftScope patient: the key of the patient whose record this is
        self.root_id = ""
        self.root_id_final = ""
        self.root_id_winner = INF


class Methods:
    """The per-value methods of one configuration's parameters (see :mod:`medml.deid._methods`)."""

    def __init__(self, params: Parameters, today: date, rng: random.Random) -> None:
        self.params = params
        self.today = today
        self.rng = rng
        self._hashes: dict[str, str] = {}
        self._references: dict[str, str] = {}
        self._offsets: dict[str, int] = {}
        self._patient_offsets: dict[str, int] = {}
        self._shifts: dict[tuple[str, str, int], tuple[str | None, bool]] = {}
        self._generalized: dict[tuple[int, str, Any], Any] = {}
        self._aes_key = params.encrypt_key.encode("utf-8")
        self._keyed_hash = m.KeyedHash(params.crypto_hash_key)

    def apply(self, value: Any, pos: Position, rule: Rule, w: int, run: RunState, ops: list[int], depth: int) -> Any:
        """A primitive's value after the method of ``rule`` (None: removed); the operation done goes to ``ops``."""
        method = rule.method
        if method == "keep":
            return value
        if method == "generalize":
            return self._generalize(value, pos, rule, ops)
        if method == "perturb":
            if pos.type in NUMERIC_TYPES and isinstance(value, int | float) and not isinstance(value, bool):
                ops[0] |= PERTURB
                round_to = rule.round_to if rule.round_to is not None else 2
                return m.perturb(value, pos.type, rule.span, rule.proportional, round_to, self.rng)
            return value
        if value == "":
            return value
        p = self.params
        if method == "redact":
            fhir_type = pos.type
            if fhir_type in DATE_TYPES and isinstance(value, str):
                ops[0] |= REDACT
                return m.redact_date(value, fhir_type, p.partial_dates, self.today)
            if fhir_type == "decimal" and pos.parent is not None and pos.parent.type == "Age":
                ops[0] |= REDACT
                return m.redact_age(value, p.partial_ages) if isinstance(value, int | float) else None
            if pos.name == "postalCode" and isinstance(value, str):
                ops[0] |= ABSTRACT if p.partial_zip_codes else REDACT
                return m.redact_postal_code(value, p.partial_zip_codes, p.restricted_zip_areas)
            ops[0] |= REDACT
            return None
        if method == "dateshift":
            if pos.type not in DATE_TYPES or not isinstance(value, str):
                return value
            shift = p.date_shift_fixed_offset
            if shift is None:
                if p.date_shift_scope == "patient":
                    shift = self._patient_offset(run.patient)
                else:
                    shift = self._offset(self._prefix(run, w, depth))
            memo = (value, pos.type, shift)
            done = self._shifts.get(memo)
            if done is None:
                if len(self._shifts) > _MEMO_LIMIT:
                    self._shifts.clear()
                done = self._shifts[memo] = m.shift_date(
                    value, pos.type, shift, p.partial_dates, self.today, p.date_shift_keep_time
                )
            ops[0] |= PERTURB if done[1] else REDACT
            return done[0]
        text = m.as_text(value)
        if method == "cryptohash":
            ops[0] |= CRYPTOHASH
            if _is_reference(pos):
                ref = self._references.get(text)
                if ref is None:
                    if len(self._references) > _MEMO_LIMIT:
                        self._references.clear()
                    ref = self._references[text] = m.transform_reference(text, self._hash)
                return ref
            return self._hash(text)
        if method == "encrypt":
            ops[0] |= ENCRYPT
            return m.encrypt(text, self._aes_key)
        return value

    def shift_for_patient(self, value: str, fhir_type: str, patient: str, ops: list[int]) -> str | None:
        """:meth:`apply`'s dateShift of a non-empty date string under ``dateShiftScope`` patient without a fixed
        offset, for a caller that has checked those (the compiled walk)."""
        shift = self._patient_offsets.get(patient)
        if shift is None:
            shift = self._patient_offset(patient)
        memo = (value, fhir_type, shift)
        done = self._shifts.get(memo)
        if done is None:
            if len(self._shifts) > _MEMO_LIMIT:
                self._shifts.clear()
            p = self.params
            done = self._shifts[memo] = m.shift_date(
                value, fhir_type, shift, p.partial_dates, self.today, p.date_shift_keep_time
            )
        ops[0] |= PERTURB if done[1] else REDACT
        return done[0]

    def hash_value(self, text: str, pos: Position) -> str:
        """cryptoHash of a string: a reference's id part only, anything else whole (both memoised)."""
        memo = self._references if _is_reference(pos) else self._hashes
        h = memo.get(text)
        if h is None:
            if len(memo) > _MEMO_LIMIT:
                memo.clear()
            h = m.transform_reference(text, self._hash) if memo is self._references else self._keyed_hash(text)
            memo[text] = h
        return h

    def hash_memo(self, pos: Position) -> dict[str, str]:
        """The memo :meth:`hash_value` keeps the hashes of ``pos``'s values in (value -> hash)."""
        return self._references if _is_reference(pos) else self._hashes

    def _hash(self, text: str) -> str:
        h = self._hashes.get(text)
        if h is None:
            if len(self._hashes) > _MEMO_LIMIT:
                self._hashes.clear()
            h = self._hashes[text] = self._keyed_hash(text)
        return h

    def _offset(self, prefix: str) -> int:
        o = self._offsets.get(prefix)
        if o is None:
            if len(self._offsets) > _MEMO_LIMIT:
                self._offsets.clear()
            o = self._offsets[prefix] = m.date_shift_offset(prefix, self.params.date_shift_key)
        return o

    def _patient_offset(self, patient: str) -> int:
        o = self._patient_offsets.get(patient)
        if o is None:
            if len(self._patient_offsets) > _MEMO_LIMIT:
                self._patient_offsets.clear()
            o = self._patient_offsets[patient] = m.patient_shift_offset(patient, self.params.date_shift_key)
        return o

    def _prefix(self, run: RunState, w: int, depth: int) -> str:
        scope = self.params.date_shift_scope
        if scope == "file" and run.file_name:
            return run.file_name
        if scope == "folder" and run.folder_name:
            return run.folder_name
        # scope resource: the id of the outermost resource as it stands when this rule runs (the anonymizer reads
        # the topmost node's id: a Bundle's for its entries), changed by a rule before this one or not
        if depth > 0 or run.root_id_winner < w:
            return run.root_id_final
        return run.root_id

    def _generalize(self, value: Any, pos: Position, rule: Rule, ops: list[int]) -> Any:
        """The first case whose condition holds gives the new value (cases see only the value: memoised)."""
        memo = (rule.index, pos.type, value)
        done = self._generalized.get(memo, _MISSING)
        if done is _MISSING:
            done = self._generalize_value(value, pos, rule)
            if len(self._generalized) > _MEMO_LIMIT:
                self._generalized.clear()
            self._generalized[memo] = done
        ops[0] |= GENERALIZE
        return done

    def _generalize_value(self, value: Any, pos: Position, rule: Rule) -> Any:
        item = Item(value, pos.type, pos.name, pos.context)
        for condition, result, text in rule.cases:
            try:
                if boolean(evaluate(condition, [item])):
                    values = evaluate(result, [item])
                    if len(values) > 1:
                        raise FhirPathEvaluationError(f"the value of case {text!r} gave several values")
                    return _json_value(values[0]) if values else None
            except FhirPathEvaluationError as e:
                raise DeidProcessingError(
                    f"rule {rule.index + 1} ({rule.path}, generalize) failed at {pos.path} on case {text!r}: {e}",
                    RAISE_FIX,
                ) from None
        return None if rule.other_values_redact else value


def _is_reference(pos: Position) -> bool:
    """A node whose id part alone is hashed: ``Reference.reference``, as the anonymizer does, and (medml's one
    departure) ``Bundle.entry.fullUrl``, the target such references resolve to: hashed whole, as the anonymizer
    hashes it, ``urn:uuid:`` references would point at nothing."""
    parent = pos.parent
    if parent is None:
        return False
    return (pos.name == "reference" and parent.type == "Reference") or (pos.path == "entry.fullUrl")


def _json_value(item: Item) -> Any:
    v = plain(item)
    if isinstance(v, FhirTemporal):
        return v.text
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() and "." not in str(v) else float(v)
    return v


_LABELS_FOR: dict[int, tuple[dict[str, str], ...]] = {}


def add_security(resource: dict[str, Any], ops: int) -> None:
    if not ops:
        return
    meta = resource.get("meta")
    if meta is None:  # the common case: the labels of these operations, made once
        labels = _LABELS_FOR.get(ops)
        if labels is None:
            labels = _LABELS_FOR[ops] = tuple(label for bit, label in SECURITY_LABELS if ops & bit)
        resource["meta"] = {"security": list(map(dict, labels))}
        return
    if not isinstance(meta, dict):
        meta = resource["meta"] = {}
    security = meta.get("security")
    if not isinstance(security, list):
        security = meta["security"] = []
    present = {s.get("code") for s in security if isinstance(s, dict)}
    for bit, label in SECURITY_LABELS:
        if ops & bit and label["code"] not in present:
            security.append(dict(label))


__all__ = ["SECURITY_LABELS", "Methods", "RunState", "add_security"]
