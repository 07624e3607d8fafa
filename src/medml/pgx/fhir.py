"""A pharmacogenomic result as FHIR R4, following the HL7 Genomics Reporting IG STU2 (2.0.0).

A ``collection`` Bundle holds a genomics DiagnosticReport (LOINC 81247-9) and, per called gene:

- a *genotype* Observation: code LOINC 84413-4 "Genotype display name", component 48018-6 "Gene studied [ID]"
  with the HGNC id, value the diplotype as text (ties as ``A or B``);
- a *therapeutic implication* Observation derived from it: component 53040-2 "Genetic variation's effect on drug
  metabolism" with the phenotype (activity score in a note), and one 51963-7 "Medication assessed [ID]" component
  (RxNorm) per drug whose CPIC recommendation for this result changes the prescription.

Resources are ``preliminary``: a software call from a VCF that an accredited laboratory must confirm. References are
``urn:uuid`` ids derived from the sample and gene, so the same result gives the same Bundle ids.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from medml.pgx.calls import GeneCall
from medml.pgx.phenotype import HLA_ALLELES, GenePhenotype
from medml.pgx.pipeline import INTENDED_USE, PgxResult

__all__ = ["HGNC", "PROFILES", "to_fhir_bundle"]

_IG = "http://hl7.org/fhir/uv/genomics-reporting/StructureDefinition/"
PROFILES = {
    "report": _IG + "genomics-report",
    "genotype": _IG + "genotype",
    "implication": _IG + "therapeutic-implication",
}
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
HGNC_SYSTEM = "http://www.genenames.org/geneid"
TBD = "http://hl7.org/fhir/uv/genomics-reporting/CodeSystem/tbd-codes-cs"
#: HGNC ids (genenames.org). CPIC's 2020 gene table gives DPYD as HGNC:1806, its NCBI Gene id; 3012 is right.
HGNC = {
    "ABCG2": "HGNC:74",
    "CACNA1S": "HGNC:1397",
    "CFTR": "HGNC:1884",
    "CYP2B6": "HGNC:2615",
    "CYP2C19": "HGNC:2621",
    "CYP2C9": "HGNC:2623",
    "CYP2D6": "HGNC:2625",
    "CYP3A4": "HGNC:2637",
    "CYP3A5": "HGNC:2638",
    "CYP4F2": "HGNC:2645",
    "DPYD": "HGNC:3012",
    "G6PD": "HGNC:4057",
    "HLA-A": "HGNC:4931",
    "HLA-B": "HGNC:4932",
    "IFNL3": "HGNC:18365",
    "MT-RNR1": "HGNC:7470",
    "NAT2": "HGNC:7646",
    "NUDT15": "HGNC:23063",
    "RYR1": "HGNC:10483",
    "SLCO1B1": "HGNC:10959",
    "TPMT": "HGNC:12014",
    "UGT1A1": "HGNC:12530",
    "VKORC1": "HGNC:23663",
}
#: lookup values that by themselves change no prescription (normal function, no result, allele absent)
_NORMAL = frozenset(
    {
        "Normal Metabolizer",
        "Normal Function",
        "2.0",
        "No Result",
        "*15:02 negative",
        "*57:01 negative",
        "*58:01 negative",
        "*31:01 negative",
    }
)
_CATEGORIES = [
    {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "laboratory",
                "display": "Laboratory",
            }
        ]
    },
    {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "GE", "display": "Genetics"}]},
]


def _id(sample: str, *parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "urn:medml:pgx:" + "/".join((sample, *parts))))


def _loinc(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": LOINC, "code": code, "display": display}]}


def _rxnorm(drug: str, rxnorm: str | None) -> dict[str, Any]:
    if rxnorm:
        return {"coding": [{"system": RXNORM, "code": rxnorm.removeprefix("RxNorm:"), "display": drug}], "text": drug}
    return {"text": drug}


def _diplotype_text(call: GeneCall | None, p: GenePhenotype) -> str:
    labels = [d.label for d in call.diplotypes] if call else []
    if call and call.variants and not labels:
        labels = list(call.variants)
    if not labels:
        labels = [r.diplotype.label for r in p.results if r.diplotype] or [
            ", ".join(k for r in p.results for k in r.lookup_keys)
        ]
    return " or ".join(dict.fromkeys(labels))


def _phenotype_text(p: GenePhenotype) -> str:
    values = [r.phenotype or ", ".join(r.lookup_keys) for r in p.results]
    if p.gene in HLA_ALLELES:
        values = [", ".join(r.lookup_keys) for r in p.results]
    return " or ".join(dict.fromkeys(v for v in values if v)) or "Indeterminate"


def _base(kind: str, subject: Mapping[str, Any], issued: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "meta": {"profile": [PROFILES[kind]]},
        "status": "preliminary",
        "category": _CATEGORIES,
        "subject": dict(subject),
        "issued": issued,
    }


def _gene_observations(
    result: PgxResult, gene: str, subject: Mapping[str, Any], drugs_by_gene: Mapping[str, list[tuple[str, str | None]]]
) -> list[dict[str, Any]]:
    p = result.phenotypes[gene]
    call = result.calls.get(gene)
    genotype_id = _id(result.sample, gene, "genotype")
    studied = {
        "code": _loinc("48018-6", "Gene studied [ID]"),
        "valueCodeableConcept": {"coding": [{"system": HGNC_SYSTEM, "code": HGNC[gene], "display": gene}]}
        if gene in HGNC
        else {"text": gene},
    }
    diplotype = _diplotype_text(call, p)
    genotype = {
        **_base("genotype", subject, result.generated),
        "id": genotype_id,
        "code": _loinc("84413-4", "Genotype display name"),
        "valueCodeableConcept": {"text": diplotype},
        "component": [studied],
    }
    source = (
        "outside call"
        if p.source == "outside"
        else f"called from {result.source or 'the VCF'} (PharmCAT 3.1.1 allele definitions)"
    )
    genotype["method"] = {"text": source}
    if p.warnings:
        genotype["note"] = [{"text": w} for w in p.warnings]
    phenotype = _phenotype_text(p)
    components: list[dict[str, Any]] = [
        {
            "code": _loinc("53040-2", "Genetic variation's effect on drug metabolism"),
            "valueCodeableConcept": {"text": phenotype},
        }
    ]
    components += [
        {"code": _loinc("51963-7", "Medication assessed [ID]"), "valueCodeableConcept": _rxnorm(d, rx)}
        for d, rx in drugs_by_gene.get(gene, [])
    ]
    scores = [r.activity_score for r in p.results if r.activity_score]
    implication = {
        **_base("implication", subject, result.generated),
        "id": _id(result.sample, gene, "implication"),
        "code": {"coding": [{"system": TBD, "code": "therapeutic-implication", "display": "Therapeutic Implication"}]},
        "derivedFrom": [{"reference": f"urn:uuid:{genotype_id}", "display": f"{gene} {diplotype}"}],
        "component": components,
    }
    if scores:
        implication["note"] = [{"text": f"{gene} activity score {' or '.join(dict.fromkeys(scores))}"}]
    return [genotype, implication]


def _assessed_drugs(result: PgxResult) -> dict[str, list[tuple[str, str | None]]]:
    """Per gene, the drugs whose CPIC recommendation changes the prescription because of that gene: the gene of a
    one-gene guideline; for a multi-gene one, the genes whose result is not a normal one (CYP2C19 normal is not why
    a CYP2D6 intermediate metabolizer's amitriptyline changes)."""
    out: dict[str, list[tuple[str, str | None]]] = {}
    for d in result.drugs:
        genes: set[str] = set()
        for rec in d.actionable:
            keys = dict(rec.lookup_key)
            for gene, _ in rec.phenotypes:
                p = result.phenotypes.get(gene)
                if p is not None and p.called and (len(d.genes) == 1 or keys.get(gene) not in _NORMAL):
                    genes.add(gene)
        for gene in sorted(genes):
            out.setdefault(gene, []).append((d.drug, d.rxnorm))
    return out


def to_fhir_bundle(result: PgxResult, *, patient_reference: str | None = None) -> dict[str, Any]:
    """The result as a FHIR R4 ``collection`` Bundle (a JSON-ready dict); ``patient_reference`` e.g.
    ``Patient/123``, else the subject is identified by the sample id."""
    subject: dict[str, Any] = (
        {"reference": patient_reference}
        if patient_reference
        else {
            "identifier": {"system": "urn:medml:pgx:sample", "value": result.sample},
            "display": f"sample {result.sample}",
        }
    )
    drugs_by_gene = _assessed_drugs(result)
    observations = [
        o
        for gene, p in sorted(result.phenotypes.items())
        if p.called
        for o in _gene_observations(result, gene, subject, drugs_by_gene)
    ]
    not_tested = "; ".join(f"{n.gene}: {n.status}" for n in result.not_tested)
    actions = sorted(d.drug for d in result.drugs if d.actionable)
    conclusion = (
        f"{len(actions)} drugs with a CPIC recommendation that changes the prescription: "
        f"{', '.join(actions) or 'none'}. Not tested: {not_tested or 'none'}. {INTENDED_USE}"
    )
    report = {
        "resourceType": "DiagnosticReport",
        "id": _id(result.sample, "report"),
        "meta": {"profile": [PROFILES["report"]]},
        "status": "preliminary",
        "category": [_CATEGORIES[1]],
        "code": _loinc("81247-9", "Master HL7 genetic variant reporting panel"),
        "subject": subject,
        "issued": result.generated,
        "result": [{"reference": f"urn:uuid:{o['id']}"} for o in observations],
        "conclusion": conclusion,
    }
    entries = [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in (report, *observations)]
    return {
        "resourceType": "Bundle",
        "id": _id(result.sample, "bundle"),
        "type": "collection",
        "timestamp": result.generated,
        "entry": entries,
    }
