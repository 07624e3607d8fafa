"""The whole pipeline on PharmCAT's two worked examples: VCF -> calls, phenotypes, CPIC matches and messages, against
PharmCAT 3.1.0's own output (``pharmcat-tests/examples``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from medml.config import get_settings
from medml.errors import InputFileError
from medml.pgx.alerts import order_alerts
from medml.pgx.pipeline import SCHEMA, analyse_vcf, phenotypes_from_dict

EXAMPLES = get_settings().data_root / "pgx" / "pharmcat-tests" / "examples"
pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="the shared PGx data is not here (set MEDML_DATA)")
#: warfarin is CPIC's flowchart (PharmCAT shows one empty "n/a" annotation); metoprolol and hydralazine guidelines
#: are newer than our 2024-03 CPIC data
NOT_IN_SNAPSHOT = {"warfarin", "metoprolol", "hydralazine"}
NAMES = ["pharmcat.example", "pharmcat.example2"]


def _example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / "expected_summary.json").read_text())["examples"][name]


@pytest.fixture(scope="module", params=NAMES)
def worked(request: pytest.FixtureRequest) -> tuple[str, Any, dict[str, Any]]:
    example = _example(request.param)
    outside = EXAMPLES.parent / example["outside_calls"] if example["outside_calls"] else None
    return request.param, analyse_vcf(EXAMPLES / f"{request.param}.vcf", outside_calls=outside), example


def test_calls_and_phenotypes_match_pharmcat(worked) -> None:
    _, result, example = worked
    doc = {g["gene"]: g for g in result.to_dict()["genes"]}
    for want in example["gene_calls"]:
        gene = want["Gene"]
        got = doc[gene]
        assert got["called"], gene
        assert got["source"] == ("outside" if want["Outside Call"] == "yes" else "vcf"), gene
        assert got["diplotypes"] == [want["Source Diplotype"]], gene
        assert got["lookup_diplotypes"] == [want["Recommendation Lookup Diplotype"]], gene
        assert (got["phenotype"] or "") == want["Phenotype"].strip(), gene  # IFNL3: PharmCAT prints " "
        assert (got["activity_score"] or "") == want["Activity Score"], gene
        if want["Outside Call"] == "no":  # CYP4F2 has no phenotype table: PharmCAT prints "null"
            functions = got["functions"][0] if got["functions"] else ["null", "null"]
            assert functions == [want["Haplotype 1 Function"], want["Haplotype 2 Function"]], gene


def test_cpic_recommendations_match_pharmcat(worked) -> None:
    _, result, example = worked
    for drug, v in example["drug_recommendations"]["CPIC Guideline Annotation"].items():
        if drug in NOT_IN_SNAPSHOT:
            continue
        want = sorted(
            (m["population"], m["classification"], json.dumps(m["lookupKey"][0], sort_keys=True))
            for m in v["matched_annotations"]
        )
        entry = result.drug(drug)
        have = sorted(
            (r.population, r.classification, json.dumps(dict(r.lookup_key), sort_keys=True))
            for r in (entry.recommendations if entry else ())
        )
        assert have == want, drug


def test_messages_match_pharmcats_report(worked) -> None:
    name, result, _ = worked
    report = json.loads((EXAMPLES / f"{name}.report.json").read_text())
    for gene, g in report["genes"].items():
        assert sorted(m.id for m in result.gene_messages.get(gene, ())) == sorted(
            m["rule_name"] for m in g["messages"]
        ), gene
    for drug, d in report["drugs"]["CPIC Guideline Annotation"].items():
        entry = result.drug(drug)
        ours = sorted(m.id for m in entry.messages) if entry else []
        assert ours == sorted(m["rule_name"] for m in d.get("messages", [])), drug


def test_example2_is_a_cyp2c19_poor_metabolizer_who_must_avoid_clopidogrel() -> None:
    result = analyse_vcf(EXAMPLES / "pharmcat.example2.vcf")
    clopidogrel = result.drug("clopidogrel")
    assert clopidogrel is not None and clopidogrel.rxnorm == "RxNorm:32968"
    acs = next(r for r in clopidogrel.actionable if r.population == "CVI ACS PCI")
    assert acs.classification == "Strong" and acs.text.startswith("Avoid clopidogrel")
    # CYP2D6 has no outside call in example 2: listed as not tested, and codeine is not among the drugs
    assert {n.gene: n.status for n in result.not_tested}["CYP2D6"] == "outside call needed"
    assert result.drug("codeine") is None


def test_document_schema_and_round_trip(worked) -> None:
    _, result, _ = worked
    doc = json.loads(result.to_json())
    assert doc["schema"] == SCHEMA and doc["intended_use"].startswith("Clinical decision support, not a diagnosis")
    assert set(doc) >= {"sample", "genes", "drugs", "not_tested", "versions", "warfarin", "limits"}
    assert doc["versions"]["cpic_guidelines"] == ["CPIC API v1.30.0", "CPIC guideline annotation 2024-03-25-16-13"]
    assert doc["versions"]["allele_definitions"] == "2025-11-05-00-25"
    gene = doc["genes"][0]
    assert set(gene) >= {"gene", "source", "diplotypes", "phenotype", "activity_score", "functions", "warnings"}
    rec = next(r for d in doc["drugs"] for r in d["recommendations"])
    assert set(rec) >= {"population", "classification", "text", "implications", "alternate_drug"}
    # what `medml pgx drug` reads back gives the same alerts as the live result
    back = phenotypes_from_dict(doc)
    for drug in ("clopidogrel", "codeine", "abacavir", "simvastatin", "fluorouracil"):
        assert order_alerts(drug, back) == order_alerts(drug, result.phenotypes), drug


def test_warfarin_shows_the_genotype_part_and_asks_for_clinical_inputs() -> None:
    result = analyse_vcf(EXAMPLES / "pharmcat.example.vcf")
    w = result.warfarin
    assert w is not None and (w.cyp2c9, w.vkorc1, w.cyp4f2_star3_copies, w.rs12777823_a_copies) == ("*1/*1", "GG", 0, 0)
    assert w.cyp2c9_african_alleles_tested
    assert "age, height, weight" in w.notes[0]


def test_multi_sample_vcf_needs_a_sample() -> None:
    with pytest.raises(InputFileError, match=r"2 samples \(Sample_1, Sample_2\).*--sample"):
        analyse_vcf(EXAMPLES / "multisample.vcf")
    result = analyse_vcf(EXAMPLES / "multisample.vcf", sample="Sample_2")
    assert result.sample == "Sample_2" and result.calls["CYP2C19"].diplotypes[0].label == "*2/*2"
    with pytest.raises(InputFileError, match="Sample_9"):
        analyse_vcf(EXAMPLES / "multisample.vcf", sample="Sample_9")


def test_missing_positions_are_not_tested_never_reference(tmp_path) -> None:
    """Drop every CYP2C19 and TPMT record: those genes are 'not in the VCF', and their drugs are not listed."""
    from medml.pgx.definitions import load_definitions

    defs = load_definitions(("CYP2C19", "TPMT"))
    drop = {(p.chromosome, p.position) for d in defs.values() for p in d.positions}
    lines = (EXAMPLES / "pharmcat.example2.vcf").read_text().splitlines(keepends=True)
    kept = [ln for ln in lines if ln.startswith("#") or (ln.split("\t")[0], int(ln.split("\t")[1])) not in drop]
    vcf = tmp_path / "partial.vcf"
    vcf.write_text("".join(kept))
    result = analyse_vcf(vcf)
    status = {n.gene: n.status for n in result.not_tested}
    assert status["CYP2C19"] == status["TPMT"] == "not in the VCF"
    assert not result.phenotypes["CYP2C19"].called
    assert result.drug("clopidogrel") is None and result.drug("voriconazole") is None
    # azathioprine stays: NUDT15 was tested; TPMT is looked up as "No Result"
    aza = result.drug("azathioprine")
    assert aza is not None and all(dict(r.phenotypes)["TPMT"] == "No Result" for r in aza.recommendations)
