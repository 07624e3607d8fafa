"""A deployed PhysioNet model gives the cards and numbers it gave before the redesign of issue 12.

``golden_cards_physionet.json`` was recorded with the code before the redesign (commit cb31a62), from the model of
the ``model_home`` fixture deployed as in test_app.py, for the 12 stays of ``cds_requests.STAYS``. Only the random
uuids are left out; numbers must agree to a relative 1e-12. Record again (after a deliberate change of the cards)
with ``MEDML_RECORD_GOLDEN=1 pytest tests/service/test_cards_golden.py``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from cds_requests import hook_request, needs_physionet, prefetch_for

from medml.config import Settings
from medml.service.app import create_app
from medml.service.config import ServiceConfig
from medml.service.deploy import deploy

pytestmark = needs_physionet
GOLDEN = Path(__file__).with_name("golden_cards_physionet.json")
SERVICE = "physionet-2012-lgbm"
#: keys whose values are random on every call
VOLATILE = frozenset({"uuid"})


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def served(model_home: Settings, config: ServiceConfig, serve: Callable[[Any], str], stays: dict[str, Any]) -> Any:
    """The discovery entry, and for each stay its cards, system actions and logged score, uuids left out."""
    deploy(model_home, config, SERVICE, thresholds=(0.15, 0.40))
    out: dict[str, Any] = {"stays": {}}
    with httpx.Client(base_url=serve(create_app(model_home, config)), timeout=60) as client:
        (svc,) = client.get("/cds-services").json()["services"]
        out["discovery"] = svc
        tpl = svc["prefetch"]["observations"]
        wanted = [c.removeprefix("http://loinc.org|") for c in tpl.split("code=", 1)[1].split(",")]
        for pid in sorted(stays):
            r = client.post(f"/cds-services/{SERVICE}", json=hook_request(pid, prefetch_for(stays[pid], wanted)))
            assert r.status_code == 200, r.text
            out["stays"][pid] = _strip(r.json())
    for line in config.predictions_path.read_text().splitlines():
        record = json.loads(line)
        out["stays"][record["patient"]]["score"] = record["score"]
    return out


def _same(got: Any, want: Any, where: str = "") -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), where
        for k in want:
            _same(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _same(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and not isinstance(got, bool):
        assert isinstance(got, int | float) and math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-15), where
    else:
        assert got == want, where


def test_a_deployed_physionet_model_gives_the_recorded_cards_and_numbers(
    model_home: Settings, tmp_path: Path, serve: Callable[[Any], str], stays: dict[str, list[dict[str, Any]]]
) -> None:
    from medml.registry import load_bundle

    # the recording's model ran both tuning trials; a machine too slow for them in 3 s trains another model
    assert load_bundle(SERVICE, model_home).metadata.params["n_trials"] == 2
    config = ServiceConfig(home=tmp_path / "service", auth="off", max_body_bytes=2_000_000)
    got = served(model_home, config, serve, stays)
    if os.environ.get("MEDML_RECORD_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    want = json.loads(GOLDEN.read_text())
    assert sorted(got["stays"]) == sorted(want["stays"]) and len(want["stays"]) == 12
    _same(got, want)
