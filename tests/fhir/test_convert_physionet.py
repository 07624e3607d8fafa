"""PhysioNet 2012 -> FHIR R4: resources validate, counts and values match the raw files, the mapping and its docs agree.

Expected values are computed here from the raw record files with the csv module, independently of the converter.
"""

from __future__ import annotations

import csv
import gzip
import re
import tarfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient

from medml.config import get_settings
from medml.data.datasets.physionet2012 import VARIABLES
from medml.errors import DataError, InputFileError
from medml.fhir.convert import physionet2012 as pc
from medml.fhir.store import FhirStore

SET_A = get_settings().data_root / "icu" / "physionet-2012-set-a"
ROOT = Path(__file__).resolve().parents[2]
# First record; repeated Age; an in-hospital death; Age >= 200; Gender -1; FiO2; a value written 1.4e+04.
PICKED = (132539, 132548, 132551, 132973, 135757, 132547, 133308)
MODELS: dict[str, Any] = {"Patient": Patient, "Encounter": Encounter, "Observation": Observation}
NOT_MEASUREMENTS = {"RecordID", "Gender", "ICUType"}

pytestmark = pytest.mark.skipif(not (SET_A / "set-a.tar.gz").is_file(), reason=f"no PhysioNet 2012 data at {SET_A}")


