"""What each anonymization method does to one value, exactly as the Microsoft anonymizer's documentation and
processors define it: HMAC-SHA256 hashing (references keep their type and base), AES-CBC encryption (a random
IV before the ciphertext, Base64), date shifting within [-50, 50] days from a hash of resource id and key,
Safe Harbor's partial redaction (years kept unless the age is over 89, ZIP codes to 3 digits) and perturbation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import random
import re
from collections.abc import Callable
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from medml.deid._model import resource_types

AGE_THRESHOLD = 89
_SHIFT_SEED = 131
_SHIFT_RANGE = 50
_AES_BLOCK = 16
# The FHIR date and dateTime patterns (https://www.hl7.org/fhir/datatypes.html); group 1 the year, 5 the month,
# 7 the day, 8 the time with its zone. Searched, not anchored, as the anonymizer does.
_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_DATE = re.compile(_YEAR + r"(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?")
_DATETIME = re.compile(
    _YEAR + r"(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])"
    r"(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?"
)
_TIME = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?")
_DIGIT = re.compile(r"\d")


def crypto_hash(value: str, key: str) -> str:
    """HMAC-SHA256 of the UTF-8 text under the UTF-8 key, as 64 lowercase hex digits."""
    if not value:
        return value
    return hmac.new(key.encode("utf-8"), value.encode("utf-8"), hashlib.sha256).hexdigest()


class KeyedHash:
    """:func:`crypto_hash` under one key, the key's inner and outer SHA-256 states computed once (RFC 2104), so a
    value costs two hash copies instead of a new HMAC object: what a run of ids and references spends most on."""

    def __init__(self, key: str) -> None:
        raw = key.encode("utf-8")
        block = hashlib.sha256().block_size
        if len(raw) > block:
            raw = hashlib.sha256(raw).digest()
        raw = raw.ljust(block, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in raw))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in raw))

    def __call__(self, value: str) -> str:
        if not value:
            return value
        inner = self._inner.copy()
        inner.update(value.encode("utf-8"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


def _reference_patterns() -> list[re.Pattern[str]]:
    types = "|".join(sorted(resource_types()))
    return [
        re.compile(
            r"^(?P<prefix>((http|https)://([A-Za-z0-9\\/.:%$])*)?(" + types + r")/)(?P<id>[A-Za-z0-9\-.]{1,64})"
            r"(?P<suffix>/_history/[A-Za-z0-9\-.]{1,64})?$"
        ),
        re.compile(r"^(?P<prefix>urn:oid:)(?P<id>[0-2](\.(0|[1-9][0-9]*))+)(?P<suffix>)$"),
        re.compile(
            r"^(?P<prefix>urn:uuid:)(?P<id>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
            r"[0-9a-fA-F]{12})(?P<suffix>)$"
        ),
    ]


_REFERENCE_PATTERNS: list[re.Pattern[str]] = []


def transform_reference(reference: str, transform: Callable[[str], str]) -> str:
    """A literal reference with only its id transformed (``Patient/123`` -> ``Patient/<hash>``, ``#p1``,
    ``urn:uuid:``, ``urn:oid:``, absolute URLs and ``_history``); anything else transformed whole."""
    if not reference:
        return reference
    if reference.startswith("#"):
        return "#" + transform(reference[1:])
    if not _REFERENCE_PATTERNS:
        _REFERENCE_PATTERNS.extend(_reference_patterns())
    # the three patterns exclude each other by their start, so only the one the start names is tried
    if reference.startswith("urn:uuid:"):
        m = _REFERENCE_PATTERNS[2].match(reference)
    elif reference.startswith("urn:oid:"):
        m = _REFERENCE_PATTERNS[1].match(reference)
    else:
        m = _REFERENCE_PATTERNS[0].match(reference)
    if m:
        return m.group("prefix") + transform(m.group("id")) + (m.group("suffix") or "")
    return transform(reference)


def encrypt(value: str, key: bytes) -> str:
    """AES-CBC with PKCS7 padding and a random 16-byte IV; Base64 of IV + ciphertext (the anonymizer's format)."""
    if not value:
        return value
    iv = os.urandom(_AES_BLOCK)
    padder = padding.PKCS7(128).padder()
    data = padder.update(value.encode("utf-8")) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return base64.b64encode(iv + encryptor.update(data) + encryptor.finalize()).decode("ascii")


def decrypt(text: str, key: bytes) -> str:
    """The inverse of :func:`encrypt`: for whoever holds the key (and for checking the format)."""
    if not text:
        return text
    raw = base64.b64decode(text, validate=True)
    if len(raw) < _AES_BLOCK:
        raise ValueError(f"an encrypted value is at least {_AES_BLOCK} bytes long")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(raw[:_AES_BLOCK])).decryptor()
    data = decryptor.update(raw[_AES_BLOCK:]) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return (unpadder.update(data) + unpadder.finalize()).decode("utf-8")


