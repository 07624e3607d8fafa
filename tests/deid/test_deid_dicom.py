"""`medml deid dicom`: DICOM headers by the PS3.15 Basic Application Level Confidentiality Profile.

On pydicom's own test files (CT, MR, RT structure set, plan and dose, SR, overlays, waveforms, private sequences;
the shared imaging data holds no DICOM): no value of an attribute the profile removes, empties or replaces is left,
no private attribute, curve or overlay, every UID replaced by the keyed UID computed here with the standard library
(PS3.5 B.2: ``2.25.`` and a 128-bit number), the same in every file, so references between files (a structure set
to its images) still match. On a synthetic file carrying every attribute of Table E.1-1: each gets its action."""

from __future__ import annotations

import hashlib
import hmac
import shutil
from pathlib import Path
from typing import Any

import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.datadict import dictionary_VR  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian  # noqa: E402

from conftest import assert_clear_error, deid  # noqa: E402
from medml.deid.dicom import DUMMY_TEXT, profile_actions, resolved_action  # noqa: E402

# pydicom warns about the test files' odd values (a UID component with a leading zero) when reading them here
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:pydicom.*")
KEY = "a-dicom-test-key"
ENV = {"MEDML_DEID_CRYPTO_HASH_KEY": KEY}
TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
REAL = [
    "CT_small.dcm",
    "MR_small.dcm",
    "rtstruct.dcm",
    "rtplan.dcm",
    "rtdose.dcm",
    "test-SR.dcm",
    "reportsi.dcm",
    "examples_overlay.dcm",
    "waveform_ecg.dcm",
    "nested_priv_SQ.dcm",
    "priv_SQ.dcm",
]


def keyed_uid(uid: str) -> str:
    return "2.25." + str(int.from_bytes(hmac.new(KEY.encode(), uid.encode(), hashlib.sha256).digest()[:16], "big"))


def elements(ds: Any) -> list[Any]:
    """Every element of a dataset, at every level of nesting."""
    found = []
    for elem in ds:
        found.append(elem)
        if elem.VR == "SQ":
            for item in elem.value:
                found.extend(elements(item))
    return found


def texts(value: Any) -> list[str]:
    if isinstance(value, bytes | bytearray):
        return []
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return [t for v in value for t in texts(v)]
    return [str(value)] if value is not None else []


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any]:
    work = tmp_path_factory.mktemp("dicom")
    (work / "in" / "rt").mkdir(parents=True)
    for name in REAL:
        shutil.copy(TEST_FILES / name, work / "in" / ("rt" if name.startswith("rt") else "") / name)
    proc = deid(["dicom", "in", "out"], work, env=ENV)
    assert proc.returncode == 0, proc.stderr
    return work / "in", work / "out", proc


def pairs(real: tuple[Path, Path, Any]) -> list[tuple[Any, Any]]:
    source, out, _ = real
    return [
        (pydicom.dcmread(p, force=True), pydicom.dcmread(out / p.relative_to(source), force=True))
        for p in sorted(source.rglob("*.dcm"))
    ]


def test_every_file_is_written_and_marked(real: Any) -> None:
    _, _, proc = real
    assert f"de-identified {len(REAL)} DICOM file(s)" in proc.stdout
    for _, after in pairs(real):
        assert after.PatientIdentityRemoved == "YES"
        assert after.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert "pixels not examined" in after.DeidentificationMethod


def test_burned_in_text_is_out_of_scope_and_the_output_says_so(real: Any) -> None:
    _, _, proc = real
    with_pixels = [b for b, _ in pairs(real) if "PixelData" in b and str(b.get("BurnedInAnnotation", "")) != "NO"]
    message = " ".join(proc.stderr.split())
    assert "burned-in text is out of scope and was not examined" in message
    assert f"{len(with_pixels)} file(s) say Burned In Annotation YES or do not say" in message
    assert len(with_pixels) >= 5


def test_no_value_the_profile_removes_empties_or_replaces_is_left(real: Any) -> None:
    checked = 0
    for before, after in pairs(real):
        kept = {
            t for e in elements(before) if resolved_action(int(e.tag)) == "K" and e.VR != "SQ" for t in texts(e.value)
        }
        left = {t for e in elements(after) if e.VR not in ("SQ",) for t in texts(e.value)}
        for elem in elements(before):
            if resolved_action(int(elem.tag)) == "K" or elem.VR == "SQ":
                continue
            for text in texts(elem.value):
                if len(text.strip()) >= 4 and text not in kept and text != DUMMY_TEXT:
                    checked += 1
                    assert text not in left, (before.filename, elem.tag, elem.name)
        assert not any(e.tag.is_private for e in elements(after))
        assert not any(0x5000 <= e.tag.group <= 0x50FF for e in after)
        assert not any(0x6000 <= e.tag.group <= 0x60FF and e.tag.element in (0x3000, 0x4000) for e in after)
    assert checked > 100


