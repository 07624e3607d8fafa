"""What recording a score in the monitoring store costs a CDS hook call (goal: under 0.2 ms).

1. The call the request path makes, timed one by one: ``state.recorder.record(prediction_row(dep, result, job,
   hook))`` for the PhysioNet 2012 deployment (225 features, the service's real Deployment and Scored objects), with
   the recorder's background thread writing to a DuckDB file meanwhile; beside it the JSON lines PredictionLog append
   the service already made before (for scale), and how fast the background thread writes.
2. End to end (``--e2e``, trains a small PhysioNet model first): real uvicorn on loopback, two apps side by side
   that differ only in ``monitor: true/false``, requests interleaved between them (so that the machine's load falls
   on both alike); the latency of each and the difference.

Usage: ``.venv/bin/python benchmarks/bench_monitor_recording.py [--calls 20000] [--e2e --requests 300 [--home H]]``
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np


def deployment() -> Any:
    from medml.fhir.tasks import physionet_serving
    from medml.service.deploy import Deployment, HookService

    return Deployment(
        service_id="physionet-2012-lgbm",
        model="physionet-2012-lgbm@1",
        title="bench",
        description="bench",
        thresholds=(0.15, 0.4),
        thresholds_note="bench",
        served=HookService(physionet_serving(48), None),
        intended_use="benchmark",
    )


def scored(columns: list[str], rng: np.random.Generator) -> Any:
    from medml.service.scoring import Scored

    values = rng.normal(size=len(columns))
    features = {c: (None if v > 1.5 else float(v)) for c, v in zip(columns, values, strict=True)}
    return Scored(
        risk=float(rng.random()),
        category="warning",
        factors=[],
        missing=[],
        index_time=datetime.now(UTC) - timedelta(hours=2),
        encounter_id="enc-1",
        hours_observed=48.0,
        results_used=120,
        features=features,
    )


def percentiles(ns: list[int]) -> tuple[float, float, float, float]:
    a = np.asarray(ns, dtype=float) / 1000  # microseconds
    return float(np.mean(a)), float(np.median(a)), float(np.percentile(a, 99)), float(a.max())


def micro(calls: int) -> list[tuple[str, tuple[float, float, float, float]]]:
    from medml.monitor.recorder import Recorder
    from medml.monitor.records import PredictionLog, PredictionRecord, summarize_inputs
    from medml.monitor.store import MonitorStore
    from medml.service.core import iso
    from medml.service.patient_view import prediction_row
    from medml.service.scoring import Job

    dep = deployment()
    columns = dep.serving.definition.columns()
    rng = np.random.default_rng(0)
    results = [scored(columns, rng) for _ in range(200)]
    rows: list[tuple[str, tuple[float, float, float, float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        recorder = Recorder(MonitorStore(Path(tmp) / "monitor.duckdb"), interval_s=0.5)
        job = Job("patient-1", [], "enc-1", datetime.now(UTC))
        recorder.record(prediction_row(dep, results[0], job, "warm-up"))
        recorder.flush()
        times: list[int] = []
        for i in range(calls):
            result = results[i % len(results)]
            job = Job(f"patient-{i}", [], "enc-1", datetime.now(UTC))
            hook = str(i)
            t = time.perf_counter_ns()
            recorder.record(prediction_row(dep, result, job, hook))  # exactly what answer() runs
            times.append(time.perf_counter_ns() - t)
            if i % 50 == 0:
                time.sleep(0.001)  # requests arrive over time: the writer thread gets its turns
        rows.append(("recorder.record(prediction_row(...)): the request path", percentiles(times)))
        t0 = time.perf_counter()
        assert recorder.flush(600)
        recorder.close()
        written = len(MonitorStore(Path(tmp) / "monitor.duckdb").predictions(dep.name))
        drain = time.perf_counter() - t0
        print(f"background writer: {written:,} rows in the store; the last queue drained in {drain:.2f} s")

        log = PredictionLog(Path(tmp) / "predictions.jsonl")
        times = []
        for i in range(min(calls, 5000)):
            result = results[i % len(results)]
            t = time.perf_counter_ns()
            log.append(
                PredictionRecord(
                    model=dep.model,
                    service=dep.service_id,
                    patient=f"patient-{i}",
                    time=iso(datetime.now(UTC)),
                    score=result.risk,
                    risk=result.category,
                    inputs=summarize_inputs(result.features, columns),
                    index_time=iso(result.index_time),
                    hook_instance=str(i),
                )
            )
            times.append(time.perf_counter_ns() - t)
        log.close()
        rows.append(("PredictionLog.append (JSONL, existed before; for scale)", percentiles(times)))

        store = MonitorStore(Path(tmp) / "throughput.duckdb")
        batch = [
            prediction_row(dep, results[i % 200], Job(f"p{i}", [], None, datetime.now(UTC)), None) for i in range(5000)
        ]
        t0 = time.perf_counter()
        store.record(batch)
        dt = time.perf_counter() - t0
        print(f"one group write of 5,000 rows x {len(columns)} features: {dt:.2f} s ({5000 / dt:,.0f} rows/s)")
    return rows


# ---- end to end ----------------------------------------------------------------------------------------------------


def e2e(requests: int, home: Path | None, aa: bool = False) -> list[tuple[str, tuple[float, float, float, float]]]:
    import httpx
    import uvicorn

    from medml.config import Settings, get_settings
    from medml.fhir.convert.physionet2012 import iter_stays
    from medml.pipelines.catalogue import load_dataset
    from medml.pipelines.tabular import TrainConfig, train
    from medml.service.app import create_app
    from medml.service.config import ServiceConfig
    from medml.service.deploy import deploy

    tmp = Path(tempfile.mkdtemp(prefix="bench-monitor-"))
    settings = Settings(home=home or tmp / "home", data_root=get_settings().data_root)
    os.environ["MEDML_HOME"] = str(settings.home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    if home is None:
        print("training a small PhysioNet 2012 model (two trials) ...", flush=True)
        how = TrainConfig(model="lgbm", budget_seconds=600, max_trials=2, n_boot=50)
        train(load_dataset("physionet-2012"), how, settings)
    apps = {}
    # --aa: both arms with monitoring off, to see the noise floor of the comparison
    for name, on in (("monitor on", not aa), ("monitor off", False)):
        config = ServiceConfig(
            home=tmp / name.replace(" ", "-"), auth="off", monitor=on, monitor_store=tmp / "monitor.duckdb"
        )
        deploy(settings, config, "physionet-2012-lgbm", thresholds=(0.15, 0.40))
        apps[name] = create_app(settings, config)
    set_a = settings.data_root / "icu" / "physionet-2012-set-a"
    stays = [s for _, s in zip(range(60), iter_stays(set_a), strict=False)]
    servers, urls = [], {}
    for name, app in apps.items():
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.01)
        servers.append(server)
        urls[name] = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    bodies = [hook_body(stay) for stay in stays]
    times: dict[str, list[int]] = {name: [] for name in apps}
    with httpx.Client(timeout=60) as client:
        for i in range(requests + 20):
            order = list(urls.items()) if i % 2 == 0 else list(urls.items())[::-1]
            for name, url in order:
                body = bodies[i % len(bodies)]
                body["hookInstance"] = str(uuid.uuid4())
                t = time.perf_counter_ns()
                r = client.post(f"{url}/cds-services/physionet-2012-lgbm", json=body)
                dt = time.perf_counter_ns() - t
                assert r.status_code == 200, r.text
                if i >= 20:  # the first calls warm each app up
                    times[name].append(dt)
    for server in servers:
        server.should_exit = True
    time.sleep(1)
    recorder = apps["monitor on"].state.medml.recorder
    if recorder is not None:
        print(f"e2e: {recorder.written:,} predictions recorded by the app with monitoring on")
    else:
        print("e2e: A/A run, both apps with monitoring off (the 'monitor on' rows below are off too)")
    return [(f"hook call, {name} (loopback, 1 client)", percentiles(ns)) for name, ns in times.items()]


def hook_body(stay: list[dict[str, Any]]) -> dict[str, Any]:
    from medml.fhir.tasks import physionet_definition

    codes = {c if "|" in c else f"http://loinc.org|{c}" for c in physionet_definition(48).codes()}

    def bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}

    def coded(obs: dict[str, Any]) -> bool:
        return any(f"{c.get('system')}|{c.get('code')}" in codes for c in obs.get("code", {}).get("coding", []))

    patient = stay[0]
    return {
        "hook": "patient-view",
        "hookInstance": "",
        "context": {"userId": "Practitioner/bench", "patientId": patient["id"]},
        "prefetch": {
            "patient": patient,
            "encounters": bundle([r for r in stay if r["resourceType"] == "Encounter"]),
            "observations": bundle([r for r in stay if r["resourceType"] == "Observation" and coded(r)]),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--e2e", action="store_true", help="also time real hook calls with monitoring on and off")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--aa", action="store_true", help="e2e with both arms off: the comparison's noise floor")
    parser.add_argument("--home", type=Path, help="a MEDML_HOME with physionet-2012-lgbm registered (else trained)")
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average {load[0]:.1f}")
    rows = micro(args.calls)
    if args.e2e:
        rows += e2e(args.requests, args.home, args.aa)
    print()
    print("| what is timed | mean (us) | median (us) | p99 (us) | max (us) |")
    print("|---|---:|---:|---:|---:|")
    for what, (mean, median, p99, most) in rows:
        print(f"| {what} | {mean:,.1f} | {median:,.1f} | {p99:,.1f} | {most:,.1f} |")
    if args.e2e:
        on = next(r for w, r in rows if "monitor on" in w)
        off = next(r for w, r in rows if "monitor off" in w)
        print(f"\nend to end, monitor on - off: mean {on[0] - off[0]:+,.0f} us, median {on[1] - off[1]:+,.0f} us")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (at the start {load[0]:.1f})")


if __name__ == "__main__":
    main()
