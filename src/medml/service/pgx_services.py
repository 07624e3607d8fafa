"""The PGx drug-order services: CPIC alerts as cards on the order-select and order-sign hooks.

A patient's PGx results live in a small store, ``MEDML_HOME/service/pgx/<patientId>.json``: the document
`medml pgx call --format json --patient ID` writes. No prefetch is needed. For each draft MedicationRequest (on
order-select only the selected ones) the drug is read from ``medicationCodeableConcept``: an RxNorm code CPIC knows,
else the CPIC drug names in its text and codings' displays (so a product such as "abacavir 600 MG / lamivudine 300
MG Oral Tablet" is checked for abacavir). Each :class:`~medml.pgx.alerts.OrderAlert` becomes one card; a drug the
guideline does not change, or a patient without stored results, gets none.

The indicator is ``critical`` when the CPIC classification is Strong and the guideline points to another drug
(``alternative_drug``: avoid this one), else ``warning``. A card for an alternative-drug alert carries a suggestion
that deletes the draft order.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medml.errors import InputFileError, NotFoundError
from medml.pgx.alerts import OrderAlert, order_alerts
from medml.pgx.cpic import Guideline, find_guideline, guidelines
from medml.pgx.phenotype import GenePhenotype
from medml.pgx.pipeline import phenotypes_from_dict
from medml.pgx.store import SAFE_ID, load_results
from medml.service.core import HookError

__all__ = ["SERVICES", "answer", "discovery_entries", "offered"]

log = logging.getLogger("medml.service")

#: service id -> the hook it answers
SERVICES = {"pgx-order-select": "order-select", "pgx-order-sign": "order-sign"}
_MAX_ID = 256
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
OVERRIDE_SYSTEM = "urn:medml:cds:override-reason"  # as service/cards.py (not imported: it pulls in the models)
OVERRIDE_REASONS = (
    ("already-aware", "Already aware of the genotype; the plan accounts for it"),
    ("benefit-outweighs-risk", "Benefit outweighs the risk for this patient"),
    ("not-applicable", "Does not apply (e.g. not drug-naive, different indication or population)"),
    ("results-wrong", "The genotype result is wrong, unconfirmed or not this patient's"),
)
# ---- discovery ------------------------------------------------------------------------------------------------------


def offered(enabled: bool, store: Path, service_id: str | None = None) -> bool:
    """Whether the PGx services are on (the setting, and a results store to read); with ``service_id``, whether it
    is one of them."""
    return enabled and store.is_dir() and (service_id is None or service_id in SERVICES)


def discovery_entries() -> list[dict[str, Any]]:
    return [
        {
            "hook": hook,
            "id": sid,
            "title": f"Pharmacogenomic drug-order alerts ({hook})",
            "description": "CPIC recommendations for the drugs being ordered, from the patient's PGx results: a card "
            "when the genotype changes the prescription (another drug, or another dose).",
            "usageRequirements": "No prefetch: the patient's PGx results come from medml's own store (medml pgx call "
            "--patient ID). Needs context.draftOrders with MedicationRequests coded in RxNorm or "
            "named in text; a patient without stored results gets no cards.",
        }
        for sid, hook in SERVICES.items()
    ]


# ---- a hook call ----------------------------------------------------------------------------------------------------


def _refuse(message: str, status: int = 400) -> Exception:
    return HookError(status, message)


def check_order_request(body: Mapping[str, Any], service_id: str) -> tuple[str, list[dict[str, Any]]]:
    """The patient id and the MedicationRequests to check (on order-select, the selected ones), or a 400."""
    hook = SERVICES[service_id]
    for key in ("hook", "hookInstance", "context"):
        if key not in body:
            raise _refuse(f"the request has no '{key}'; a CDS Hooks request needs hook, hookInstance and context")
    if body["hook"] != hook:
        raise _refuse(f"service '{service_id}' answers the {hook} hook, not {body['hook']!r}")
    instance = body["hookInstance"]
    if not isinstance(instance, str) or not instance or len(instance) > _MAX_ID:
        raise _refuse("hookInstance must be a non-empty string (a UUID for this hook call)")
    context = body["context"]
    if not isinstance(context, dict):
        raise _refuse("context must be a JSON object")
    for key in ("userId", "patientId"):
        value = context.get(key)
        if not isinstance(value, str) or not value or len(value) > _MAX_ID:
            raise _refuse(f"context.{key} is required for {hook} and must be a non-empty string")
    patient_id = str(context["patientId"])
    if not SAFE_ID.fullmatch(patient_id):
        raise _refuse(f"context.patientId {patient_id[:80]!r} is not a FHIR id (letters, digits, '-', '.')")
    orders = context.get("draftOrders")
    if (
        not isinstance(orders, dict)
        or orders.get("resourceType") != "Bundle"
        or not isinstance(orders.get("entry", []), list)
    ):
        raise _refuse(f"context.draftOrders is required for {hook} and must be a FHIR Bundle of the draft orders")
    requests = [
        e["resource"]
        for e in orders.get("entry", [])
        if isinstance(e, dict)
        and isinstance(e.get("resource"), dict)
        and e["resource"].get("resourceType") == "MedicationRequest"
    ]
    if hook == "order-select":
        selections = context.get("selections")
        if (
            not isinstance(selections, list)
            or not selections
            or not all(isinstance(s, str) and "/" in s for s in selections)
        ):
            raise _refuse(
                "context.selections is required for order-select and must be a non-empty list of "
                "references to draft orders (e.g. 'MedicationRequest/123')"
            )
        chosen = set(selections)
        requests = [r for r in requests if f"MedicationRequest/{r.get('id')}" in chosen]
    return patient_id, requests


def _word(name: str, text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(name.lower())}(?![\w-])", text.lower()) is not None


def ordered_drugs(request: Mapping[str, Any]) -> list[Guideline]:
    """The CPIC guidelines for the drug of a MedicationRequest: its RxNorm code, else the CPIC drugs its text and
    codings' displays name (every ingredient of a combination product). Empty for a drug CPIC does not cover."""
    concept = request.get("medicationCodeableConcept")
    if not isinstance(concept, dict):
        return []  # a medicationReference: the Medication is not in the request
    codings = [c for c in concept.get("coding") or [] if isinstance(c, dict)]
    for c in codings:
        if c.get("system") == RXNORM and isinstance(c.get("code"), str):
            try:
                return [find_guideline(c["code"])]
            except NotFoundError:
                pass  # often a product code (SCD/SBD); CPIC lists ingredients: try the names
    names = [t for t in [concept.get("text"), *(c.get("display") for c in codings)] if isinstance(t, str) and t]
    return [g for g in guidelines().values() if any(_word(g.drug, n) for n in names)]