def kept_elements(ds: Any) -> list[Any]:
    """The elements the profile keeps or changes in place: not inside a sequence it removes or empties."""
    found = []
    for elem in ds:
        action = resolved_action(int(elem.tag))
        if elem.VR == "SQ" and action not in ("K", "U*"):
            continue
        found.append(elem)
        if elem.VR == "SQ":
            for item in elem.value:
                found.extend(kept_elements(item))
    return found


def test_uids_are_keyed_and_consistent_across_the_files(real: Any) -> None:
    replaced = 0
    for before, after in pairs(real):
        meta = before.file_meta.get("MediaStorageSOPInstanceUID")
        if meta:
            assert after.file_meta.MediaStorageSOPInstanceUID == keyed_uid(meta)
            if meta == before.get("SOPInstanceUID"):
                assert after.SOPInstanceUID == after.file_meta.MediaStorageSOPInstanceUID
        if before.get("StudyInstanceUID"):
            assert after.StudyInstanceUID == keyed_uid(before.StudyInstanceUID)
        old = {
            t
            for e in kept_elements(before)
            if e.VR == "UI" and resolved_action(int(e.tag)) != "K"
            for t in texts(e.value)
        }
        new = {t for e in elements(after) if e.VR == "UI" for t in texts(e.value)}
        assert not old & new
        assert {keyed_uid(u) for u in old if u} <= new
        replaced += len(old)
    # the structure set refers to images by their SOP Instance UIDs: the references still resolve after
    rtstruct = next(a for b, a in pairs(real) if b.get("Modality") == "RTSTRUCT")
    refs = {
        str(e.value) for e in elements(rtstruct) if e.keyword in ("ReferencedSOPInstanceUID", "FrameOfReferenceUID")
    }
    assert refs and all(r.startswith("2.25.") for r in refs)
    assert replaced > 30


def every_attribute() -> tuple[Dataset, dict[int, str]]:
    """A dataset with every attribute of Table E.1-1 (with pydicom's VR; LO where pydicom does not know the tag),
    each holding a value that names it, plus a nested item, a private block, a curve and an overlay."""
    ds = Dataset()
    values: dict[int, str] = {}
    for tag in profile_actions():
        if tag >> 16 in (0x0000, 0x0002):
            continue
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            vr = "LO"
        vr = vr.split(" or ")[0]
        if vr == "SQ":
            item = Dataset()
            item.PatientName = "Secret^Nested"
            item.ReferencedSOPInstanceUID = "1.2.3.999"
            ds.add_new(tag, "SQ", Sequence([item]))
            continue
        value: Any = {
            "UI": f"1.2.826.0.1.{tag}",
            "DA": "20240229",
            "TM": "101112",
            "DT": "20240229101112",
            "AS": "042Y",
            "IS": "7",
            "DS": "7.5",
            "US": 7,
            "SS": 7,
            "UL": 7,
            "SL": 7,
            "FL": 7.5,
            "FD": 7.5,
            "OB": b"SECRETBYTES",
            "OW": b"SECRETBYTES!",
            "UN": b"SECRETBYTES!",
            "AT": 0x00100010,
            "CS": "SECRET",
        }.get(vr, f"SECRET{tag:08X}")
        ds.add_new(tag, vr, value)
        values[tag] = vr
    ds.add_new(0x00091010, "LO", "PRIVATE CREATOR")
    ds.add_new(0x00091001, "LO", "Secret private value")
    ds.add_new(0x50000010, "US", 2)
    ds.add_new(0x60003000, "OW", b"\x01\x02")
    ds.add_new(0x60004000, "LT", "Overlay comment naming the patient")
    ds.Modality = "OT"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = str(ds.SOPInstanceUID)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds, values


