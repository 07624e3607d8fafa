"""The survival datasets shipped in the scikit-survival and lifelines wheels: counts against their published
descriptions, leaking and sensitive columns kept out of the predictors, and horizons inside each follow-up."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medml.config import Settings, get_settings
from medml.data.datasets.survival_sets import SOURCES, load
from medml.pipelines.survival import (
    SURVIVAL_DATASETS,
    SurvivalConfig,
    check_survival_task,
    default_horizons,
    train_survival,
)

#: (patients, events, time unit) as published: WHAS500 (Hosmer, Lemeshow and May 2008: 215 deaths), the VA lung
#: cancer trial (Kalbfleisch and Prentice: 128 deaths of 137), FLCHAIN (Dispenzieri et al. 2012: 2,169 deaths of
#: 7,874; the 3 deaths at day 0 are left out), ACTG 320 (Hammer et al. 1997: 96 AIDS-defining events or deaths
#: in 1,151), Rossi et al. (114 re-arrests of 432, lifelines' docs)
PUBLISHED = {
    "whas500": (500, 215, "days"),
    "veterans": (137, 128, "days"),
    "flchain": (7874 - 3, 2169 - 3, "days"),
    "aids": (1151, 96, "days"),
    "rossi": (432, 114, "weeks"),
}


@pytest.mark.parametrize("key", sorted(PUBLISHED))
def test_counts_match_the_published_descriptions(key: str) -> None:
    ds = load(key)
    n, events, unit = PUBLISHED[key]
    assert len(ds) == n and int(ds.y.event.sum()) == events and ds.y.time_unit == unit
    assert np.all(ds.y.time > 0)
    assert key in SURVIVAL_DATASETS


def test_leaking_and_sensitive_columns_are_not_predictors() -> None:
    flchain = load("flchain")
    assert "chapter" not in flchain.X.columns and "chapter" in flchain.excluded  # cause of death: only if died
    for key, column in (("aids", "raceth"), ("rossi", "race")):
        ds = load(key)
        assert column not in ds.X.columns and column in ds.sensitive.columns
    assert set(SOURCES) == set(PUBLISHED)


@pytest.mark.parametrize("key", sorted(PUBLISHED))
def test_default_horizons_lie_inside_each_follow_up(key: str) -> None:
    ds = load(key)
    assert check_survival_task(ds, default_horizons(ds)) == default_horizons(ds)


@pytest.mark.filterwarnings("ignore:Starting with pandas version 4.0")  # lifelines 0.30.0 calls DataFrame.var
def test_the_cox_model_on_rossi_ranks_as_lifelines_does() -> None:
    """medml's penalised Cox model and lifelines' CoxPHFitter on all 432 rossi prisoners: the same linear ranking
    (lifelines documents a concordance of 0.64 for this fit), up to the small ridge penalty."""
    from lifelines import CoxPHFitter
    from lifelines.utils import concordance_index

    from medml.models.survival import make_survival_model

    ds = load("rossi")
    frame = ds.X.assign(week=ds.y.time, arrest=ds.y.event.astype(int))
    cph = CoxPHFitter().fit(frame, "week", "arrest")
    theirs = concordance_index(ds.y.time, -cph.predict_partial_hazard(frame), ds.y.event)
    assert round(theirs, 2) == 0.64
    model = make_survival_model("cox", ds.features, horizons=default_horizons(ds)).fit(ds.X, ds.y)
    ours = concordance_index(ds.y.time, -model.predict(ds.X), ds.y.event)
    assert abs(ours - theirs) < 0.005
    assert np.corrcoef(model.predict(ds.X), np.log(cph.predict_partial_hazard(frame)))[0, 1] > 0.99


@pytest.mark.filterwarnings("ignore:Starting with pandas version 4.0")
def test_rossi_trains_end_to_end_in_weeks(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, data_root=get_settings().data_root)
    ds = load("rossi")
    result = train_survival(ds, SurvivalConfig(model="cox", horizons=default_horizons(ds), n_boot=20), settings)
    assert result.bundle.metadata.extra["survival"] == {
        "horizons": [13.0, 26.0, 39.0],
        "time_unit": "weeks",
        "outcome": "re-arrest",
        # Rossi et al.: 114 of the 432 released prisoners were re-arrested within the year's 52 weeks
        "censoring": "318 of 432 development patients had no re-arrest observed and were censored at their last "
        "follow-up (the longest 52 weeks)",
    }
    assert result.report_path.is_file()
