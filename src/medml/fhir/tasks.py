"""Clinical tasks built from FHIR through ViewDefinitions: the same labels as the tabular adapters, other source.

``physionet_in_hospital_death`` reads PhysioNet 2012 stays converted to FHIR (:mod:`medml.fhir.convert.physionet2012`)
from a store: the ``encounters`` view gives each stay's admission and discharge disposition (``exp`` = died in
hospital), :func:`medml.fhir.features.build_features` the features at admission + ``hours``. The feature definition
mirrors the tabular adapter (:mod:`medml.data.datasets.physionet2012`) column for column, with the same
physiological limits, so the two paths can be compared value by value.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from medml.config import get_settings
from medml.data.datasets import physionet2012 as tabular
from medml.data.datasets._common import age_band, id_array, provenance, resolve_data_root, sensitive_frame
from medml.data.targets import BinaryTarget
from medml.data.task import TaskDataset, infer_features
from medml.deid.consent import leave_out_refusals, left_out_note
from medml.errors import DataError
from medml.fhir.convert import physionet2012 as convert
from medml.fhir.features import AGGREGATES, Conversion, FeatureDefinition, Measurement, ServingSpec, build_features
from medml.fhir.store import FhirStore
from medml.fhir.view import run_view
from medml.fhir.views import get_view

KEY = "physionet-2012-fhir"
_STAY_PREFIX = f"{convert.ID_PREFIX}-"


def physionet_definition(hours: float = 48) -> FeatureDefinition:
    """The tabular adapter's 48-hour features, as measurements read from FHIR Observations."""
    measurements = []
    for var in (*tabular.STATIC, *tabular.VARIABLES):
        if var in convert.NOT_OBSERVATIONS:
            continue
        m = convert.BY_VARIABLE[var]
        code = m.code if m.system == convert.LOINC else f"{m.system}|{m.code}"
        unit = m.ucum
        conversions: tuple[Conversion, ...] = ()
        if m.scale != 1:  # FiO2: percent in FHIR, a fraction in the tabular data and the model
            unit, conversions = "1", (Conversion(m.ucum, divide=m.scale),)
        static = var in tabular.STATIC
        measurements.append(
            Measurement(
                name=var,
                label=m.label,
                codes=(code,),
                unit=unit,
                conversions=conversions,
                static=static,
                aggregates=("first",) if static else tabular.AGGREGATES,
                plausible=tabular.PLAUSIBLE.get(var),
            )
        )
    return FeatureDefinition(
        name="physionet-2012-48h", measurements=tuple(measurements), window_hours=hours, age=None, sex="Gender"
    )


def stays(store: FhirStore) -> pd.DataFrame:
    """The converted PhysioNet stays in a store: encounter, patient, admission and in-hospital death."""
    enc = run_view(store.con, get_view("encounters")).to_pandas()
    enc = enc[enc["encounter_id"].str.startswith(_STAY_PREFIX, na=False)].copy()
    if enc.empty:
        raise DataError(
            "the FHIR store holds no PhysioNet 2012 stays (Encounters pn2012-*)",
            "convert and ingest them: medml fhir convert physionet-2012 DIR, then medml fhir ingest DIR",
        )
    enc["admitted"] = pd.to_datetime(enc["start"], utc=True, errors="coerce")
    if enc["admitted"].isna().any():
        raise DataError("some PhysioNet Encounters have no period.start", "convert the stays again")
    enc["stay_id"] = enc["encounter_id"].str.removeprefix(_STAY_PREFIX)
    enc["died"] = (enc["discharge_disposition"] == "exp").astype(np.int8)
    return enc.sort_values("stay_id", key=lambda s: s.astype(np.int64)).reset_index(drop=True)


def physionet_serving(hours: float = 48) -> ServingSpec:
    """How a model of in-hospital death from the first ``hours`` scores a stay at the bedside: the same features
    from FHIR, at the start of the inpatient, acute or ICU encounter + ``hours`` (or now, before that).

    PhysioNet 2012 from the tabular adapter and from FHIR have the same 225 features (equal to rtol 1e-12, see
    tests/fhir/test_features.py), so a model trained on either scores a stay from FHIR.
    """
    return ServingSpec(
        definition=physionet_definition(hours),
        outcome="death in hospital",
        anchor="encounter-start",
        hours=hours,
        encounter_classes=("IMP", "ACUTE", "ICU"),
        # every stay of set A has at least 5 measured at 48 h; with fewer than 3 the risk is the prior, not the patient
        min_measured=3,
    )