def test_each_attribute_of_the_table_gets_its_action(tmp_path: Path) -> None:
    ds, values = every_attribute()
    assert len(values) > 550
    ds.save_as(tmp_path / "every.dcm", enforce_file_format=True)
    proc = deid(["dicom", "every.dcm", "out.dcm"], tmp_path, env=ENV)
    assert proc.returncode == 0, proc.stderr
    after = pydicom.dcmread(tmp_path / "out.dcm")
    table = profile_actions()
    seen = {"X": 0, "Z": 0, "D": 0, "U": 0}
    for tag in [t for t in table if t >> 16 not in (0x0000, 0x0002)]:
        before = ds[tag]
        action = table[tag]
        chosen = resolved_action(tag)
        assert chosen == {"X/Z": "Z", "X/D": "D", "X/Z/D": "D", "Z/D": "D", "X/Z/U*": "U*"}.get(action, action)
        if tag in (0x00120062, 0x00120063, 0x00120064, 0x00280303):
            continue  # written by the profile itself (identity removed, method, its code, dates modified)
        if chosen == "X":
            assert tag not in after, hex(tag)
            seen["X"] += 1
            continue
        assert tag in after, (hex(tag), action)
        new = after[tag]
        if before.VR == "SQ":
            if chosen in ("Z", "D"):
                assert len(new.value) == 0
            else:  # K and U*: its items de-identified in turn
                assert new.value[0].get("PatientName") in ("", None)
                assert new.value[0].ReferencedSOPInstanceUID == keyed_uid("1.2.3.999")
            continue
        if tag == 0x00100020:  # Patient ID: the keyed pseudonym FHIR cryptoHash gives
            assert new.value == hmac.new(KEY.encode(), str(before.value).encode(), hashlib.sha256).hexdigest()
        elif chosen == "Z":
            assert new.is_empty, hex(tag)
            seen["Z"] += 1
        elif chosen == "D" and before.VR != "UI":
            assert new.value != before.value and not new.is_empty, hex(tag)
            seen["D"] += 1
        elif chosen in ("U", "D"):
            assert new.value == keyed_uid(str(before.value)), hex(tag)
            seen["U"] += 1
        else:
            assert new.value == before.value
    assert min(seen.values()) > 10
    assert 0x00091001 not in after and 0x00091010 not in after
    assert 0x50000010 not in after and 0x60003000 not in after and 0x60004000 not in after
    assert after.file_meta.MediaStorageSOPInstanceUID == after.SOPInstanceUID == keyed_uid(str(ds.SOPInstanceUID))


def test_the_same_key_gives_the_same_uids_run_after_run(tmp_path: Path) -> None:
    shutil.copy(TEST_FILES / "CT_small.dcm", tmp_path / "ct.dcm")
    for out in ("a.dcm", "b.dcm"):
        assert deid(["dicom", "ct.dcm", out], tmp_path, env=ENV).returncode == 0
    a, b = (pydicom.dcmread(tmp_path / n) for n in ("a.dcm", "b.dcm"))
    assert (
        a.SeriesInstanceUID == b.SeriesInstanceUID == keyed_uid(pydicom.dcmread(tmp_path / "ct.dcm").SeriesInstanceUID)
    )
    other = deid(["dicom", "ct.dcm", "c.dcm"], tmp_path, env={"MEDML_DEID_CRYPTO_HASH_KEY": "another key"})
    assert pydicom.dcmread(tmp_path / "c.dcm").SeriesInstanceUID != a.SeriesInstanceUID and other.returncode == 0


def test_a_file_that_is_not_dicom_is_one_clear_error_and_no_output(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    shutil.copy(TEST_FILES / "CT_small.dcm", tmp_path / "in" / "ct.dcm")
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    proc = deid(["dicom", "in", "out"], tmp_path, env=ENV)
    assert_clear_error(proc, "notes.txt is not a DICOM file")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "home") == ["in"]


def test_bad_input(tmp_path: Path) -> None:
    shutil.copy(TEST_FILES / "CT_small.dcm", tmp_path / "ct.dcm")
    assert_clear_error(deid(["dicom", "ct.dcm", "out.dcm"], tmp_path), "MEDML_DEID_CRYPTO_HASH_KEY is not set")
    assert_clear_error(deid(["dicom", "missing.dcm", "out.dcm"], tmp_path, env=ENV), "missing.dcm does not exist")
    (tmp_path / "out.dcm").write_text("mine")
    assert_clear_error(deid(["dicom", "ct.dcm", "out.dcm"], tmp_path, env=ENV), "already exists")
    assert (tmp_path / "out.dcm").read_text() == "mine"
    assert_clear_error(deid(["dicom", "ct.dcm", "nowhere/out.dcm"], tmp_path, env=ENV), "does not exist")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "home") == ["ct.dcm", "out.dcm"]
