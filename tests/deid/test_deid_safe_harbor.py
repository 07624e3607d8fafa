"""Safe Harbor on the 98 Synthea patients: medml's configuration leaves none of the originals' identifying values,
keeps every reference resolving and every resource valid under fhir.resources (R4B); the Microsoft anonymizer's own
Safe Harbor configuration, on the same data, leaves some (organizations' cities and ZIP codes, DICOM UIDs), breaks
references (fullUrls removed) and bundles (request URLs removed): the reasons medml's exists."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

import pytest

from conftest import ANONYMIZER, KEYS, SYNTHEA, deid
from medml.deid import Anonymizer, VerificationReport, deidentify_path, load_config, verify

pytestmark = pytest.mark.skipif(not SYNTHEA.is_dir(), reason="the shared Synthea bundles are not here (MEDML_DATA)")
SUBSET = 12  # bundles for the anonymizer's configuration (the first ones hold an ImagingStudy)


@pytest.fixture(scope="module")
def medml_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, VerificationReport]:
    work = tmp_path_factory.mktemp("safe-harbor")
    proc = deid(["run", "safe-harbor", str(SYNTHEA), "out"], work, env=KEYS)
    assert proc.returncode == 0, proc.stderr
    assert "de-identified 21," in proc.stdout  # 21,812 patient resources + the organisations bundle's
    return work / "out", verify(SYNTHEA, work / "out")


def test_no_identifying_value_is_left(medml_run: tuple[Path, VerificationReport]) -> None:
    _, report = medml_run
    assert report.values_searched > 20_000
    assert report.paired_files == 99
    assert [(r.category, r.found_at) for r in report.residuals] == []


def test_references_still_resolve(medml_run: tuple[Path, VerificationReport]) -> None:
    _, report = medml_run
    assert report.references_original.unresolved == 0
    assert report.references.references > 70_000
    assert report.references.unresolved == 0


def test_patients_keep_their_quasi_identifiers_for_k_anonymity(medml_run: tuple[Path, VerificationReport]) -> None:
    """Race and ethnicity (US Core) are kept for fairness checks; ZIP codes to 3 digits; the birth year of those
    over 89 removed: the report's k is what these leave."""
    _, report = medml_run
    k = report.k_anonymity
    assert k.patients == 98
    assert all(len(values[2]) == 3 for values, _ in k.smallest)
    assert {values[3] for values, _ in k.smallest} != {"-"}
    assert sum(1 for values, _ in k.smallest if values[0] == "-") >= 1  # born more than 89 years ago


def load(path: Path) -> Any:
    raw = path.read_bytes()
    return json.loads(gzip.decompress(raw) if path.name.endswith(".gz") else raw)


def _strings_under(value: Any, key: str) -> list[Any]:
    if isinstance(value, dict):
        return [v for k, v in value.items() if k == key] + [x for v in value.values() for x in _strings_under(v, key)]
    if isinstance(value, list):
        return [x for v in value for x in _strings_under(v, key)]
    return []


def test_narratives_and_other_extensions_are_gone(medml_run: tuple[Path, VerificationReport]) -> None:
    out, _ = medml_run
    kept = {
        "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
        "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity",
        "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex",
        "ombCategory",
        "text",
        "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
    }
    for path in sorted(out.iterdir())[:30]:
        bundle = load(path)
        assert _strings_under(bundle, "div") == [], path.name
        urls = {e.get("url") for ext in _strings_under(bundle, "extension") for e in ext}
        assert urls <= kept, (path.name, urls - kept)


def test_every_bundle_is_valid_r4b(medml_run: tuple[Path, VerificationReport]) -> None:
    pytest.importorskip("fhir.resources")
    from fhir.resources.R4B.bundle import Bundle

    out, _ = medml_run
    for path in sorted(out.iterdir()):
        Bundle.model_validate(load(path))


def test_the_anonymizers_own_configuration_leaves_identifiers(tmp_path: Path) -> None:
    subset = tmp_path / "in"
    subset.mkdir()
    for path in sorted(SYNTHEA.glob("*.json.gz"))[:SUBSET]:
        os.symlink(path, subset / path.name)
    sample = ANONYMIZER / "configurations" / "configuration-sample.json"
    anonymizer = Anonymizer(load_config(sample, generate_missing_keys=True))
    deidentify_path(anonymizer, subset, tmp_path / "out")
    report = verify(subset, tmp_path / "out")
    found = {(r.category, r.found_at.split(" ")[-1].split(".")[0]) for r in report.residuals}
    assert ("DICOM UID", "ImagingStudy") in found
    assert ("city", "Organization") in found
    assert report.references.unresolved > report.references.references / 2
    pytest.importorskip("fhir.resources")
    from fhir.resources.R4B.bundle import Bundle
    from pydantic import ValidationError

    first = sorted((tmp_path / "out").iterdir())[0]
    with pytest.raises(ValidationError, match="url"):
        Bundle.model_validate(load(first))