def indicator(alert: OrderAlert) -> str:
    """critical: a Strong recommendation to use another drug (avoid this one); warning: any other change."""
    return "critical" if (alert.strength or "").lower() == "strong" and alert.alternative_drug else "warning"


def _genes(alert: OrderAlert) -> str:
    return "; ".join(f"{g} {v}" for g, v in alert.phenotypes if v not in ("No Result", "n/a")) or "genotype"


def card_summary(alert: OrderAlert) -> str:
    """Fewer than 140 characters: the drug, the patient's result, the recommendation's first line."""
    text = f"{alert.drug}, {_genes(alert)}: {alert.summary}"
    return text if len(text) < 140 else text[:138] + "…"


def card_detail(alert: OrderAlert, document: Mapping[str, Any], *, authenticated: bool) -> str:
    diplotypes = {
        g.get("gene"): " or ".join(g.get("diplotypes") or [])
        for g in document.get("genes") or []
        if isinstance(g, dict)
    }
    lines = [
        f"**CPIC recommendation** (classification {alert.strength or 'none'}"
        f"{'; population: ' + alert.population if alert.population else ''}):",
        "",
    ]
    lines.append("\n>\n".join(f"> {line}" for line in alert.recommendation.splitlines()))  # a paragraph each
    if alert.implications:
        lines += ["", "**Implications:**", *(f"- {i}" for i in alert.implications)]
    lines += ["", "**This patient:**"]
    lines += [f"- {g}: {diplotypes.get(g) or 'no diplotype'} — {v}" for g, v in alert.phenotypes]
    source = f"sample {document.get('sample')}, {document.get('source')}, generated {document.get('generated')}"
    lines += [f"\n*Results:* {source}."]
    guideline = f"[{alert.guideline}]({alert.guideline_url})" if alert.guideline_url else alert.guideline
    lines += [f"\n**Guideline:** {guideline}, {alert.version}."]
    lines.append(
        "\n*Decision support, not a diagnosis: a laboratory must confirm the genotypes; the prescriber "
        "decides.*" + ("" if authenticated else " *Unauthenticated demo service: not for clinical use.*")
    )
    return "\n".join(lines)


def order_card(
    alert: OrderAlert, request: Mapping[str, Any], document: Mapping[str, Any], *, authenticated: bool
) -> dict[str, Any]:
    source: dict[str, Any] = {"label": f"medml PGx · {alert.version}"}
    if alert.guideline_url:
        source["url"] = alert.guideline_url
    card: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": card_summary(alert),
        "indicator": indicator(alert),
        "detail": card_detail(alert, document, authenticated=authenticated),
        "source": source,
        "overrideReasons": [{"code": c, "system": OVERRIDE_SYSTEM, "display": d} for c, d in OVERRIDE_REASONS],
    }
    order_id = request.get("id")
    if alert.alternative_drug and isinstance(order_id, str) and order_id:
        card["suggestions"] = [
            {
                "label": f"Remove the {alert.drug} order and choose an alternative",
                "uuid": str(uuid.uuid4()),
                "isRecommended": indicator(alert) == "critical",
                "actions": [
                    {
                        "type": "delete",
                        "description": f"Remove the draft {alert.drug} order",
                        "resourceId": f"MedicationRequest/{order_id}",
                    }
                ],
            }
        ]
        card["selectionBehavior"] = "at-most-one"
    return card


def answer(
    store: Path, service_id: str, body: Mapping[str, Any], *, authenticated: bool
) -> tuple[dict[str, Any], str | None]:
    """The response to a hook call and the audit's model label (``pgx@<CPIC versions consulted>``, None when no
    guideline was consulted)."""
    patient_id, requests = check_order_request(body, service_id)
    try:
        document = load_results(store, patient_id)
        if document is None or not requests:
            return {"cards": []}, None
        phenotypes: dict[str, GenePhenotype] = phenotypes_from_dict(document)
    except InputFileError as e:  # our store's fault, not the caller's
        log.error("PGx results of a patient unusable: %s", e)
        raise _refuse(
            "the stored PGx results for this patient are unreadable; the order was not checked. Tell the "
            "medml team, who must save them again",
            500,
        ) from None
    cards, versions = [], set()
    for request in requests:
        for guideline in ordered_drugs(request):
            versions.add(guideline.version)
            cards += [
                order_card(a, request, document, authenticated=authenticated)
                for a in order_alerts(guideline.drug, phenotypes)
            ]
    return {"cards": cards}, ("pgx@" + " + ".join(sorted(versions))) if versions else None
