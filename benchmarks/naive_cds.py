"""The naive CDS Hooks baseline of bench_cds.py: what one writes first, in the same FastAPI + uvicorn.

Per request: the body parsed by FastAPI into a dict; every prefetch resource fully validated with fhir.resources
(R4B models); the features built by loading the prefetch into a fresh in-memory store (``build_features`` on the
resources); a plain ``predict_proba``. No JWT, no audit, no explanation: the floor is lower, not higher.

``--floor`` runs the HTTP floor instead: medml's own app (uvicorn, the same middleware, FastAPI routing) with one
more route, ``POST /floor/{service_id}``, that reads the body and returns a fixed card; no JWT, no parsing, no
scoring, no audit record. What the server stack costs before medml does any work.

Run: ``python benchmarks/naive_cds.py --home MEDML_HOME (--model NAME@V | --floor) --port 8900 [--workers 2]``
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fastapi import Request  # at module level: FastAPI resolves the route's annotations here
from fastapi.responses import Response


def create_app() -> Any:
    from fastapi import FastAPI, HTTPException
    from fhir.resources.R4B.bundle import Bundle
    from fhir.resources.R4B.patient import Patient

    from medml.config import get_settings
    from medml.fhir.features import ServingSpec, build_features
    from medml.registry import load_bundle

    bundle = load_bundle(os.environ["NAIVE_MODEL"], get_settings())
    spec = bundle.metadata.serving
    assert isinstance(spec, ServingSpec)
    app = FastAPI()

    @app.post("/cds-services/{service_id}")
    def hook(service_id: str, body: dict[str, Any]) -> dict[str, Any]:
        prefetch = body.get("prefetch") or {}
        patient = Patient.model_validate(prefetch["patient"])
        resources: list[dict[str, Any]] = [prefetch["patient"]]
        start = None
        for key in ("encounters", "observations"):
            Bundle.model_validate(prefetch[key])
            entries = [e["resource"] for e in prefetch[key].get("entry", [])]
            resources += entries
            if key == "encounters" and entries:
                start = datetime.fromisoformat(entries[0]["period"]["start"].replace("Z", "+00:00"))
        if start is None:
            raise HTTPException(400, "no encounter")
        index = min(datetime.now(UTC), start + timedelta(hours=spec.hours))
        import pandas as pd

        built = build_features(resources, spec.definition, pd.Series({patient.id: index}, dtype=object))
        risk = float(bundle.predict_proba(built.X[bundle.feature_names])[0, 1])
        return {"cards": [{"summary": f"Risk {risk:.0%}", "indicator": "info", "source": {"label": bundle.ref}}]}

    return app


def create_floor_app() -> Any:
    from medml.service.app import app_from_env
    from medml.service.middleware import audit_state

    app = app_from_env()
    card = {
        "uuid": "00000000-0000-0000-0000-000000000000",
        "summary": "Risk of death in hospital: 12% (below the warning threshold)",
        "indicator": "info",
        "detail": "A fixed card: the HTTP floor of the benchmark.",
        "source": {"label": "medml floor"},
    }
    answer = orjson.dumps({"cards": [card]})

    @app.post("/floor/{service_id}")
    async def floor(service_id: str, request: Request) -> Response:
        await request.body()
        guard = audit_state(request.scope)
        if guard is not None:  # the floor writes no audit record
            guard["done"] = True
        return Response(answer, media_type="application/json")

    return app


def main() -> None:
    import uvicorn

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--home", required=True)
    p.add_argument("--model")
    p.add_argument("--floor", action="store_true", help="serve the HTTP floor (a fixed card) instead")
    p.add_argument("--port", type=int, default=8900)
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args()
    os.environ["MEDML_HOME"] = a.home
    if not a.floor:
        os.environ["NAIVE_MODEL"] = a.model
    uvicorn.run(
        "naive_cds:create_floor_app" if a.floor else "naive_cds:create_app",
        factory=True,
        host="127.0.0.1",
        port=a.port,
        workers=a.workers,
        log_level="warning",
        access_log=False,
        server_header=False,
        app_dir=os.path.dirname(os.path.abspath(__file__)),
    )


if __name__ == "__main__":
    main()