def physionet_in_hospital_death(store: FhirStore, hours: float = 48) -> TaskDataset:
    """In-hospital death from the first ``hours`` of each stay, read from FHIR (see the module docstring)."""
    if not 0 < hours <= 48:
        raise DataError(
            f"the records cover the first 48 hours of each stay; hours={hours} is outside (0, 48]",
            "choose a window of at most 48 hours",
        )
    enc = stays(store)
    keep, refused = leave_out_refusals(store, enc["patient_id"])  # a Consent refusing research use
    enc = enc[keep].reset_index(drop=True)
    definition = physionet_definition(hours)
    index = pd.Series((enc["admitted"] + pd.Timedelta(hours=hours)).to_numpy(), index=enc["patient_id"].to_numpy())
    built = build_features(store, definition, index)
    X = built.X
    order = ["Age", "Gender", "Height"] + [f"{v}_{a}" for v in tabular.VARIABLES for a in tabular.AGGREGATES]
    X = X[[c for c in order if c in X.columns]]
    labels, units = definition.labels_and_units()
    sex = X["Gender"].astype(object)
    return TaskDataset(
        name=KEY,
        task=f"in-hospital death, from the first {hours:g} hours in the ICU (from FHIR)",
        X=X,
        y=BinaryTarget(enc["died"].to_numpy(dtype=np.int8), "died in hospital"),
        groups=id_array(enc["patient_id"]),
        features=infer_features(X, units, labels),
        sensitive=sensitive_frame({"sex": sex, "age_band": age_band(X["Age"])}),
        ids=id_array(enc["stay_id"]),
        population=(
            f"{len(enc):,} adult ICU stays of PhysioNet/CinC Challenge 2012 set A (MIMIC-II, Beth Israel "
            f"Deaconess Medical Center, 2001-2008), read as FHIR R4 from {store.path}; {left_out_note(refused)}"
        ),
        provenance=f"FHIR store {store.path}; converted by medml.fhir.convert.physionet2012",
        excluded={
            "deceasedDateTime": "Patient.deceasedDateTime holds the death itself: the outcome",
            "Encounter.length": "length of stay: known only at discharge",
            "dischargeDisposition": "the outcome",
        },
        serving=physionet_serving(hours),
    )


def physionet_store(data_root: str | Path | None = None) -> FhirStore:
    """Set A converted to FHIR and ingested, cached under ``MEDML_HOME/cache`` (built once, about a minute)."""
    from medml.fhir.ingest import ingest

    root = resolve_data_root(data_root)
    archive = root / tabular.SOURCE
    st = archive.stat()
    cache_dir = get_settings().home / "cache"
    path = cache_dir / f"physionet2012-fhir-{st.st_size}-{st.st_mtime_ns}.duckdb"
    if path.is_file():
        return FhirStore(path, read_only=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        convert.write_ndjson(archive.parent, tmp, compress=True)
        with FhirStore(partial) as store:
            ingest(store, [tmp])
    partial.replace(path)
    return FhirStore(path, read_only=True)


def load(data_root: str | Path | None = None) -> TaskDataset:
    """The catalogue's task: in-hospital death from the first 48 hours, through FHIR."""
    root = resolve_data_root(data_root)
    with physionet_store(root) as store:
        ds = physionet_in_hospital_death(store, 48)
    return dataclasses.replace(
        ds,
        provenance=provenance(root, tabular.SOURCE, tabular.OUTCOMES)
        + " -> FHIR R4 (medml.fhir.convert) -> ViewDefinitions (medml.fhir.views)",
    )


__all__ = [
    "AGGREGATES",
    "KEY",
    "load",
    "physionet_definition",
    "physionet_in_hospital_death",
    "physionet_serving",
    "physionet_store",
    "stays",
]
