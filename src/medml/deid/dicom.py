"""DICOM headers de-identified by the PS3.15 Basic Application Level Confidentiality Profile, with pydicom.

Each attribute of Table E.1-1 (``configs/dicom-ps3.15-basic.json``) gets its action, at every level of nesting:

- ``X`` removed; ``Z`` emptied (zero length; a sequence with no items); ``D`` a dummy value of its VR
  (``ANONYMIZED``, ``19000101``, ``000000``, 0; a sequence with no items);
- ``U`` a UID replaced by ``2.25.<HMAC-SHA256 of the UID under the key, as a 128-bit number>``: the same UID gets
  the same replacement in every file of every run with the same key, so a study's series and instances, and the
  references between them (Referenced SOP Instance UID, Frame of Reference UID), stay consistent;
- the choices the table leaves to the IOD (``X/Z``, ``X/D``, ``X/Z/D``, ``Z/D``, ``X/Z/U*``) take the option that
  keeps the attribute present (``Z``, ``D``, or its items' UIDs replaced), so that no Type 1 or 2 attribute goes
  missing: the value is gone either way;
- private attributes are removed (the profile's default: no Retain Safe Private option), and so are curves (groups
  50xx) and overlay data and comments (60xx,3000 and 60xx,4000);
- Patient ID, an emptied attribute for the profile, gets a keyed pseudonym instead (HMAC-SHA256, the value FHIR
  cryptoHash gives the same id under the same key), so images stay linked to a patient's de-identified record;
- Patient Identity Removed is YES, De-identification Method names the profile and what was not done, and its code
  sequence carries DCM 113100 (Basic Application Confidentiality Profile).

The pixel data is copied as it is: text burned into the pixels (a name on an ultrasound frame, a scanned form) is
out of scope and not looked for. :func:`deidentify_dicom` counts the files whose Burned In Annotation is YES or not
given, and the command says so.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from medml.errors import ConfigError, InputFileError

KEY_VARIABLE = "MEDML_DEID_CRYPTO_HASH_KEY"
PROFILE_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")
#: De-identification Method (LO: at most 64 characters)
METHOD = "DICOM PS3.15 Basic Profile; keyed UIDs; pixels not examined"
DUMMY_TEXT = "ANONYMIZED"
_DUMMY = {"DA": "19000101", "TM": "000000", "DT": "19000101000000", "AS": "000Y", "IS": "0", "DS": "0"}
_NUMBERS = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"})
_BYTES = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN"})
_MAX_LENGTH = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64}
PATIENT_ID = 0x00100020
BURNED_IN = 0x00280301
_FIX_DICOM = "give a DICOM file (Part 10, with its 128-byte preamble and DICM) or a folder of them"


@cache
def profile_actions() -> dict[int, str]:
    """Table E.1-1: the action of each attribute, by tag."""
    path = resources.files("medml.deid").joinpath("configs", "dicom-ps3.15-basic.json")
    data = orjson.loads(path.read_bytes())
    return {int(tag, 16): action for tag, action in data["actions"].items()}


def resolved_action(tag: int) -> str:
    """The action medml takes for a tag: the table's, with the IOD's choices resolved as the module says."""
    g, e = tag >> 16, tag & 0xFFFF
    if g & 1:
        return "X"  # private
    if 0x5000 <= g <= 0x50FF or (0x6000 <= g <= 0x60FF and e in (0x3000, 0x4000)):
        return "X"  # curves; overlay data and comments
    action = profile_actions().get(tag, "K")
    return {"X/Z": "Z", "X/D": "D", "X/Z/D": "D", "Z/D": "D", "X/Z/U*": "U*"}.get(action, action)


def keyed_uid(uid: str, key: str) -> str:
    """A UID's replacement: ``2.25.`` and 128 bits of HMAC-SHA256 (a UUID-derived UID, PS3.5 B.2; at most 44
    characters)."""
    digest = hmac.new(key.encode("utf-8"), uid.strip().encode("ascii", "replace"), hashlib.sha256).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def keyed_pseudonym(value: str, key: str) -> str:
    """HMAC-SHA256 as 64 hex digits: FHIR cryptoHash of the same text under the same key."""
    return hmac.new(key.encode("utf-8"), value.encode("utf-8"), hashlib.sha256).hexdigest()


def _dummy(vr: str) -> Any:
    if vr in _DUMMY:
        return _DUMMY[vr]
    if vr in _NUMBERS:
        return 0
    if vr in _BYTES:
        return b"\x00\x00"  # D: a value, not zero length (and an even number of bytes)
    return DUMMY_TEXT[: _MAX_LENGTH.get(vr, 64)]


class _Profile:
    def __init__(self, key: str) -> None:
        self.key = key
        self.uids: dict[str, str] = {}

    def uid(self, value: Any) -> Any:
        from pydicom.multival import MultiValue

        if isinstance(value, list | MultiValue):
            return [self.uid(v) for v in value]
        if not value:
            return value
        text = str(value)
        new = self.uids.get(text)
        if new is None:
            new = self.uids[text] = keyed_uid(text, self.key)
        return new

    def dataset(self, ds: Any) -> None:
        """Apply the profile to a dataset and, recursively, to its sequences' items."""
        for elem in list(ds):
            tag = int(elem.tag)
            action = resolved_action(tag)
            vr = elem.VR
            if action == "X":
                del ds[elem.tag]
            elif tag == PATIENT_ID:
                elem.value = keyed_pseudonym(str(elem.value), self.key) if elem.value else elem.value
            elif action == "Z":
                elem.value = [] if vr == "SQ" else (b"" if vr in _BYTES else None if vr in _NUMBERS else "")
            elif action == "D":
                elem.value = [] if vr == "SQ" else self.uid(elem.value) if vr == "UI" else _dummy(vr)
            elif action in ("U", "U*") and vr != "SQ":
                elem.value = self.uid(elem.value) if vr == "UI" else _dummy(vr)
            elif vr == "SQ":
                for item in elem.value:
                    self.dataset(item)

    def mark(self, ds: Any) -> None:
        from pydicom.dataset import Dataset
        from pydicom.sequence import Sequence

        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = METHOD
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = PROFILE_CODE
        ds.DeidentificationMethodCodeSequence = Sequence([code])
        ds.LongitudinalTemporalInformationModified = "REMOVED"


