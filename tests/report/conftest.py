"""Fixtures: simulated patients and the report inputs made from them (see report_factory)."""

from __future__ import annotations

import pytest
from report_factory import Cohort, make_inputs, simulate

from medml.report import ReportInputs


@pytest.fixture(scope="session")
def cohort() -> Cohort:
    return simulate(1500, seed=0)


@pytest.fixture(scope="session")
def inputs(cohort: Cohort) -> ReportInputs:
    return make_inputs(cohort)
