"""Several processes give the output one process gives, in the same order, and fail the same way: one line naming
the file and line, and no output left behind."""

from __future__ import annotations

import gzip
import json
from datetime import date
from pathlib import Path

import pytest

from conftest import KEYS, SYNTHEA, assert_clear_error, deid
from medml.deid import Anonymizer, InvalidResourceError, _io, built_in_config, deidentify_path, load_config
from medml.deid._parallel import CHUNK_LINES
from medml.errors import InputFileError

pytestmark = pytest.mark.skipif(not SYNTHEA.is_dir(), reason="the shared Synthea bundles are not here (MEDML_DATA)")


@pytest.fixture()
def anonymizer(monkeypatch: pytest.MonkeyPatch) -> Anonymizer:
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(_io, "MIN_PARALLEL_BYTES", 0)  # small inputs too, so that the workers run here
    return Anonymizer(load_config(built_in_config("safe-harbor")), today=date(2026, 1, 1))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twenty Synthea bundles, and their resources as one NDJSON file of more than one chunk."""
    folder = tmp_path_factory.mktemp("parallel")
    (folder / "bundles").mkdir()
    lines = []
    for path in sorted(SYNTHEA.glob("*_*.json.gz"))[:20]:
        (folder / "bundles" / path.name).write_bytes(path.read_bytes())
        lines += [json.dumps(e["resource"]) for e in json.loads(gzip.decompress(path.read_bytes()))["entry"]]
    assert len(lines) > max(2 * CHUNK_LINES, 4500)
    (folder / "all.ndjson").write_text("\n".join(lines) + "\n")
    return folder


def test_two_workers_write_what_one_writes(anonymizer: Anonymizer, inputs: Path, tmp_path: Path) -> None:
    for name in ("all.ndjson", "bundles"):
        one = deidentify_path(anonymizer, inputs / name, tmp_path / f"one-{name}", workers=1)
        two = deidentify_path(anonymizer, inputs / name, tmp_path / f"two-{name}", workers=2)
        assert (one.resources, one.files) == (two.resources, two.files) and one.resources > 2000
        if name == "bundles":
            for f in sorted((tmp_path / f"one-{name}").iterdir()):
                assert gzip.decompress(f.read_bytes()) == gzip.decompress(
                    (tmp_path / f"two-{name}" / f.name).read_bytes()
                )
        else:
            assert (tmp_path / f"one-{name}").read_bytes() == (tmp_path / f"two-{name}").read_bytes()


@pytest.mark.parametrize(
    ("bad", "error", "fragment"),
    [
        ("{not json", InputFileError, "line 4500 is not JSON"),
        ('{"resourceType": "Patient", "nme": []}', InvalidResourceError, "line 4500"),
    ],
)
def test_a_bad_line_in_a_later_chunk_stops_the_run_and_leaves_nothing(
    anonymizer: Anonymizer, inputs: Path, tmp_path: Path, bad: str, error: type[Exception], fragment: str
) -> None:
    lines = (inputs / "all.ndjson").read_text().splitlines()
    lines[4499] = bad
    source = tmp_path / "in.ndjson"
    source.write_text("\n".join(lines) + "\n")
    with pytest.raises(error, match=fragment):
        deidentify_path(anonymizer, source, tmp_path / "out.ndjson", workers=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.ndjson"]


def test_a_bad_number_of_workers_is_one_clear_error(tmp_path: Path) -> None:

    proc = deid(["run", "safe-harbor", str(SYNTHEA), "out", "--workers", "0"], tmp_path, env=KEYS)
    assert_clear_error(proc, "--workers")
    assert not (tmp_path / "out").exists()
