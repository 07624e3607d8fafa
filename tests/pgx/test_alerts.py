"""Drug-order alerts: shown when CPIC changes the prescription, silent for standard dosing."""

from __future__ import annotations

import pytest

from medml.config import get_settings
from medml.errors import NotFoundError
from medml.pgx.alerts import order_alerts
from medml.pgx.phenotype import phenotype_result

PGX = get_settings().data_root / "pgx"
pytestmark = pytest.mark.skipif(not PGX.is_dir(), reason="the shared PGx data is not here (set MEDML_DATA)")


def test_clopidogrel_poor_metabolizer_alerts_with_the_alternative() -> None:
    alerts = order_alerts("Clopidogrel", {"CYP2C19": phenotype_result("CYP2C19", "PM")})
    acs = next(a for a in alerts if a.population == "CVI ACS PCI")
    assert acs.strength == "Strong" and acs.alternative_drug
    assert "prasugrel or ticagrelor" in acs.summary
    assert acs.implications[0].startswith("CYP2C19: Significantly reduced clopidogrel active metabolite formation")
    assert acs.guideline == "CPIC Guideline for clopidogrel and CYP2C19"
    assert acs.version == "CPIC guideline annotation 2024-03-25-16-13" and acs.rxnorm == "RxNorm:32968"


def test_normal_metabolizer_on_standard_dose_gets_nothing() -> None:
    assert order_alerts("clopidogrel", {"CYP2C19": phenotype_result("CYP2C19", "Normal Metabolizer")}) == []
    assert order_alerts("abacavir", {"HLA-B": phenotype_result("HLA-B", allele_status=["*57:01 negative"])}) == []
    assert order_alerts("codeine", {"CYP2D6": phenotype_result("CYP2D6", activity_score="2.0")}) == []


def test_codeine_by_rxnorm_for_a_poor_metabolizer() -> None:
    (alert,) = order_alerts("RxNorm:2670", {"CYP2D6": phenotype_result("CYP2D6", activity_score="0.0")})
    assert alert.strength == "Strong" and alert.alternative_drug and alert.summary.startswith("Avoid codeine")


def test_abacavir_positive_is_not_recommended() -> None:
    (alert,) = order_alerts("abacavir", {"HLA-B": phenotype_result("HLA-B", diplotype="*57:01/*08:01")})
    assert alert.summary == "Abacavir is not recommended" and alert.strength == "Strong"


def test_dose_reduction_is_an_alert() -> None:
    ph = {"TPMT": phenotype_result("TPMT", "IM"), "NUDT15": phenotype_result("NUDT15", "NM")}
    (alert,) = order_alerts("mercaptopurine", ph)
    assert alert.dose_change and not alert.alternative_drug


def test_no_result_for_any_gene_gives_no_alert() -> None:
    assert order_alerts("clopidogrel", {}) == []


def test_unknown_drug_says_how_to_find_names() -> None:
    with pytest.raises(NotFoundError, match="guidelines\\(\\) lists"):
        order_alerts("notadrug", {})
