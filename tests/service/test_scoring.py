"""Scoring many patients in one pass gives each exactly what scoring them alone gives; the batcher forms batches."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cds_requests import needs_physionet

from medml.config import Settings
from medml.registry import load_bundle
from medml.service.config import ServiceConfig
from medml.service.deploy import deploy
from medml.service.scoring import Batcher, Job, NotScored, Scored, Scorer

pytestmark = needs_physionet
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture()
def scorer(model_home: Settings, tmp_path: Path) -> Scorer:
    dep = deploy(model_home, ServiceConfig(home=tmp_path), "physionet-2012-lgbm")
    return Scorer(dep, load_bundle(dep.model, model_home))


def test_a_batch_gives_each_patient_what_scoring_it_alone_gives(
    scorer: Scorer, stays: dict[str, list[dict[str, Any]]]
) -> None:
    jobs = [Job(pid, res, None, NOW) for pid, res in stays.items()]
    together = scorer.score_many(jobs)
    for job, both in zip(jobs, together, strict=True):
        (alone,) = scorer.score_many([job])
        assert isinstance(alone, Scored) and isinstance(both, Scored)
        assert both.risk == alone.risk
        assert (both.missing, both.results_used, both.dropped) == (alone.missing, alone.results_used, alone.dropped)
        assert [f.feature for f in both.factors] == [f.feature for f in alone.factors]
        assert both.index_time == alone.index_time


def test_a_patient_without_an_encounter_is_not_scored_and_does_not_stop_the_others(
    scorer: Scorer, stays: dict[str, list[dict[str, Any]]]
) -> None:
    pid, res = next(iter(stays.items()))
    no_encounter = [r for r in res if r["resourceType"] != "Encounter"]
    other, other_res = list(stays.items())[1]
    out = scorer.score_many([Job(pid, no_encounter, None, NOW), Job(other, other_res, None, NOW)])
    assert isinstance(out[0], NotScored) and "no encounter" in out[0].reason
    assert isinstance(out[1], Scored)
    with pytest.raises(ValueError, match="distinct patients"):
        scorer.score_many([Job(other, other_res, None, NOW)] * 2)


def test_concurrent_requests_are_batched_with_the_same_results(
    scorer: Scorer, stays: dict[str, list[dict[str, Any]]]
) -> None:
    sizes: list[int] = []
    original = scorer.score_many

    def recording(jobs: list[Job]) -> list[Scored | NotScored]:
        sizes.append(len(jobs))
        return original(jobs)

    scorer.score_many = recording  # type: ignore[method-assign]
    batcher = Batcher(scorer)
    jobs = [Job(pid, res, None, NOW) for pid, res in stays.items()]
    first = jobs[0]

    async def run() -> list[Scored | NotScored]:
        return await asyncio.gather(*(batcher.score(j) for j in [*jobs, first]))

    results = asyncio.run(run())
    assert sum(sizes) == len(jobs) + 1 and max(sizes) > 1  # batched; the repeated patient went to another batch
    alone = {j.patient_id: original([j])[0] for j in jobs}
    for job, got in zip([*jobs, first], results, strict=True):
        assert isinstance(got, Scored)
        assert got.risk == alone[job.patient_id].risk  # type: ignore[union-attr]


def test_a_card_summary_stays_under_140_characters_whatever_the_outcome_name(
    scorer: Scorer, stays: dict[str, list[dict[str, Any]]]
) -> None:
    import dataclasses

    from medml.service.cards import summary

    pid, res = next(iter(stays.items()))
    scored = scorer.score(pid, res, now=NOW)
    assert isinstance(scored, Scored)
    for n in (10, 120, 139, 140, 400):
        served = dataclasses.replace(
            scorer.deployment.served, spec=dataclasses.replace(scorer.deployment.serving, outcome="x" * n)
        )
        dep = dataclasses.replace(scorer.deployment, served=served)
        text = summary(dep, scored)
        assert len(text) < 140
        assert text.startswith("Risk of x")
