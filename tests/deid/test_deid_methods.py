"""Each anonymization method against the Microsoft anonymizer's own unit-test vectors (FHIR/src/Microsoft.Health.
Fhir.Anonymizer.Shared.Core.UnitTests at commit a2d90ba, the commit in anonymizer-tests/COMMIT) and the algorithms
its documentation (anonymizer-tests/FHIR-anonymization.md) states."""

from __future__ import annotations

import base64
import random
from datetime import date

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from medml.deid import _methods as m

# Utility/CryptoHashUtilityTests.cs, key "123"
HMAC_VECTORS = [
    ("abc", "8f16771f9f8851b26f4d460fa17de93e2711c7e51337cb8a608a0f81e1c1b6ae"),
    ("&*^%$@()=-,/", "33f6f7d6b3602bf5354dcb4b8d988982602349355f50f86798d8ce1ffd61521b"),
    ("ÆŊŋßſ♫∅", "1a94823f0a0f00a4b1ca771c3446dc5e17958f4dae3588ace2bca8a843eb63d9"),
    (
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ1234567890!@#$%^&*()=-",
        "352b5a4af5adb81fa616c2a5b5c492d0b0b544c188a9aa003767a2b5efbd1478",
    ),
]
# Utility/EncryptUtilityTests.cs: ciphertexts the tool produced, and their plaintexts
AES_KEY = b"704ab12c8e3e46d4bea600ef62a6bec7"
AES_VECTORS = [
    ("qpxGp6T9DP7wB0EYPQwOYVrScQ/pq3c0D+JQ+hjnfkY=", "abc"),
    ("GI99peR2SpPfcqEgzr7/z7gxYym6qyVPPzvmGc8o8SSwqMpCsW0CRj3v6ZsxFCef", "This is for test"),
    ("JxNRbbxL6pYYpbrtHWZ+1gPTPcIVrLWmrugPiUR9d6k=", "!@)(*&%^!@#$%@"),
    ("nQTtB/efLGpEqzOh/Pt4ZRlqZynO7gjePdu7LbLxH2LoqYJXAq6SQWkFeQ1SiqRM", "ͶΆΈΞξτϡϿῧῄᾴѶѾ"),
    ("zrFYnZ2cIwcfmjCVybP1ZC+LaD7gwGXBHR2bZjuutzA=", "测试"),
]
# Utility/ReferenceUtilityTests.cs, with the id transformed to "@ID"
REFERENCES = [
    ("#p1", "#@ID"),
    ("Patient/034AB16", "Patient/@ID"),
    (
        "http://fhir.hl7.org/svc/StructureDefinition/c8973a22-2b5b-4e76-9c66-00639c99e61b",
        "http://fhir.hl7.org/svc/StructureDefinition/@ID",
    ),
    ("http://example.org/fhir/Observation/apo89654/_history/2", "http://example.org/fhir/Observation/@ID/_history/2"),
    ("urn:uuid:C757873D-EC9A-4326-A141-556F43239520", "urn:uuid:@ID"),
    ("urn:oid:1.2.3.4.5", "urn:oid:@ID"),
    ("034AB16", "@ID"),
    ("Patient/AbcŴΉЙ", "@ID"),
    ("http://fhir.hl7.org/svc/StructureDefinitionTest/c8973a22-2b5b-4e76-9c66-00639c99e61b", "@ID"),
    ("ftp://fhir.hl7.org/svc/StructureDefinition/c8973a22-2b5b-4e76-9c66-00639c99e61b", "@ID"),
    ("wwurn:uuid:c757873d-ec9a-4326-a141-556f43239520", "@ID"),
    ("urn:oid:1.2.3=4.5", "@ID"),
]
# Utility/PostalCodeUtilityTests.cs, restricted areas 203 and 556
POSTAL = [
    ("98052", "98000"),
    ("10104", "10100"),
    ("20301", "00000"),
    ("55602", "00000"),
    ("98028-1830", "98000-0000"),
    ("20301-1830", "00000-0000"),
]
TODAY = date(2026, 1, 1)


@pytest.mark.parametrize(("text", "expected"), HMAC_VECTORS)
def test_crypto_hash_is_the_tools_hmac_sha256(text: str, expected: str) -> None:
    assert m.crypto_hash(text, "123") == expected
    assert m.KeyedHash("123")(text) == expected  # the key's pads computed once: the same HMAC


@pytest.mark.parametrize("key", ["", "k", "é-clé", "x" * 64, "y" * 65, "z" * 200])
def test_the_key_once_hash_is_hmac_sha256_for_every_key_length(key: str) -> None:
    # RFC 2104: keys longer than the 64-byte block are hashed first, shorter ones padded
    for text in ("23", "urn:uuid:04121321-4af5-424c-a0e1-ed3aab1c349d", "Ünïcödé", "a" * 300, ""):
        assert m.KeyedHash(key)(text) == m.crypto_hash(text, key)