def burned_in_unknown(ds: Any) -> bool:
    """Whether the file may carry text in its pixels: Burned In Annotation YES, or not given, with pixel data."""
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        return False
    return str(ds.get(BURNED_IN).value if BURNED_IN in ds else "").upper() != "NO"


def deidentify_dataset(ds: Any, key: str, _profile: _Profile | None = None) -> Any:
    """A pydicom Dataset (and its file meta) de-identified in place, then returned."""
    profile = _profile or _Profile(key)
    profile.dataset(ds)
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta:
        meta.MediaStorageSOPInstanceUID = profile.uid(meta.MediaStorageSOPInstanceUID)
    profile.mark(ds)
    return ds


@dataclass(frozen=True)
class DicomSummary:
    """What a run did: files, studies (distinct Study Instance UIDs), files whose pixels may carry text."""

    files: int
    studies: int
    burned_in_unknown: int
    output: Path


def dicom_key() -> str:
    """The key for UIDs and pseudonyms, from the environment; ConfigError without one."""
    key = os.environ.get(KEY_VARIABLE, "")
    if not key:
        raise ConfigError(
            f"no key for the DICOM UIDs and pseudonyms: {KEY_VARIABLE} is not set",
            f"set {KEY_VARIABLE} (the key FHIR cryptoHash uses, so pseudonyms match across both)",
        )
    return key


def _read(path: Path) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        try:
            return pydicom.dcmread(path)
        except InvalidDicomError:
            # a file without the Part 10 preamble (old ACR-NEMA style): DICOM only if it names its SOP class
            ds = pydicom.dcmread(path, force=True)
            if "SOPClassUID" not in ds:
                raise InputFileError(f"{path} is not a DICOM file", _FIX_DICOM) from None
            return ds
    except InputFileError:
        raise
    except Exception as e:  # pydicom's parser raises many kinds on a file that is not DICOM
        raise InputFileError(f"{path} is not a DICOM file ({type(e).__name__})", _FIX_DICOM) from None


def _files(source: Path) -> Iterator[tuple[Path, Path]]:
    """(file, its path relative to the input) for a file, or every non-hidden file under a folder."""
    if source.is_file():
        yield source, Path(source.name)
        return
    found = False
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts):
            found = True
            yield path, rel
    if not found:
        raise InputFileError(f"{source} holds no files", _FIX_DICOM)


def deidentify_dicom(
    source: Path,
    target: Path,
    key: str,
    *,
    overwrite: bool = False,
    tick: Callable[[Path], None] = lambda p: None,
) -> DicomSummary:
    """De-identify a DICOM file into a file, or a folder into a new folder of the same layout. The output appears
    only when every file is done: a file that is not DICOM stops the run and leaves nothing behind."""
    if not source.exists():
        raise InputFileError(f"{source} does not exist", _FIX_DICOM)
    if target.exists() and target.resolve() == source.resolve():
        raise InputFileError(f"the output {target} is the input", "write the de-identified files to another path")
    if target.exists() and not overwrite:
        raise InputFileError(f"{target} already exists", "choose a new output path, or pass --overwrite")
    if not target.parent.is_dir():
        raise InputFileError(f"the folder of {target} does not exist", "create it first")
    if source.is_file() and target.exists() and target.is_dir():
        raise InputFileError(f"{target} is a folder but {source} is a file", "give an output file name")
    profile = _Profile(key)
    with warnings.catch_warnings():  # pydicom warns about odd values in the input: they are replaced or kept
        warnings.simplefilter("ignore", UserWarning)
        return _run(source, target, profile, tick)


def _run(source: Path, target: Path, profile: _Profile, tick: Callable[[Path], None]) -> DicomSummary:
    key = profile.key
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    studies: set[str] = set()
    files = unknown = 0
    try:
        for path, rel in _files(source):
            ds = _read(path)
            study = ds.get("StudyInstanceUID")
            if study:
                studies.add(str(study))
            unknown += burned_in_unknown(ds)
            deidentify_dataset(ds, key, profile)
            out = staging / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(out)
            files += 1
            tick(path)
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        if source.is_file():
            os.replace(staging / source.name, target)
            shutil.rmtree(staging)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return DicomSummary(files, len(studies), unknown, target)


__all__ = [
    "KEY_VARIABLE",
    "METHOD",
    "DicomSummary",
    "burned_in_unknown",
    "deidentify_dataset",
    "deidentify_dicom",
    "dicom_key",
    "keyed_pseudonym",
    "keyed_uid",
    "profile_actions",
    "resolved_action",
]
