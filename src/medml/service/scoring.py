"""One patient scored from FHIR by a deployed model: prefetch in, calibrated risk and its reasons out.

The features come from the model's own :class:`~medml.fhir.features.FeatureDefinition`, compiled once per
deployment by :class:`~medml.fhir.feature_row.FeatureRowProgram` from the same ViewDefinitions and aggregates that
built the training data, and run on the parsed prefetch in Python: no SQL engine per request. Where the data take a
shape that program leaves to the reference (:class:`~medml.fhir.feature_row.Unsupported`), the patient goes through
:func:`medml.fhir.features.build_features` over the prefetch loaded into a small in-memory DuckDB store (one per
worker thread, emptied between requests), the function training used. Either way a stay scored here and in
training gives the same numbers (``tests/fhir/test_feature_row.py``, ``tests/service/test_app.py``).
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from medml.errors import MedmlError
from medml.explain.contributions import Factor, top_factors
from medml.fhir.feature_row import FeatureRowProgram, PatientFeatures, Unsupported
from medml.fhir.features import BuiltFeatures, FeatureDefinition, build_features
from medml.fhir.store import FhirStore
from medml.registry import ModelBundle
from medml.service.deploy import Deployment
from medml.service.survival import HorizonRisks, risks_by_horizon, survival_serving

LOINC = "http://loinc.org"


class PrefetchError(MedmlError):
    """A prefetch (or fetched data) that cannot be what the service asked for: a 400 to the EHR."""


@dataclass
class Scored:
    """A patient's risk from one model, with what it rests on."""

    risk: float
    category: str
    factors: list[Factor]
    missing: list[str]
    index_time: datetime
    encounter_id: str | None
    #: hours from the encounter's start to the index time, when the model is anchored to an encounter
    hours_observed: float | None
    results_used: int
    dropped: dict[str, int] = field(default_factory=dict)
    #: the model's inputs, by column, as scored
    features: dict[str, Any] = field(default_factory=dict)
    #: a survival model's risk by each of its horizons (``risk`` is the first); None for a binary model
    horizons: HorizonRisks | None = None


@dataclass
class NotScored:
    """No score for this patient now: the model does not apply (no encounter of the kind it was built for), or
    ``insufficient``: too few usable results to score, which the clinician is told on a card of its own."""

    reason: str
    insufficient: bool = False
    encounter_id: str | None = None
    missing: tuple[str, ...] = ()
    dropped: dict[str, int] = field(default_factory=dict)


def prefetch_templates(deployment: Deployment) -> dict[str, str]:
    """The FHIR queries the service needs, as CDS Hooks prefetch templates: exactly the codes the model reads."""
    spec = deployment.serving
    codes = ",".join(c if "|" in c else f"{LOINC}|{c}" for c in spec.definition.codes())
    templates = {"patient": "Patient/{{context.patientId}}"}
    if spec.anchor == "encounter-start":
        templates["encounters"] = "Encounter?patient={{context.patientId}}"
    templates["observations"] = "Observation?patient={{context.patientId}}&code=" + codes
    return templates


#: what each prefetch key must hold: a resource type (a read) or the entries' type of a searchset Bundle
EXPECTED = {
    "patient": ("Patient", None),
    "encounters": ("Bundle", "Encounter"),
    "observations": ("Bundle", "Observation"),
}