@pytest.fixture(scope="module")
def record_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The picked records, unpacked from the archive into a folder of their own."""
    out = tmp_path_factory.mktemp("set-a")
    wanted = {f"{rid}.txt" for rid in PICKED}
    with tarfile.open(SET_A / "set-a.tar.gz") as tf:
        for member in tf:
            name = Path(member.name).name
            f = tf.extractfile(member) if name in wanted else None
            if f is not None:
                (out / name).write_bytes(f.read())
    assert len(list(out.iterdir())) == len(PICKED)
    return out


@pytest.fixture(scope="module")
def outcomes() -> dict[int, pc.StayOutcome]:
    return pc.read_outcomes(SET_A / "Outcomes-a.txt")


def raw_measurements(path: Path) -> list[tuple[int, str, float]]:
    """(minutes, parameter, value) of every non-missing measurement line, straight from the file."""
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["Time", "Parameter", "Value"]
    out = []
    for t, param, value in rows[1:]:
        h, m = t.split(":")
        if param not in NOT_MEASUREMENTS and float(value) != -1:
            out.append((int(h) * 60 + int(m), param, float(value)))
    return out


def convert(record_dir: Path, rid: int, outcomes: dict[int, pc.StayOutcome]) -> list[dict[str, Any]]:
    return pc.convert_record(record_dir / f"{rid}.txt", outcome=outcomes[rid])


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.parametrize("rid", PICKED)
def test_every_resource_validates_against_the_r4b_models(
    record_dir: Path, outcomes: dict[int, pc.StayOutcome], rid: int
) -> None:
    resources = convert(record_dir, rid, outcomes)
    assert [r["resourceType"] for r in resources[:2]] == ["Patient", "Encounter"]
    for r in resources:
        MODELS[r["resourceType"]].model_validate(r)
    assert len({(r["resourceType"], r["id"]) for r in resources}) == len(resources)


@pytest.mark.parametrize("rid", PICKED)
def test_observations_are_the_files_measurements_with_time_and_value(
    record_dir: Path, outcomes: dict[int, pc.StayOutcome], rid: int
) -> None:
    """Counted and read back through the mapping table alone, as a feature builder would (FiO2 rescaled)."""
    resources = convert(record_dir, rid, outcomes)
    start = instant(resources[1]["period"]["start"])
    back = []
    for obs in resources[2:]:
        assert obs["subject"]["reference"] == f"Patient/pn2012-{rid}"
        assert obs["encounter"]["reference"] == f"Encounter/pn2012-{rid}"
        m = pc.BY_CODE[obs["code"]["coding"][0]["code"]]
        minutes = (instant(obs["effectiveDateTime"]) - start) / timedelta(minutes=1)
        back.append((int(minutes), m.variable, pc.source_value(m, obs["valueQuantity"]["value"])))
    expected = raw_measurements(record_dir / f"{rid}.txt")
    expected = [(t, p, 90.0 if p == "Age" and v >= 200 else v) for t, p, v in expected]
    assert back == expected


def test_known_values_of_the_first_record(record_dir: Path, outcomes: dict[int, pc.StayOutcome]) -> None:
    resources = convert(record_dir, 132539, outcomes)
    patient, encounter, observations = resources[0], resources[1], resources[2:]
    assert patient["gender"] == "female" and patient["birthDate"] == "1946"  # Age 54, admitted in 2000
    assert "deceasedDateTime" not in patient  # Survival -1
    assert encounter["period"]["start"] == "2000-04-02T00:59:00Z"  # 2000-01-01 + 132539 minutes
    assert encounter["length"]["value"] == 5
    assert encounter["hospitalization"]["dischargeDisposition"]["coding"][0]["code"] == "oth"
    hr = [o for o in observations if o["code"]["coding"][0]["code"] == "8867-4"]
    assert hr[0]["id"] == "pn2012-132539-HR-7-0"
    assert hr[0]["effectiveDateTime"] == "2000-04-02T01:06:00Z"  # 00:07 after admission
    assert hr[0]["valueQuantity"] == {
        "value": 73,
        "unit": "beats/min",
        "system": "http://unitsofmeasure.org",
        "code": "/min",
    }
    assert hr[0]["category"][0]["coding"][0]["code"] == "vital-signs"
    urine = {o["id"]: o["valueQuantity"]["value"] for o in observations if "-Urine-1657-" in o["id"]}
    assert urine == {"pn2012-132539-Urine-1657-0": 400, "pn2012-132539-Urine-1657-1": 0}  # 27:37, file order


def test_descriptors_outcomes_and_conversions(record_dir: Path, outcomes: dict[int, pc.StayOutcome]) -> None:
    died = convert(record_dir, 132551, outcomes)  # Outcomes-a: LOS 6, Survival 5, in-hospital death
    admitted = instant(died[1]["period"]["start"])
    assert died[1]["hospitalization"]["dischargeDisposition"]["coding"][0]["code"] == "exp"
    assert died[1]["length"]["value"] == 6
    assert died[0]["deceasedDateTime"] == (admitted + timedelta(days=5)).date().isoformat()
    assert convert(record_dir, 135757, outcomes)[0]["gender"] == "unknown"  # Gender -1
    old = convert(record_dir, 132973, outcomes)
    age = next(o for o in old[2:] if o["code"]["coding"][0]["code"] == "30525-0")
    assert age["valueQuantity"]["value"] == 90 and age["valueQuantity"]["comparator"] == ">="
    assert "birthDate" not in old[0]
    repeated = [o for o in convert(record_dir, 132548, outcomes) if o["id"].startswith("pn2012-132548-Age")]
    assert [o["valueQuantity"]["value"] for o in repeated] == [74, 68, 73]  # the tabular adapter uses the first
    fio2 = [o for o in convert(record_dir, 132547, outcomes)[2:] if o["code"]["coding"][0]["code"] == "3150-0"]
    assert fio2[0]["valueQuantity"]["value"] == 50 and fio2[0]["valueQuantity"]["code"] == "%"  # file: 0.5
    ast = [o["valueQuantity"]["value"] for o in convert(record_dir, 133308, outcomes) if "-AST-1204-" in o["id"]]
    assert ast == [14220.0]  # 20:04,AST,1.422e+04
    bp = next(o for o in convert(record_dir, 132539, outcomes) if "-NISysABP-" in o["id"])
    assert [c["code"] for c in bp["code"]["coding"]] == ["76534-7", "8480-6", "NISysABP"]


def loinc_check_digit(body: str) -> int:
    """LOINC's mod-10 check digit (LOINC Users' Guide, appendix): double the odd positions from the right."""
    digits = body[::-1]
    odd = int(digits[0::2][::-1]) * 2
    even = digits[1::2][::-1]
    total = sum(int(c) for c in f"{even}{odd}")
    return (10 - total % 10) % 10


def test_loinc_check_digit_reference_values() -> None:
    assert [loinc_check_digit(c) for c in ("8867", "8480", "29463", "2160", "12345")] == [4, 6, 7, 0, 5]


UCUM_CODE = re.compile(r"^(?:[a-zA-Z%/]|\[[a-zA-Z]+\]|\{[a-z]+\}|10\*3|\d)+$")


def test_the_mapping_covers_every_parameter_with_valid_codes_and_units() -> None:
    assert {m.variable for m in pc.MAPPINGS} == set(VARIABLES) | {"Age", "Height"}
    assert len(VARIABLES) == 37 and len(pc.MAPPINGS) == 39
    assert len(pc.BY_CODE) == len(pc.MAPPINGS)  # one code per parameter: the reverse lookup is unambiguous
    for m in pc.MAPPINGS:
        codes = [m.code] if m.system == pc.LOINC else []
        codes += [m.generic[0]] if m.generic else []
        for code in codes:
            body, check = code.split("-")
            assert loinc_check_digit(body) == int(check), f"{m.variable}: {code} fails LOINC's check digit"
        assert UCUM_CODE.match(m.ucum), f"{m.variable}: {m.ucum!r} does not look like UCUM"
        assert m.category in {"", *pc.CATEGORY_DISPLAY}
    assert {m.variable for m in pc.MAPPINGS if m.system != pc.LOINC} == {"MechVent"}
    expected = {
        "HR": ("8867-4", "/min"),
        "SysABP": ("76215-3", "mm[Hg]"),
        "DiasABP": ("76213-8", "mm[Hg]"),
        "MAP": ("76214-6", "mm[Hg]"),
        "Temp": ("8310-5", "Cel"),
        "GCS": ("9269-2", "{score}"),
        "FiO2": ("3150-0", "%"),
        "Weight": ("29463-7", "kg"),
        "Height": ("8302-2", "cm"),
        "Age": ("30525-0", "a"),
        "pH": ("2744-1", "[pH]"),
        "Urine": ("9187-6", "mL"),
    }
    assert {v: (pc.BY_VARIABLE[v].code, pc.BY_VARIABLE[v].ucum) for v in expected} == expected


def test_the_docs_table_is_the_codes_table() -> None:
    doc = (ROOT / "docs" / "fhir-physionet-2012-mapping.md").read_text(encoding="utf-8")
    start, end = "<!-- mapping:start -->\n", "<!-- mapping:end -->"
    table = doc[doc.index(start) + len(start) : doc.index(end)]
    assert table == pc.mapping_markdown()
    for m in pc.MAPPINGS:
        assert f"| {m.variable} | {m.code} " in table


def test_fio2_round_trips_exactly_for_every_value_in_the_data() -> None:
    fio2 = pc.BY_VARIABLE["FiO2"]
    for text in ("0.21", "0.28", "0.35", "0.355", "0.4", "0.95", "1", "0.333"):
        value = pc._fhir_decimal(text, float(text), fio2.scale)
        assert pc.source_value(fio2, value) == float(text)


def test_reconversion_is_idempotent_in_the_store(record_dir: Path, outcomes: dict[int, pc.StayOutcome]) -> None:
    first = convert(record_dir, 132539, outcomes)
    assert convert(record_dir, 132539, outcomes) == first
    store = FhirStore.in_memory(first)
    store.add(convert(record_dir, 132539, outcomes))
    assert store.con.execute("SELECT count(*) FROM resources").fetchone() == (len(first),)


def test_stay_bundle_is_self_contained_and_ingests_to_the_same_resources(
    record_dir: Path, outcomes: dict[int, pc.StayOutcome]
) -> None:
    from medml.fhir.ingest import bundle_resources

    bundle = pc.stay_bundle(record_dir / "132551.txt", outcome=outcomes[132551])
    Bundle.model_validate(bundle)
    assert bundle["type"] == "collection"
    full_urls = {e["fullUrl"] for e in bundle["entry"]}
    refs = {
        e["resource"][k]["reference"] for e in bundle["entry"] for k in ("subject", "encounter") if k in e["resource"]
    }
    assert refs and refs <= full_urls and all(u.startswith("urn:uuid:") for u in full_urls)
    assert list(bundle_resources(bundle)) == convert(record_dir, 132551, outcomes)


@pytest.mark.parametrize("compress", [False, True])
def test_write_ndjson_from_the_archive_folder(tmp_path: Path, compress: bool) -> None:
    counts = pc.write_ndjson(SET_A, tmp_path, limit=3, compress=compress)
    suffix = ".ndjson.gz" if compress else ".ndjson"
    lines = {}
    for rtype in ("Patient", "Encounter", "Observation"):
        data = (tmp_path / f"{rtype}{suffix}").read_bytes()
        lines[rtype] = [orjson.loads(x) for x in (gzip.decompress(data) if compress else data).splitlines()]
    assert counts == {t: len(v) for t, v in lines.items()}
    assert [p["id"] for p in lines["Patient"]] == ["pn2012-132539", "pn2012-132540", "pn2012-132541"]
    assert all("hospitalization" in e for e in lines["Encounter"])  # Outcomes-a.txt found beside the archive
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{t}{suffix}" for t in counts)


def test_write_ndjson_from_a_folder_of_records(record_dir: Path, tmp_path: Path) -> None:
    counts = pc.write_ndjson(record_dir, tmp_path, outcomes=SET_A / "Outcomes-a.txt")
    expected = sum(len(raw_measurements(record_dir / f"{rid}.txt")) for rid in PICKED)
    assert counts == {"Patient": len(PICKED), "Encounter": len(PICKED), "Observation": expected}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


GOOD = "Time,Parameter,Value\n00:00,RecordID,1\n00:00,Age,50\n00:00,Gender,1\n00:05,HR,80\n"


@pytest.mark.parametrize(
    ("text", "error", "where"),
    [
        ("Time;Parameter;Value\n00:00,RecordID,1\n", InputFileError, "line 1: expected the header"),
        ("", InputFileError, "line 1"),
        (GOOD + "00:10,HR,eighty\n", DataError, "line 6: the value 'eighty' of HR is not a number"),
        (GOOD + "00:10,HR,nan\n", DataError, "line 6"),
        (GOOD + "0:1O,HR,80\n", DataError, "line 6: the time '0:1O' is not HH:MM"),
        (GOOD + "00:10,Heart,80\n", DataError, "line 6: unknown parameter 'Heart'"),
        (GOOD + "00:10,HR\n", DataError, "line 6: expected 3 comma-separated fields"),
        (GOOD.replace("Gender,1", "Gender,3"), DataError, "line 4: Gender 3"),
        (GOOD.replace("RecordID,1", "RecordID,2"), DataError, "RecordID line says 2"),
    ],
)
def test_bad_record_files_name_the_file_and_line(tmp_path: Path, text: str, error: type[Exception], where: str) -> None:
    path = write(tmp_path / "1.txt", text)
    with pytest.raises(error) as e:
        pc.convert_record(path)
    assert str(path) in str(e.value) and where in str(e.value)


def test_bad_inputs_to_write_ndjson_leave_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="does not exist"):
        pc.write_ndjson(tmp_path / "absent", tmp_path / "out")
    with pytest.raises(InputFileError, match="no record files"):
        pc.write_ndjson(tmp_path, tmp_path / "out")
    with pytest.raises(InputFileError, match="no record file at"):
        pc.convert_record(tmp_path / "2.txt")
    src = tmp_path / "src"
    src.mkdir()
    write(src / "1.txt", GOOD)
    write(src / "2.txt", GOOD.replace("RecordID,1", "RecordID,2").replace("HR,80", "HR,x"))
    with pytest.raises(DataError, match=r"2\.txt, line 5"):
        pc.write_ndjson(src, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
    bad = write(
        tmp_path / "Outcomes-x.txt",
        "RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death\n1,2,3,4,-1,0\n1,2,x,4,-1,0\n",
    )
    with pytest.raises(DataError, match=r"Outcomes-x\.txt, line 3"):
        pc.read_outcomes(bad)


def test_outcome_of_another_stay_is_refused(record_dir: Path, outcomes: dict[int, pc.StayOutcome]) -> None:
    with pytest.raises(DataError, match="RecordID 132551, not 132539"):
        pc.convert_record(record_dir / "132539.txt", outcome=outcomes[132551])


@pytest.mark.slow
def test_all_of_set_a_converts_with_one_observation_per_measurement(tmp_path: Path) -> None:
    expected = 0
    with tarfile.open(SET_A / "set-a.tar.gz") as tf:
        for member in tf:
            f = tf.extractfile(member) if member.name.endswith(".txt") else None
            if f is not None:
                rows = list(csv.reader(f.read().decode().splitlines()))[1:]
                expected += sum(1 for _, p, v in rows if p not in NOT_MEASUREMENTS and float(v) != -1)
    counts = pc.write_ndjson(SET_A, tmp_path)
    assert counts == {"Patient": 3996, "Encounter": 3996, "Observation": expected}
    assert expected == 1_744_226


def test_iter_stays_reads_the_archive_in_place_as_convert_record_reads_the_files(
    record_dir: Path, outcomes: dict[int, pc.StayOutcome]
) -> None:
    picked = sorted(PICKED[:3])
    stays = list(pc.iter_stays(SET_A, record_ids=picked))
    assert stays == [convert(record_dir, rid, outcomes) for rid in picked]
