"""Drug-order alerts: what a prescriber must see when ordering a drug for a patient with known PGx results.

The engine behind a CDS Hooks order-select / order-sign card. An alert is raised only when the matched CPIC
recommendation changes the prescription: the guideline row changes the dose or points to another drug (the
annotation flags ``dosingInformation``, ``alternateDrugAvailable``) and its classification is not ``No
recommendation``. Rows with only ``otherPrescribingGuidance`` ("no need to avoid atazanavir", "use label
recommended dosing", RYR1 "Uncertain Susceptibility": let clinical findings guide anaesthesia) stay in the report
but raise no alert: an interruptive card that asks for nothing different trains prescribers to dismiss cards.
A normal metabolizer on standard dosing gets nothing. No alert is raised either when the patient has no result for
any gene of the guideline (nothing to say from genotype).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from medml.pgx.cpic import Recommendation, find_guideline, recommendations_for
from medml.pgx.phenotype import GenePhenotype

__all__ = ["OrderAlert", "order_alerts"]

_NO_ACTION = {"No recommendation", "N/A", None}


@dataclass(frozen=True)
class OrderAlert:
    """One card: the recommendation text, its strength, the implications and the guideline it comes from."""

    drug: str
    rxnorm: str | None
    population: str | None
    recommendation: str
    strength: str | None
    implications: tuple[str, ...]
    #: the guideline suggests another drug (the text names it)
    alternative_drug: bool
    dose_change: bool
    #: gene -> the patient's result the recommendation was matched on
    phenotypes: tuple[tuple[str, str], ...]
    guideline: str
    guideline_url: str | None
    version: str

    @property
    def summary(self) -> str:
        """The first line of the recommendation: the card's headline."""
        return self.recommendation.split("\n", 1)[0]


def changes_prescription(rec: Recommendation) -> bool:
    """Whether the recommendation asks for something other than the usual prescription."""
    return (rec.dosing_information or rec.alternate_drug) and rec.classification not in _NO_ACTION


def order_alerts(drug: str, phenotypes: Mapping[str, GenePhenotype], data_root: Path | None = None) -> list[OrderAlert]:
    """The alerts for ordering ``drug`` (name in any case, or RxNorm code); empty when genotype changes nothing.

    Raises :class:`~medml.errors.NotFoundError` for a drug CPIC has no guideline for.
    """
    guideline = find_guideline(drug, data_root)
    if not any(phenotypes[g].called for g in guideline.genes if g in phenotypes):
        return []
    return [
        OrderAlert(
            drug=r.drug,
            rxnorm=r.rxnorm,
            population=r.population,
            recommendation=r.text,
            strength=r.classification,
            implications=r.implications,
            alternative_drug=r.alternate_drug,
            dose_change=r.dosing_information,
            phenotypes=r.phenotypes,
            guideline=r.guideline,
            guideline_url=r.guideline_url,
            version=r.version,
        )
        for r in recommendations_for(guideline.drug, phenotypes, data_root)
        if changes_prescription(r)
    ]