def collect(prefetch: Mapping[str, Any], patient_id: str) -> list[dict[str, Any]]:
    """The resources of a complete prefetch, checked: right types, and every one about this patient.

    A key whose value is null means the EHR looked and found nothing. Entries of other types in a search Bundle
    (an OperationOutcome with search.mode "outcome", an _include) are left out.
    """
    out: list[dict[str, Any]] = []
    for key, value in prefetch.items():
        if key not in EXPECTED or value is None:
            continue
        rtype, entry_type = EXPECTED[key]
        if not isinstance(value, Mapping) or value.get("resourceType") != rtype:
            got = value.get("resourceType") if isinstance(value, Mapping) else type(value).__name__
            raise PrefetchError(
                f"prefetch '{key}' is a {got}, expected a {rtype}"
                + (f" of {entry_type} resources" if entry_type else ""),
                "send what the service's discovery prefetch template asks for",
            )
        if entry_type is None:
            if value.get("id") != patient_id:
                raise PrefetchError(
                    f"prefetch '{key}' is Patient/{value.get('id')}, but context.patientId is {patient_id}",
                    "prefetch the patient in context",
                )
            out.append(dict(value))
            continue
        entries = value.get("entry") or []
        if not isinstance(entries, list):
            raise PrefetchError(f"prefetch '{key}': Bundle.entry is not a list", "send a searchset Bundle")
        for i, entry in enumerate(entries):
            res = entry.get("resource") if isinstance(entry, Mapping) else None
            if not isinstance(res, Mapping) or res.get("resourceType") != entry_type:
                continue
            ref = (res.get("subject") or res.get("patient") or {}).get("reference", "")
            if not _is_patient(ref, patient_id):
                raise PrefetchError(
                    f"prefetch '{key}' entry {i} ({entry_type}/{res.get('id')}) is about "
                    f"{ref or 'no one'}, not Patient/{patient_id}",
                    "prefetch only the patient in context",
                )
            out.append(dict(res))
    return out


def _is_patient(reference: Any, patient_id: str) -> bool:
    return isinstance(reference, str) and (
        reference == f"Patient/{patient_id}" or reference.endswith(f"/Patient/{patient_id}")
    )


_local = threading.local()
_scratch_stores: list[FhirStore] = []
_scratch_lock = threading.Lock()


def _scratch() -> FhirStore:
    """This thread's in-memory store (creating a DuckDB connection costs more than a whole request)."""
    store: FhirStore | None = getattr(_local, "store", None)
    if store is None:
        store = FhirStore(":memory:")
        # one DuckDB thread per request thread: the service runs a worker process per core already
        store.con.execute("SET threads = 1")
        _local.store = store
        with _scratch_lock:
            _scratch_stores.append(store)
    return store


def close_scratch_stores() -> None:
    """Close every thread's store (at shutdown: DuckDB must not be torn down by interpreter exit in another thread)."""
    with _scratch_lock:
        for store in _scratch_stores:
            store.close()
        _scratch_stores.clear()
    _local.__dict__.clear()


atexit.register(close_scratch_stores)


@dataclass(frozen=True)
class Job:
    """One patient to score: the checked prefetch, the encounter in context and the time of the request."""

    patient_id: str
    resources: list[dict[str, Any]]
    encounter_id: str | None
    now: datetime


