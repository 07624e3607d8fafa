"""The FHIR Bundle: every resource validates as FHIR R4 (fhir.resources R4B), with the Genomics Reporting IG's codes."""

from __future__ import annotations

import pytest

from medml.config import get_settings
from medml.pgx.fhir import HGNC, PROFILES, to_fhir_bundle
from medml.pgx.pipeline import analyse_vcf

EXAMPLES = get_settings().data_root / "pgx" / "pharmcat-tests" / "examples"
CPIC_GENES = get_settings().data_root / "pgx" / "cpic" / "cpic-data_repo" / "seed_2020_V2_initial_data" / "gene.tsv"
pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="the shared PGx data is not here (set MEDML_DATA)")


@pytest.fixture(scope="module")
def bundle() -> dict:
    result = analyse_vcf(EXAMPLES / "pharmcat.example.vcf", outside_calls=EXAMPLES / "pharmcat.example.outsideCall.tsv")
    return to_fhir_bundle(result)


def _observations(bundle: dict, code: str) -> list[dict]:
    return [
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Observation"
        and any(c.get("code") == code for c in e["resource"]["code"]["coding"])
    ]


def test_every_resource_validates_as_fhir_r4(bundle: dict) -> None:
    from fhir.resources.R4B.bundle import Bundle
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport
    from fhir.resources.R4B.observation import Observation

    Bundle.model_validate(bundle)
    types: dict[str, type[DiagnosticReport] | type[Observation]] = {
        "DiagnosticReport": DiagnosticReport,
        "Observation": Observation,
    }
    for entry in bundle["entry"]:
        resource = entry["resource"]
        types[resource["resourceType"]].model_validate(resource)
        assert entry["fullUrl"] == f"urn:uuid:{resource['id']}"
    assert bundle["type"] == "collection"


def test_report_and_references(bundle: dict) -> None:
    report = bundle["entry"][0]["resource"]
    assert report["resourceType"] == "DiagnosticReport" and report["meta"]["profile"] == [PROFILES["report"]]
    assert report["code"]["coding"][0]["code"] == "81247-9" and report["status"] == "preliminary"
    urls = {e["fullUrl"] for e in bundle["entry"]}
    assert report["result"] and all(r["reference"] in urls for r in report["result"])
    assert "not a diagnosis" in report["conclusion"] and "HLA-A: outside call needed" in report["conclusion"]


def test_genotype_observations(bundle: dict) -> None:
    genotypes = {
        o["component"][0]["valueCodeableConcept"]["coding"][0]["display"]: o for o in _observations(bundle, "84413-4")
    }
    assert len(genotypes) == 22  # 19 VCF genes + CYP2D6, HLA-B, MT-RNR1 from outside calls
    cyp2c19 = genotypes["CYP2C19"]
    assert cyp2c19["meta"]["profile"] == [PROFILES["genotype"]]
    assert cyp2c19["valueCodeableConcept"]["text"] == "*38/*38"
    gene = cyp2c19["component"][0]
    assert gene["code"]["coding"][0]["code"] == "48018-6"
    assert gene["valueCodeableConcept"]["coding"][0] == {
        "system": "http://www.genenames.org/geneid",
        "code": "HGNC:2621",
        "display": "CYP2C19",
    }
    assert genotypes["CYP2D6"]["method"]["text"] == "outside call"


def test_implications_derive_from_the_genotype_and_name_the_drugs(bundle: dict) -> None:
    genotype_urls = {f"urn:uuid:{o['id']}": o for o in _observations(bundle, "84413-4")}
    implications = _observations(bundle, "therapeutic-implication")
    assert len(implications) == len(genotype_urls)
    by_gene = {}
    for o in implications:
        assert o["meta"]["profile"] == [PROFILES["implication"]]
        (source,) = o["derivedFrom"]
        assert source["reference"] in genotype_urls
        by_gene[source["display"].split()[0]] = o
    cyp2d6 = by_gene["CYP2D6"]
    effect, *drugs = cyp2d6["component"]
    assert effect["code"]["coding"][0]["code"] == "53040-2"
    assert effect["valueCodeableConcept"]["text"] == "Intermediate Metabolizer"
    assert all(d["code"]["coding"][0]["code"] == "51963-7" for d in drugs)
    # CYP2D6 IM: atomoxetine's dose changes (RxNorm 38400 in CPIC's drug table); codeine's label dosing does not
    names = {d["valueCodeableConcept"]["text"] for d in drugs}
    atomoxetine = next(d["valueCodeableConcept"] for d in drugs if d["valueCodeableConcept"]["text"] == "atomoxetine")
    assert atomoxetine["coding"][0] == {
        "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
        "code": "38400",
        "display": "atomoxetine",
    }
    assert "codeine" not in names
    assert cyp2d6["note"][0]["text"] == "CYP2D6 activity score 1.0"
    # CYP2C19 normal metabolizer: the proton-pump inhibitors (CPIC's NM row changes chronic dosing), not the
    # tricyclics, whose change comes from CYP2D6
    cyp2c19 = {c["valueCodeableConcept"]["text"] for c in by_gene["CYP2C19"]["component"][1:]}
    assert cyp2c19 == {"dexlansoprazole", "lansoprazole", "omeprazole", "pantoprazole"}
    assert len(by_gene["TPMT"]["component"]) == 1  # normal metabolizer, nothing to change


def test_same_result_same_ids(bundle: dict) -> None:
    again = to_fhir_bundle(
        analyse_vcf(EXAMPLES / "pharmcat.example.vcf", outside_calls=EXAMPLES / "pharmcat.example.outsideCall.tsv")
    )
    assert [e["fullUrl"] for e in again["entry"]] == [e["fullUrl"] for e in bundle["entry"]]


def test_hgnc_ids_agree_with_cpic_except_its_dpyd_error() -> None:
    if not CPIC_GENES.is_file():
        pytest.skip("no CPIC gene table")
    rows = [line.split("\t") for line in CPIC_GENES.read_text().splitlines()[1:]]
    cpic = {r[0]: r[5] for r in rows if r[0] in HGNC}
    assert cpic.pop("DPYD") == "HGNC:1806"  # CPIC's seed table holds DPYD's NCBI Gene id (1806) here
    assert cpic == {g: h for g, h in HGNC.items() if g != "DPYD"}