@pytest.mark.parametrize(("cipher", "plain"), AES_VECTORS)
def test_what_the_tool_encrypted_decrypts(cipher: str, plain: str) -> None:
    assert m.decrypt(cipher, AES_KEY) == plain


@pytest.mark.parametrize("plain", ["abc", "This is for test", "测试", "x" * 100])
def test_encryption_is_aes_cbc_with_the_iv_first_in_base64(plain: str) -> None:
    """The documented format, read back with the cryptography package directly: IV (16 bytes), then AES-CBC with
    PKCS7 padding; a new random IV each time, so the same value encrypts differently."""
    a, b = m.encrypt(plain, AES_KEY), m.encrypt(plain, AES_KEY)
    assert a != b
    raw = base64.b64decode(a)
    decryptor = Cipher(algorithms.AES(AES_KEY), modes.CBC(raw[:16])).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    data = unpadder.update(decryptor.update(raw[16:]) + decryptor.finalize()) + unpadder.finalize()
    assert data.decode("utf-8") == plain


@pytest.mark.parametrize(("reference", "expected"), REFERENCES)
def test_only_the_id_of_a_literal_reference_is_transformed(reference: str, expected: str) -> None:
    assert m.transform_reference(reference, lambda _: "@ID") == expected


@pytest.mark.parametrize(("code", "expected"), POSTAL)
def test_partial_zip_codes_keep_3_digits_unless_restricted(code: str, expected: str) -> None:
    assert m.redact_postal_code(code, True, ("203", "556")) == expected
    assert m.redact_postal_code(code, False, ("203", "556")) is None


def test_date_shift_of_the_tools_unit_tests() -> None:
    """Processors/DateShiftProcessorTests.cs: key "dummy", no prefix."""
    offset = m.date_shift_offset("", "dummy")
    assert m.shift_date("2015-02-07", "date", offset, True, TODAY) == ("2015-01-17", True)
    assert m.shift_date("2015-02-07T13:28:17-05:00", "dateTime", offset, True, TODAY) == (
        "2015-01-17T00:00:00-05:00",
        True,
    )
    assert m.shift_date("2015-02-07T01:01:01Z", "instant", offset, True, TODAY) == ("2015-01-17T00:00:00+00:00", True)
    assert m.shift_date("2015-02", "date", offset, True, TODAY) == ("2015", False)
    assert m.shift_date("2015-02", "date", offset, False, TODAY) == (None, False)


def test_date_shift_offset_follows_the_documented_hash() -> None:
    """Steps 2-4 of the documented algorithm: a hash of prefix + key to an integer in [-50, 50]; the conformance
    case 'patient basic' shifts resource "example" under key "123" by 41 days (2000-01-01 -> 2000-02-11)."""
    assert m.date_shift_offset("example", "123") == 41
    offsets = {m.date_shift_offset(f"id{i}", "k") for i in range(2000)}
    assert min(offsets) == -50 and max(offsets) == 50


def test_dates_showing_an_age_over_89_lose_their_year_too() -> None:
    """HIPAA Safe Harbor as the docs apply it: a date more than 89 years back is redacted entirely."""
    assert m.redact_date("1936-01-01", "date", True, TODAY) is None  # an age of 90 on 2026-01-01
    assert m.redact_date("1936-01-02", "date", True, TODAY) == "1936"  # 89, a day short of 90
    assert m.redact_date("1936", "date", True, TODAY) is None  # counted from 1 January
    assert m.shift_date("1936-01-01", "date", 10, True, TODAY) == (None, False)
    assert m.redact_age(90, True) is None
    assert m.redact_age(89, True) == 89
    assert m.redact_age(30, False) is None


def test_perturbation_stays_in_the_documented_ranges() -> None:
    """Fixed: uniform noise on [-span/2, span/2]; proportional: on [-span/2 * value, span/2 * value]; integers
    rounded to whole numbers, positiveInt at least 1."""
    rng = random.Random(7)
    fixed = [m.perturb(40, "integer", 6, False, 0, rng) for _ in range(2000)]
    assert all(isinstance(v, int) and 37 <= v <= 43 for v in fixed)
    assert len(set(fixed)) == 7
    proportional = [m.perturb(200.0, "decimal", 0.2, True, 2, rng) for _ in range(2000)]
    assert all(180 <= v <= 220 for v in proportional)
    assert min(proportional) < 185 and max(proportional) > 215
    assert all(m.perturb(1, "positiveInt", 10, False, 0, rng) >= 1 for _ in range(200))