class Scorer:
    """A deployment and its loaded model, ready to score patients, one at a time or many in one pass."""

    def __init__(self, deployment: Deployment, bundle: ModelBundle) -> None:
        self.deployment = deployment
        self.bundle = bundle
        self.spec = deployment.serving
        self.columns = bundle.feature_names
        self.templates = prefetch_templates(deployment)
        self.program = FeatureRowProgram(self.spec.definition)
        #: a survival model's horizons and evaluation (None for a binary model)
        self.survival = survival_serving(bundle)
        _predict_on_one_thread(bundle.model)
        model_columns = set(self.columns)
        #: where the model's count columns are in a feature row (the results a score rests on)
        self._counts = [j for j, c in enumerate(self.program.columns) if c.endswith("_count") and c in model_columns]
        #: patients whose data went to the DuckDB reference (Unsupported by the compiled program)
        self.referred = 0

    def score(
        self,
        patient_id: str,
        resources: list[dict[str, Any]],
        *,
        encounter_id: str | None = None,
        now: datetime | None = None,
    ) -> Scored | NotScored:
        return self.score_many([Job(patient_id, resources, encounter_id, now or datetime.now(UTC))])[0]

    def score_many(self, jobs: list[Job]) -> list[Scored | NotScored]:
        """Score several patients with one pass of the feature SQL and one model call (distinct patient ids)."""
        if len({j.patient_id for j in jobs}) != len(jobs):
            raise ValueError("score_many needs distinct patients; score the same patient in separate calls")
        out: list[Scored | NotScored] = []
        ready: list[tuple[int, Job, tuple[str, datetime] | None, datetime]] = []
        for i, job in enumerate(jobs):
            timing = self._index_time(job)
            if isinstance(timing, NotScored):
                out.append(timing)
                continue
            out.append(NotScored("pending"))
            ready.append((i, job, *timing))
        if not ready:
            return out
        rows = self._features([(job, t) for _, job, _, t in ready])
        X = self.program.frame(rows, self.columns)
        model = self.bundle.model
        both = getattr(model, "predict_proba_and_contributions", None)
        by_horizon = None
        if both is not None:  # the features converted once for the score and its explanation
            proba, contributions = both(X)
            risks = proba[:, 1]
            factors = top_factors(model, X, k=5, contributions=contributions)
        elif self.survival is not None:  # the risk by each horizon; the card's indicator follows the first
            by_horizon = risks_by_horizon(model, X)
            risks = by_horizon[:, 0]
            factors = top_factors(model, X, k=5)
        else:
            risks = self.bundle.predict_proba(X)[:, 1]
            factors = top_factors(model, X, k=5)
        definition = self.spec.definition
        wanted = self.spec.min_measured
        for row, (i, _, encounter, t) in enumerate(ready):
            features = rows[row]
            risk = float(risks[row])
            dropped = {f"{n} ({why})": k for (n, why), k in features.dropped.items()}
            missing = features.missing
            measured = len(definition.measurements) - len(missing)
            if measured < wanted:
                out[i] = NotScored(
                    f"only {measured} of the model's {len(definition.measurements)} measurements have a "
                    f"usable result (at least {wanted} needed to score)",
                    insufficient=True,
                    encounter_id=encounter[0] if encounter else None,
                    missing=tuple(missing),
                    dropped=dropped,
                )
                continue
            out[i] = Scored(
                risk=risk,
                category=self.deployment.category(risk),
                factors=factors[row],
                missing=missing,
                index_time=t,
                encounter_id=encounter[0] if encounter else None,
                hours_observed=(t - encounter[1]).total_seconds() / 3600 if encounter else None,
                results_used=int(np.nansum([features.values[j] for j in self._counts])),
                dropped=dropped,
                features=self.program.as_dict(features, self.columns),
                horizons=None
                if by_horizon is None or self.survival is None
                else HorizonRisks(self.survival, tuple(map(float, by_horizon[row])), encounter[1] if encounter else t),
            )
        return out

    def _features(self, jobs: list[tuple[Job, datetime]]) -> list[PatientFeatures]:
        """Each patient's features: the compiled program, or the DuckDB reference where it defers."""
        rows: list[PatientFeatures | None] = []
        deferred: list[int] = []
        for k, (job, t) in enumerate(jobs):
            try:
                rows.append(self.program.row(job.resources, job.patient_id, t))
            except Unsupported:
                rows.append(None)
                deferred.append(k)
        if deferred:
            self.referred += len(deferred)
            index = pd.Series({jobs[k][0].patient_id: jobs[k][1] for k in deferred}, dtype=object)
            store = _scratch()
            try:
                store.replace_all([r for k in deferred for r in jobs[k][0].resources])
                built = build_features(store, self.spec.definition, index)
            finally:
                store.replace_all(())
            for k in deferred:
                rows[k] = _from_reference(built, jobs[k][0].patient_id, self.spec.definition)
        return [r for r in rows if r is not None]

    def _index_time(self, job: Job) -> tuple[tuple[str, datetime] | None, datetime] | NotScored:
        """The encounter the score is about (if anchored to one) and the index time, or why there is none."""
        if self.spec.anchor != "encounter-start":
            return None, job.now
        encounter = choose_encounter(job.resources, job.encounter_id, self.spec.encounter_classes)
        if encounter is None:
            kinds = "/".join(self.spec.encounter_classes) or "any"
            return NotScored(f"no encounter ({kinds}) with a start time for Patient/{job.patient_id}")
        start = encounter[1]
        if start > job.now:
            return NotScored(f"encounter {encounter[0]} starts in the future")
        return encounter, min(job.now, start + timedelta(hours=self.spec.hours))


