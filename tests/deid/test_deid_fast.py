"""The compiled walk (medml.deid._fast) gives what the general walk gives, byte for byte and error for error, on real
data: every Synthea bundle and PhysioNet 2012 stays under Safe Harbor, and Synthea under each of the Microsoft
anonymizer's own sample configurations."""

from __future__ import annotations

import gzip
import json
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest

from conftest import ANONYMIZER, KEYS, SYNTHEA
from medml.config import get_settings
from medml.deid import Anonymizer, built_in_config, load_config
from medml.deid._errors import DeidProcessingError, InvalidResourceError, RuleNotApplicableError
from medml.errors import MedmlError
from medml.fhir.convert import physionet2012 as convert

PHYSIONET = get_settings().data_root / "icu" / "physionet-2012-set-a"
CONFIGURATIONS = ANONYMIZER / "configurations"
pytestmark = pytest.mark.skipif(not SYNTHEA.is_dir(), reason="the shared Synthea bundles are not here (MEDML_DATA)")


def _outputs(config: Path, resources: list[bytes], compiled: bool) -> list[bytes]:
    """Each resource de-identified (or the error it raised), by a fresh engine with or without the compiled walk."""
    engine = Anonymizer(load_config(config), today=date(2026, 1, 1), seed=7)
    if not compiled:
        engine._fast = None  # the general walk alone: the reference
    out = []
    for resource in map(orjson.loads, resources):
        try:
            out.append(orjson.dumps(engine.anonymize(resource, file_name="in.ndjson", folder_name="folder")))
        except (InvalidResourceError, DeidProcessingError, RuleNotApplicableError) as e:
            out.append(f"{type(e).__name__}: {e}".encode())
    return out


def _assert_same(config: Path, resources: list[bytes]) -> None:
    general = _outputs(config, resources, compiled=False)
    compiled = _outputs(config, resources, compiled=True)
    assert len(general) == len(compiled) == len(resources)
    for i, (a, b) in enumerate(zip(general, compiled, strict=True)):
        assert a == b, f"resource {i} ({orjson.loads(resources[i])['resourceType']}) differs under {config.name}"


@pytest.fixture(scope="module")
def bundles() -> list[dict[str, Any]]:
    return [json.loads(gzip.decompress(p.read_bytes())) for p in sorted(SYNTHEA.glob("*.json.gz"))]


def _entries(bundles: list[dict[str, Any]]) -> list[bytes]:
    return [orjson.dumps(e["resource"]) for b in bundles for e in b["entry"]]


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)


def test_safe_harbor_on_every_synthea_bundle_and_a_third_of_their_resources(bundles: list[dict[str, Any]]) -> None:
    assert len(bundles) >= 99
    _assert_same(built_in_config("safe-harbor"), [orjson.dumps(b) for b in bundles])
    _assert_same(built_in_config("safe-harbor"), _entries(bundles[::3]))


@pytest.mark.skipif(not PHYSIONET.is_dir(), reason="the PhysioNet 2012 set A is not here (MEDML_DATA)")
def test_safe_harbor_on_physionet_stays(tmp_path: Path) -> None:
    counts = convert.write_ndjson(PHYSIONET, tmp_path, limit=20)
    assert counts["Observation"] > 5_000
    for name in ("Patient", "Encounter", "Observation"):
        lines = (tmp_path / f"{name}.ndjson").read_bytes().splitlines()
        _assert_same(built_in_config("safe-harbor"), lines)


def test_the_anonymizers_sample_configurations_on_synthea(bundles: list[dict[str, Any]]) -> None:
    if not CONFIGURATIONS.is_dir():
        pytest.skip("the anonymizer's configurations are not here (MEDML_DATA)")
    resources = _entries(bundles[:6])
    checked = 0
    for config in sorted(CONFIGURATIONS.glob("*.json")):
        try:
            load_config(config)
        except MedmlError:
            continue  # a configuration the engine refuses (STU3, a bad key): nothing to compare
        _assert_same(config, resources)
        checked += 1
    assert checked >= 10
