"""Nothing lost for ML: PhysioNet 2012 in-hospital death trained from the FHIR store and from its Safe Harbor copy.

Run: ``.venv/bin/python benchmarks/bench_deid_ml.py`` (``--limit N`` stays, default all 4,000 of set A;
``--budget S`` seconds of hyperparameter search, default 30). Appends its section to
``benchmarks/results-deid.md`` (replacing an earlier run's).

1. Set A is converted to FHIR NDJSON (``medml.fhir.convert.physionet2012``) and de-identified with medml's
   Safe Harbor configuration (``deidentify_path``, what ``medml deid run safe-harbor`` calls): ids and references
   hashed, dates shifted by one offset per patient with their time of day kept, narratives, notes and extensions
   removed. Both go into a FHIR store.
2. The task is built from each store by ``medml.fhir.tasks.physionet_in_hospital_death``. The de-identified
   store's stays are matched to the originals by their hashed ids (the benchmark holds the key, as the data's
   custodian does): the same rows, the same split.
3. The features are compared cell by cell (ages over 89 are reported: Safe Harbor's group of its own).
4. One LightGBM model's hyperparameters are searched on the original training split (``--budget`` seconds),
   then a model with those parameters and seed is fitted on each copy's training split and scored on its test
   split; the AUROCs and their difference are reported (goal: within 0.005).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from medml.config import get_settings
from medml.data import patient_split
from medml.deid import Anonymizer, built_in_config, deidentify_path, load_config
from medml.deid._methods import crypto_hash
from medml.fhir import tasks
from medml.fhir.convert import physionet2012 as convert
from medml.fhir.ingest import ingest
from medml.fhir.store import FhirStore
from medml.fhir.view import run_view
from medml.fhir.views import get_view
from medml.models import make_model, tune

RESULTS = Path(__file__).with_name("results-deid.md")
SECTION = "## Nothing lost for ML: PhysioNet 2012 from the de-identified FHIR store (`benchmarks/bench_deid_ml.py`)"
SET_A = get_settings().data_root / "icu" / "physionet-2012-set-a"
KEYS = {"MEDML_DEID_CRYPTO_HASH_KEY": "benchmark-ml-hash-key", "MEDML_DEID_DATE_SHIFT_KEY": "benchmark-ml-shift-key"}
AGE_TOP = 90


def _stays_of_deidentified(store: FhirStore, original_ids: list[str]) -> pd.DataFrame:
    """``tasks.stays`` on a store whose ids are hashed: each Encounter matched back to its stay by the hash of the
    original id (under the key), everything else as ``tasks.stays`` does."""
    back = {crypto_hash(i, KEYS["MEDML_DEID_CRYPTO_HASH_KEY"]): i for i in original_ids}
    enc = run_view(store.con, get_view("encounters")).to_pandas()
    enc["encounter_id"] = enc["encounter_id"].map(back)
    enc = enc[enc["encounter_id"].notna()].copy()
    enc["admitted"] = pd.to_datetime(enc["start"], utc=True, errors="coerce")
    enc["stay_id"] = enc["encounter_id"].str.removeprefix(f"{convert.ID_PREFIX}-")
    enc["died"] = (enc["discharge_disposition"] == "exp").astype(np.int8)
    return enc.sort_values("stay_id", key=lambda s: s.astype(np.int64)).reset_index(drop=True)


def _task(store: FhirStore, original_ids: list[str] | None) -> Any:
    if original_ids is None:
        return tasks.physionet_in_hospital_death(store)
    plain = tasks.stays
    tasks.stays = lambda st: _stays_of_deidentified(st, original_ids)  # type: ignore[assignment]
    try:
        return tasks.physionet_in_hospital_death(store)
    finally:
        tasks.stays = plain  # type: ignore[assignment]


def _write_section(text: str) -> None:
    old = RESULTS.read_text() if RESULTS.is_file() else ""
    if SECTION in old:
        start = old.index(SECTION)
        rest = old[start + len(SECTION) :]
        end = rest.find("\n## ")
        old = old[:start] + (rest[end + 1 :] if end >= 0 else "")
    RESULTS.write_text(old.rstrip() + "\n\n" + text.strip() + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="stays to convert (default: all)")
    parser.add_argument("--budget", type=float, default=30.0, help="seconds of hyperparameter search")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.update(KEYS)
    load = os.getloadavg()[0]
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-deid-ml-") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        counts = convert.write_ndjson(SET_A, work / "fhir", limit=args.limit, compress=True)
        timings["convert to FHIR"] = time.perf_counter() - t

        t = time.perf_counter()
        anonymizer = Anonymizer(load_config(built_in_config("safe-harbor")))
        summary = deidentify_path(anonymizer, work / "fhir", work / "deid")
        timings["de-identify (Safe Harbor)"] = time.perf_counter() - t

        stores = {}
        for name in ("fhir", "deid"):
            t = time.perf_counter()
            store = FhirStore(work / f"{name}.duckdb")
            ingest(store, [work / name])
            stores[name] = store
            timings[f"ingest {name}"] = time.perf_counter() - t

        t = time.perf_counter()
        original = _task(stores["fhir"], None)
        ids = [f"{convert.ID_PREFIX}-{s}" for s in original.ids]
        deid = _task(stores["deid"], ids)
        timings["features, both stores"] = time.perf_counter() - t
        for store in stores.values():
            store.close()

    # the same rows in the same order
    assert list(original.ids) == list(deid.ids), "the de-identified store has other stays"
    assert np.array_equal(original.y.values, deid.y.values)
    same_columns = list(original.X.columns) == list(deid.X.columns)
    a = original.X.drop(columns=["Gender"]).to_numpy(float)
    b = deid.X.drop(columns=["Gender"]).to_numpy(float)
    equal = np.isclose(a, b, rtol=1e-12, atol=0, equal_nan=True)
    g0, g1 = original.X["Gender"], deid.X["Gender"]
    gender_equal = ((g0.astype(str) == g1.astype(str)) | (g0.isna() & g1.isna())).to_numpy()  # missing on both
    differing_cells = int((~equal).sum() + (~gender_equal).sum())
    differing_rows = int((~equal.all(axis=1) | ~gender_equal).sum())
    # first, last and the static inputs (first) pick one of several values measured at the same instant by the
    # Observation's id, which de-identification hashes: a different one of the tied values may be picked
    columns = list(original.X.drop(columns=["Gender"]).columns)
    tie_sensitive = np.array([c.endswith(("_first", "_last")) or c in ("Age", "Height") for c in columns])
    tie_cells = int((~equal[:, tie_sensitive]).sum())
    other_cells = int((~equal[:, ~tie_sensitive]).sum())
    over_89 = int((original.X["Age"] >= AGE_TOP).sum())
    over_89_changed = int(
        (original.X["Age"][original.X["Age"] >= AGE_TOP] != deid.X["Age"][original.X["Age"] >= AGE_TOP]).sum()
    )

    split = patient_split(original.groups, original.y.values, fractions=(0.6, 0.2, 0.2), seed=args.seed)
    train_idx = np.concatenate([split.train, split.calibration])
    t = time.perf_counter()
    tuned = tune("lgbm", original.subset(train_idx), budget_seconds=args.budget, seed=args.seed, max_trials=30)
    timings["hyperparameter search"] = time.perf_counter() - t
    aurocs = {}
    for name, ds in (("original", original), ("de-identified", deid)):
        t = time.perf_counter()
        model = make_model("lgbm", ds.features, tuned.params, seed=args.seed)
        train_ds, test_ds = ds.subset(train_idx), ds.subset(split.test)
        model.fit(train_ds.X, train_ds.binary_target.values)
        aurocs[name] = float(roc_auc_score(test_ds.binary_target.values, model.predict_proba(test_ds.X)[:, 1]))
        timings[f"fit and score, {name}"] = time.perf_counter() - t
    diff = aurocs["de-identified"] - aurocs["original"]

    lines = [
        SECTION,
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; load average at start {load:.2f} (shared with other work: times are "
        f"wall-clock and only indicative). Data: PhysioNet/CinC 2012 set A, {len(original):,} stays, "
        f"{counts['Observation']:,} Observations; {summary.resources:,} resources de-identified with medml's "
        "safe-harbor configuration (keys from the environment).",
        "",
        "| | value |",
        "|---|---|",
        f"| stays (rows), original / de-identified | {len(original):,} / {len(deid):,} |",
        f"| features, original / de-identified (same names, same order) | {original.X.shape[1]} / "
        f"{deid.X.shape[1]} ({'yes' if same_columns else 'NO'}) |",
        f"| feature cells that differ | {differing_cells:,} of {original.X.size:,} |",
        f"| rows with any difference | {differing_rows:,} |",
        f"| of the differing cells: first, last, Age or Height (one of several values recorded at the same "
        f"instant, ties broken by the Observation id, which is hashed) | {tie_cells:,} |",
        f"| of the differing cells: min, max, mean, count, hours since, Gender | "
        f"{other_cells + int((~gender_equal).sum()):,} |",
        f"| stays aged over 89 (Age 90, MIMIC-II's top code; Safe Harbor's own group) | {over_89:,}; "
        f"{over_89_changed} changed |",
        f"| labels equal | {'yes' if np.array_equal(original.y.values, deid.y.values) else 'NO'} |",
        f"| LightGBM, parameters searched {args.budget:g} s on the original ({tuned.n_trials} trials), seed "
        f"{args.seed}: test AUROC, original | {aurocs['original']:.4f} |",
        f"| the same, trained and tested on the de-identified store | {aurocs['de-identified']:.4f} |",
        f"| difference (goal: within 0.005) | {diff:+.4f} ({'met' if abs(diff) <= 0.005 else 'NOT met'}) |",
        "",
        "Split by patient (60/20/20, the training and calibration parts used for training), "
        f"{len(split.test):,} test stays, the same stays on both sides.",
        "",
        "| step | seconds |",
        "|---|---:|",
        *[f"| {k} | {v:.1f} |" for k, v in timings.items()],
    ]
    text = "\n".join(lines)
    print(text)
    _write_section(text)


if __name__ == "__main__":
    main()