def date_shift_offset(prefix: str, key: str) -> int:
    """The shift in days, in [-50, 50], that the anonymizer derives from prefix (resource id, file or folder
    name) and key."""
    offset = 0
    for b in (prefix + key).encode("utf-8"):
        offset = (offset * _SHIFT_SEED + b) % (2 * _SHIFT_RANGE + 1)
    return offset - _SHIFT_RANGE


def patient_shift_offset(patient: str, key: str) -> int:
    """medml's per-patient shift in days, in [-50, 50]: from HMAC-SHA256 of the patient's key under the date-shift
    key, so that it repeats run after run and file after file, and cannot be worked out without the key (the
    anonymizer's own offset is a short polynomial of its prefix and key)."""
    digest = hmac.new(key.encode("utf-8"), b"patient:" + patient.encode("utf-8"), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") % (2 * _SHIFT_RANGE + 1) - _SHIFT_RANGE


def _over_threshold(m: re.Match[str], today: date) -> bool:
    """Whether a date is more than 89 years ago (it would show an age over 89), as the anonymizer counts."""
    year = int(m.group(1))
    month = int(m.group(5)) if m.group(5) else 1
    day = int(m.group(7)) if m.group(7) else 1
    age = today.year - year - (1 if (today.month, today.day) < (month, day) else 0)
    return age > AGE_THRESHOLD


def redact_date(value: str, fhir_type: str, partial: bool, today: date) -> str | None:
    """Redaction of a date, dateTime or instant: removed, or with ``partial`` only its year kept, unless the
    date is more than 89 years ago."""
    if not partial:
        return None
    m = (_DATE if fhir_type == "date" else _DATETIME).search(value)
    if m is None:
        return value
    return None if _over_threshold(m, today) else m.group(1)


def shift_date(
    value: str, fhir_type: str, offset: int, partial: bool, today: date, keep_time: bool = False
) -> tuple[str | None, bool]:
    """A date shifted by ``offset`` days, its time of day set to zeros (kept with ``keep_time``, medml's option)
    and its zone kept; (value, True). A date without a day, or more than 89 years ago, is redacted instead:
    (redacted value, False)."""
    m = (_DATE if fhir_type == "date" else _DATETIME).search(value)
    if m is None or not m.group(7) or _over_threshold(m, today):
        return redact_date(value, fhir_type, partial, today), False
    shifted = (date(int(m.group(1)), int(m.group(5)), int(m.group(7))) + timedelta(days=offset)).isoformat()
    if fhir_type == "date" or not m.group(8):
        return shifted, True
    stamp = m.group(8)
    t = None if keep_time else _TIME.search(stamp)
    if t:
        stamp = stamp.replace(t.group(0), _DIGIT.sub("0", t.group(0)))
    if fhir_type == "instant" and stamp.endswith("Z"):
        stamp = stamp[:-1] + "+00:00"  # the anonymizer reads instants as offsets and writes them so
    return shifted + stamp, True


def redact_age(value: int | float | Decimal, partial: bool) -> int | float | Decimal | None:
    """An Age's value: removed, or with ``partial`` only when over 89."""
    return value if partial and value <= AGE_THRESHOLD else None


def redact_postal_code(value: str, partial: bool, restricted: tuple[str, ...]) -> str | None:
    """A postal code: removed, or with ``partial`` cut to its first 3 digits (the rest zeros), or all zeros
    where its first 3 digits are a restricted ZIP code tabulation area (fewer than 20,000 people)."""
    if not partial:
        return None
    if any(value.startswith(area) for area in restricted):
        return _DIGIT.sub("0", value)
    if len(value) >= 3:
        return value[:3] + _DIGIT.sub("0", value[3:])
    return value


def perturb(
    value: int | float | Decimal,
    fhir_type: str,
    span: float,
    proportional: bool,
    round_to: int,
    rng: random.Random,
) -> int | float:
    """The value plus uniform noise on [-span/2, span/2] (times the value when proportional), rounded to
    ``round_to`` places (0 for integer types; positiveInt at least 1, unsignedInt at least 0)."""
    integer = fhir_type in ("integer", "positiveInt", "unsignedInt")
    if integer:
        round_to = 0
    original = Decimal(str(value))
    width = float(original) * span if proportional else span
    noise = Decimal(str(rng.uniform(-width / 2, width / 2)))
    result = (original + noise).quantize(Decimal(1).scaleb(-round_to), rounding=ROUND_HALF_EVEN)
    if fhir_type == "positiveInt" and result <= 0:
        result = Decimal(1)
    if fhir_type == "unsignedInt" and result < 0:
        result = Decimal(0)
    return int(result) if integer or round_to == 0 else float(result)


def as_text(value: object) -> str:
    """A primitive value as the anonymizer's .NET engine writes it before hashing or encrypting."""
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


__all__ = [
    "AGE_THRESHOLD",
    "KeyedHash",
    "as_text",
    "crypto_hash",
    "date_shift_offset",
    "decrypt",
    "encrypt",
    "patient_shift_offset",
    "perturb",
    "redact_age",
    "redact_date",
    "redact_postal_code",
    "shift_date",
    "transform_reference",
]
