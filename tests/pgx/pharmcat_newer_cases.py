"""PharmCAT test cases beyond the 404 staged in ``pharmcat-tests/expected.json``, in the same format.

Transcribed by hand from the JUnit classes of PharmCAT's newest source (PharmGKB/PharmCAT ``main`` at 5431bf1, the
3.1.1 release plus two build-only commits; ``src/test/java/org/pharmgkb/pharmcat/...``): the test methods the staged
suite holds back that bear on diplotype naming and order, partial and missing-allele calls in research mode,
outside-call alleles with no function, and RYR1 with CACNA1S absent. Only the assertions the conformance harness
can judge are kept (calls, diplotype names and order, recommendation diplotypes, phenotypes, CPIC match counts);
report-layout and Java-object assertions are left out. Each VCF is a recipe for
:class:`pgx_vcf_builder.VcfBuilder` (the test's ``TestVcfBuilder`` calls); ``resource`` names a VCF PharmCAT ships.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pgx_vcf_builder import VcfBuilder

PIPELINE = {"findCombinations": False, "topCandidateOnly": True, "callCyp2d6": False}
RESEARCH = {"findCombinations": True, "topCandidateOnly": True, "callCyp2d6": False}
_RESOURCES = "resources/org/pharmgkb/pharmcat/haplotype"

# (id, options, VCF recipe, outside-call lines, expectations). A recipe is a list of builder steps:
# ("phased",), ("ref", gene), ("var", gene, rsid, a1, a2[, phase_set]), ("asis", gene, rsid, gt, ref, *alts), or
# ("resource", file name[, definition file name]).
CASES: list[tuple[str, dict[str, Any], list[tuple[Any, ...]], list[str], list[dict[str, Any]]]] = [
    # --- area 1: name order with copy numbers (Cyp2d6Test) -----------------------------------------------------
    (
        "Cyp2d6Test/testCyp2d6CpicVsDpwg",
        PIPELINE,
        [("ref", "CYP2C19")],
        [f"CYP2D6\t{d}" for d in ("*1x2/*9", "*1x2/*10", "*1x2/*17", "*1x3/*1", "*1/*1", "*4/*10", "*4/*4")],
        [
            {"type": "called_by_matcher", "genes": ["CYP2C19"]},
            {"type": "not_called_by_matcher", "genes": ["CYP2D6"]},
            {
                "type": "source_diplotypes",
                "gene": "CYP2D6",
                "value": ["*1/*1", "*1x2/*9", "*1x2/*10", "*1x2/*17", "*1/*1x3", "*4/*4", "*4/*10"],
            },
            {
                "type": "print_calls",
                "gene": "CYP2D6",
                "value": ["*1/*1", "*1x2/*9", "*1x2/*10", "*1x2/*17", "*1/*1x3", "*4/*4", "*4/*10"],
            },
        ],
    ),
    (
        "Cyp2d6Test/testCyp2d6DoubleCall",
        PIPELINE,
        [("ref", "CYP2C19")],
        ["CYP2D6\t*1/*1", "CYP2D6\t*1/*1x7"],
        [
            {"type": "recommended_diplotype", "gene": "CYP2D6", "haplotypes": ["*1", "*1"]},
            {"type": "recommended_diplotype", "gene": "CYP2D6", "haplotypes": ["*1", "*1x≥3"]},
            {"type": "recommended_phenotype", "gene": "CYP2D6", "value": "Normal Metabolizer"},
            {"type": "recommended_phenotype", "gene": "CYP2D6", "value": "Ultrarapid Metabolizer"},
        ],
    ),
    # --- area 3: an outside-call allele with no function (Cyp2d6Test, GeneReportTest) -----------------------------
    (
        "Cyp2d6Test/testCyp2d6AlleleWithNoFunction",
        PIPELINE,
        [("ref", "CYP2C19")],
        ["CYP2D6\t*1/*XXX"],
        [
            {"type": "print_calls", "gene": "CYP2D6", "value": ["*1/*XXX"]},
            {"type": "source_phenotype_contains", "gene": "CYP2D6", "value": "Indeterminate"},
            {"type": "recommended_phenotype", "gene": "CYP2D6", "value": "Indeterminate"},
            {"type": "matched_annotation_count", "drug": "atomoxetine", "source": "CPIC_GUIDELINE", "count": 2},
        ],
    ),
    (
        "GeneReportTest/testNoFunctionCyp2D6",
        PIPELINE,
        [("ref", "CYP2C19")],
        ["CYP2D6\t*1/*XXX"],
        [
            {"type": "reportable", "genes": ["CYP2D6"]},
            {"type": "print_calls", "gene": "CYP2D6", "value": ["*1/*XXX"]},
        ],
    ),
    # --- area 2: partial and missing-allele calls in research mode (NamedAlleleMatcherTest) ----------------------
    (
        "NamedAlleleMatcherTest/testPartialMissingAllele_combination1",
        RESEARCH,
        [("ref", "CYP2B6"), ("var", "CYP2B6", "rs8192709", "T", ".")],
        [],
        [{"type": "matcher_diplotypes", "gene": "CYP2B6", "value": ["*2/g.40991369?"]}],
    ),
    (
        "NamedAlleleMatcherTest/testPartialMissingAllele_combination_phased",
        RESEARCH,
        [("phased",), ("ref", "CYP2B6"), ("var", "CYP2B6", "rs8192709", ".", "T")],
        [],
        [{"type": "matcher_diplotypes", "gene": "CYP2B6", "value": ["*2/g.40991369?"]}],
    ),
    (
        "NamedAlleleMatcherTest/testPartialUnphasedWithSingleHapMatch",
        RESEARCH,
        [
            ("ref", "CYP2B6"),
            ("var", "CYP2B6", "rs33973337", "A", "T"),
            ("asis", "CYP2B6", "rs45482602", "0/2", "C", "A", "T"),
        ],
        [],
        [
            {
                "type": "matcher_diplotypes",
                "gene": "CYP2B6",
                "value": ["*1/[g.40991381A>T + g.41009350C>T]", "g.40991381A>T/g.41009350C>T"],
            }
        ],
    ),
    (
        "NamedAlleleMatcherTest/testPartial2Phased",
        RESEARCH,
        [
            ("phased",),
            ("ref", "CYP2C19"),
            ("var", "CYP2C19", "rs12248560", "T", "C"),
            ("var", "CYP2C19", "rs12769205", "A", "G"),
            ("var", "CYP2C19", "rs4244285", "A", "A"),
            ("var", "CYP2C19", "rs3758581", "G", "G"),
        ],
        [],
        [{"type": "matcher_diplotypes", "gene": "CYP2C19", "value": ["*2/[*17 + g.94781859G>A]"]}],
    ),
    (
        "NamedAlleleMatcherTest/testPartialWithCombination",
        {**RESEARCH, "definitionFile": f"{_RESOURCES}/NamedAlleleMatcher-combination.json", "withExemptions": False},
        [("resource", "NamedAlleleMatcher-partialWithCombination.vcf")],
        [],
        [
            {
                "type": "matcher_diplotypes",
                "value": [
                    "*1/[*6 + *28 + g.233760973C>T]",
                    "g.233760973C>T/[*6 + *28]",
                    "*6/[*28 + g.233760973C>T]",
                    "*28/[*6 + g.233760973C>T]",
                ],
            }
        ],
    ),
    # --- area 1: combination order (NamedAlleleMatcherTest) ------------------------------------------------------
    (
        "NamedAlleleMatcherTest/testCombinationUnphased",
        {**RESEARCH, "definitionFile": f"{_RESOURCES}/NamedAlleleMatcher-combination.json", "withExemptions": False},
        [("resource", "NamedAlleleMatcher-combinationUnphased.vcf")],
        [],
        [
            {
                "type": "matcher_diplotypes",
                "value": [
                    "*1/[*6 + *27 + *28 + *80]",
                    "*6/[*27 + *28 + *80]",
                    "*27/[*6 + *28 + *80]",
                    "*28/[*6 + *27 + *80]",
                    "*80/[*6 + *27 + *28]",
                    "[*6 + *27]/[*28 + *80]",
                    "[*6 + *28]/[*27 + *80]",
                    "[*6 + *80]/[*27 + *28]",
                ],
            }
        ],
    ),
    (
        "NamedAlleleMatcherTest/testCombo3WithPhaseSet",
        RESEARCH,
        [
            ("phased",),
            ("ref", "CYP2B6"),
            ("var", "CYP2B6", "rs34883432", "A", "T", 40991346),
            ("var", "CYP2B6", "rs8192709", "C", "T", 40991346),
            ("var", "CYP2B6", "rs35773040", "A", "G", 41004360),
            ("var", "CYP2B6", "rs3745274", "G", "T", 41006915),
        ],
        [],
        [
            {
                "type": "matcher_diplotypes",
                "gene": "CYP2B6",
                "value": ["*1/[*9 + *10 + *14]", "*9/[*10 + *14]", "*10/[*9 + *14]", "*14/[*9 + *10]"],
            }
        ],
    ),
    # --- area 4: RYR1 with CACNA1S absent, or reference (Ryr1Test, Cacna1sTest) ----------------------------------
    (
        "Ryr1Test/cacna1sRef_ryr1Het",
        PIPELINE,
        [("ref", "CACNA1S"), ("ref", "RYR1"), ("var", "RYR1", "rs193922749", "A", "C")],
        [],
        [
            {"type": "called_by_matcher", "genes": ["CACNA1S", "RYR1"]},
            {"type": "source_diplotypes", "gene": "CACNA1S", "value": ["Reference/Reference"]},
            {"type": "recommended_diplotype", "gene": "CACNA1S", "haplotypes": ["Reference", "Reference"]},
            {"type": "source_diplotypes", "gene": "RYR1", "value": ["c.152C>A (heterozygous)"]},
            {"type": "recommended_diplotype", "gene": "RYR1", "haplotypes": ["Reference", "c.152C>A"]},
        ],
    ),
    (
        "Ryr1Test/cacna1sRef_ryr1Het2",
        PIPELINE,
        [
            ("ref", "CACNA1S"),
            ("ref", "RYR1"),
            ("var", "RYR1", "rs34694816", "A", "G"),
            ("var", "RYR1", "rs137933390", "A", "G"),
        ],
        [],
        [
            {"type": "called_by_matcher", "genes": ["CACNA1S", "RYR1"]},
            {"type": "source_diplotypes", "gene": "RYR1", "value": ["c.4024A>G", "c.4178A>G"]},
            {"type": "recommended_diplotype", "gene": "RYR1", "haplotypes": ["c.4024A>G", "c.4178A>G"]},
        ],
    ),
    (
        "Ryr1Test/cacna1sMissing_ryr1Het2",
        PIPELINE,
        [("ref", "RYR1"), ("var", "RYR1", "rs34694816", "A", "G"), ("var", "RYR1", "rs137933390", "A", "G")],
        [],
        [
            {"type": "not_called_by_matcher", "genes": ["CACNA1S"]},
            {"type": "called_by_matcher", "genes": ["RYR1"]},
            {"type": "source_diplotypes", "gene": "RYR1", "value": ["c.4024A>G", "c.4178A>G"]},
            {"type": "recommended_diplotype", "gene": "RYR1", "haplotypes": ["c.4024A>G", "c.4178A>G"]},
            {"type": "recommended_phenotype", "gene": "RYR1", "value": "Uncertain Susceptibility"},
            {"type": "recommended_phenotype", "gene": "CACNA1S", "value": "No Result"},
        ],
    ),
    (
        "Ryr1Test/cacna1sMissing_ryr1Het4",
        PIPELINE,
        [
            ("ref", "RYR1"),
            ("var", "RYR1", "rs193922746", "A", "G"),
            ("var", "RYR1", "rs193922749", "C", "A"),
            ("var", "RYR1", "rs142474192", "G", "A"),
            ("var", "RYR1", "rs146876145", "C", "T"),
        ],
        [],
        [
            {"type": "not_called_by_matcher", "genes": ["CACNA1S"]},
            {"type": "called_by_matcher", "genes": ["RYR1"]},
            {"type": "source_diplotypes", "gene": "RYR1", "value": ["c.97A>G", "c.152C>A", "c.418G>A", "c.14918C>T"]},
            {"type": "recommended_diplotype", "gene": "RYR1", "haplotypes": ["c.97A>G", "c.14918C>T"]},
        ],
    ),
    (
        "Ryr1Test/cacna1sMissing_ryr1Het4Phased",
        PIPELINE,
        [
            ("phased",),
            ("ref", "RYR1"),
            ("var", "RYR1", "rs193922746", "A", "G"),
            ("var", "RYR1", "rs193922749", "C", "A"),
            ("var", "RYR1", "rs142474192", "G", "A"),
            ("var", "RYR1", "rs146876145", "C", "T"),
        ],
        [],
        [
            {"type": "not_called_by_matcher", "genes": ["CACNA1S"]},
            {"type": "called_by_matcher", "genes": ["RYR1"]},
            {
                "type": "source_diplotypes",
                "gene": "RYR1",
                "value": ["[c.97A>G + c.152C>A + c.418G>A + c.14918C>T] (heterozygous)"],
            },
            {"type": "recommended_diplotype", "gene": "RYR1", "haplotypes": ["Reference", "c.97A>G"]},
        ],
    ),
    (
        "Cacna1sTest/cacna1sHom_ryr1Het2",
        PIPELINE,
        [("ref", "CACNA1S"), ("var", "RYR1", "rs193922746", "A", "G"), ("var", "RYR1", "rs193922749", "C", "A")],
        [],
        [
            {"type": "called_by_matcher", "genes": ["CACNA1S", "RYR1"]},
            {"type": "source_diplotypes", "gene": "CACNA1S", "value": ["Reference/Reference"]},
            {"type": "recommended_diplotype", "gene": "CACNA1S", "haplotypes": ["Reference", "Reference"]},
            {"type": "source_diplotypes", "gene": "RYR1", "value": ["c.97A>G", "c.152C>A"]},
            {"type": "recommended_diplotype", "gene": "RYR1", "haplotypes": ["c.97A>G", "c.152C>A"]},
        ],
    ),
]


def _vcf(recipe: list[tuple[Any, ...]], name: str) -> str:
    builder = VcfBuilder()
    for step in recipe:
        kind, *args = step
        if kind == "phased":
            builder.phased()
        elif kind == "ref":
            builder.reference(args[0])
        elif kind == "var":
            gene, rsid, a1, a2, *ps = args
            builder.variation(gene, rsid, a1, a2, phase_set=ps[0] if ps else None)
        elif kind == "asis":
            gene, rsid, gt, ref, *alts = args
            builder.variation_as_is(gene, rsid, gt, ref, *alts)
    return builder.text(name)


def stage(folder: Path, tests_dir: Path) -> Path:
    """Write the cases as an ``expected.json`` suite under ``folder`` (VCFs and outside calls beside it), for
    :func:`medml.pgx.conformance.run_suite`; resource VCFs and definitions are read from ``tests_dir``."""
    cases = []
    for case_id, options, recipe, outside, expect in CASES:
        name = case_id.replace("/", "__")
        opts = dict(options)
        if "definitionFile" in opts:
            opts["definitionFile"] = str(tests_dir / opts["definitionFile"])
        if recipe and recipe[0][0] == "resource":
            vcf = str(tests_dir / _RESOURCES / recipe[0][1])
        else:
            vcf = f"{name}.vcf"
            (folder / vcf).write_text(_vcf(recipe, name))
        files = []
        if outside:
            files = [f"{name}.tsv"]
            (folder / files[0]).write_text("\n".join(outside) + "\n", encoding="utf-8")
        genes = sorted(
            {s[1] for s in recipe if s[0] in ("ref", "var", "asis")} | {line.split("\t")[0] for line in outside}
        )
        cases.append(
            {
                "id": case_id,
                "kind": "pipeline",
                "options": opts,
                "vcf": vcf,
                "outside_calls": files,
                "genes": genes,
                "expect": expect,
            }
        )
    path = folder / "expected.json"
    path.write_text(json.dumps({"cases": cases}, ensure_ascii=False, indent=1), encoding="utf-8")
    return path