def _predict_on_one_thread(model: Any) -> None:
    """Every fitted estimator inside the model (LightGBM's booster too) predicts on one thread.

    The service runs a worker process per core: a model that also spreads one patient's prediction over every core
    (LightGBM's OpenMP, as trained with n_jobs) makes the workers fight over the cores, and for one row the
    threads cost more than they save. Only how predictions are computed changes, never their values: each row is
    computed alone either way.
    """
    seen: set[int] = set()
    todo = [model]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or not hasattr(obj, "get_params"):
            continue
        seen.add(id(obj))
        if "n_jobs" in obj.get_params(deep=False):
            obj.set_params(n_jobs=1)
        todo += [v for v in vars(obj).values() if hasattr(v, "get_params")]
        steps = getattr(obj, "steps", None)  # a scikit-learn Pipeline's estimators
        if isinstance(steps, list):
            todo += [step for _, step in steps]


def _from_reference(built: BuiltFeatures, patient_id: str, definition: FeatureDefinition) -> PatientFeatures:
    """One patient's features from the DuckDB reference, in the compiled program's form."""
    row = built.X.iloc[built.patient_ids.index(patient_id)]
    values: list[Any] = []
    for c in definition.columns():
        v = row[c]
        values.append((None if pd.isna(v) else str(v)) if c == definition.sex else float(v))
    return PatientFeatures(
        values=values,
        missing=built.missing(patient_id, definition),
        dropped=built.dropped_by_patient.get(patient_id, {}),
    )


def raise_into(future: asyncio.Future[Any]) -> None:
    """Hand the exception being handled to a waiting request."""
    import sys

    if not future.done():
        future.set_exception(sys.exc_info()[1] or RuntimeError("scoring failed"))


class Batcher:
    """Scores the requests that arrive while a batch is running as the next batch (no added wait at low load).

    The feature SQL and the model cost about the same for one patient as for dozens, so under load one pass serves
    many requests. Two requests for the same patient go to different batches.
    """

    def __init__(self, scorer: Scorer, max_batch: int = 64) -> None:
        self.scorer = scorer
        self.max_batch = max_batch
        self._pending: list[tuple[Job, asyncio.Future[Scored | NotScored]]] = []
        self._running = False

    async def score(self, job: Job) -> Scored | NotScored:
        future: asyncio.Future[Scored | NotScored] = asyncio.get_running_loop().create_future()
        self._pending.append((job, future))
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        from starlette.concurrency import run_in_threadpool

        try:
            while self._pending:
                batch: list[tuple[Job, asyncio.Future[Scored | NotScored]]] = []
                rest: list[tuple[Job, asyncio.Future[Scored | NotScored]]] = []
                seen: set[str] = set()
                for job, future in self._pending:
                    if len(batch) < self.max_batch and job.patient_id not in seen:
                        batch.append((job, future))
                        seen.add(job.patient_id)
                    else:
                        rest.append((job, future))
                self._pending = rest
                try:
                    results = await run_in_threadpool(self.scorer.score_many, [j for j, _ in batch])
                except Exception:
                    if len(batch) == 1:
                        raise_into(batch[0][1])
                        continue
                    # one patient's data broke the batch: score each alone, so only that request fails
                    for job, future in batch:
                        try:
                            result = (await run_in_threadpool(self.scorer.score_many, [job]))[0]
                        except Exception:
                            raise_into(future)
                        else:
                            if not future.done():
                                future.set_result(result)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._running = False


def choose_encounter(
    resources: list[dict[str, Any]], encounter_id: str | None, classes: tuple[str, ...]
) -> tuple[str, datetime] | None:
    """The encounter in context if it is in the data, else the patient's latest of the model's classes."""
    found = []
    for res in resources:
        if res.get("resourceType") != "Encounter":
            continue
        cls = (res.get("class") or {}).get("code")
        start = _instant((res.get("period") or {}).get("start"))
        if start is None or (classes and cls not in classes):
            continue
        if encounter_id is not None and res.get("id") == encounter_id:
            return str(res["id"]), start
        found.append((start, str(res.get("id"))))
    if not found:
        return None
    start, eid = max(found)
    return eid, start


def _instant(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)
