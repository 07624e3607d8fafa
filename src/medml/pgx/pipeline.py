"""One sample, end to end: a VCF -> gene calls -> phenotypes -> CPIC recommendations, and what was not tested.

:func:`analyse_vcf` reads one sample of a GRCh38 VCF, calls every gene PharmCAT calls by default (CYP2D6, HLA-A/B and
MT-RNR1 need outside calls), lets outside calls replace VCF calls, phenotypes every gene, matches the CPIC
recommendations of every drug whose genes were tested, attaches PharmCAT's messages, and lists the genes that were
not tested and why. Warfarin has no CPIC lookup rows: its entry shows the genotype part of CPIC's flowchart and says
which clinical inputs the dose needs (:mod:`medml.pgx.warfarin`).

:meth:`PgxResult.to_dict` is the stable JSON document (schema :data:`SCHEMA`); :func:`phenotypes_from_dict` reads its
gene results back, which is all a drug-order check needs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Literal

from medml.errors import InputFileError, quote
from medml.pgx.alerts import changes_prescription
from medml.pgx.calls import Diplotype, GeneCall
from medml.pgx.cpic import ANNOTATIONS, API, Recommendation, guidelines, recommendations
from medml.pgx.definitions import DEFAULT_GENES, GeneDefinition, load_definitions
from medml.pgx.matcher import call_genes
from medml.pgx.messages import Message, drug_messages, gene_messages
from medml.pgx.outside import read_outside_calls
from medml.pgx.phenotype import HLA_ALLELES, DiplotypePhenotype, GenePhenotype, pgx_data_root, phenotypes
from medml.pgx.vcf import VcfSample, read_vcf

__all__ = [
    "INTENDED_USE",
    "LIMITS",
    "SCHEMA",
    "DrugResult",
    "NotTested",
    "PgxResult",
    "WarfarinGenotype",
    "analyse_calls",
    "analyse_vcf",
    "phenotypes_from_dict",
]

SCHEMA = "medml.pgx.result/1"
INTENDED_USE = (
    "Clinical decision support, not a diagnosis. Genotypes called by software from a sequencing or array "
    "VCF must be confirmed by an accredited laboratory before they guide prescribing; the prescriber "
    "decides, with the patient's clinical picture."
)
LIMITS = (
    "CYP2D6 is not called from the VCF (copy number and structural variants decide it): its result comes only from "
    "an outside call (e.g. StellarPGx, Aldy, or a laboratory report). HLA-A, HLA-B and MT-RNR1 likewise.",
    "A position missing from the VCF is a no-call, never assumed reference: alleles defined there cannot be ruled out.",
    "Recommendations are CPIC's, from the guideline data dated 2024-03 (CPIC API v1.30.0 for the drugs that data "
    "lacks); later CPIC updates (e.g. metoprolol 2024-07, hydralazine 2025-09) are not included. DPWG and FDA label "
    "guidance are not shown.",
    "Rare and novel variants outside PharmCAT's allele definitions are not detected.",
)
OUTSIDE_ONLY = ("CYP2D6", "HLA-A", "HLA-B", "MT-RNR1")
WARFARIN_GENES = ("CYP2C9", "VKORC1", "CYP4F2")
Status = Literal["not in the VCF", "not called", "incomplete", "outside call needed"]


@dataclass(frozen=True)
class NotTested:
    """A gene with no result, or a partial one, and why (positions missing, not called, outside call needed)."""

    gene: str
    status: Status
    reason: str
    missing_positions: tuple[int, ...] = ()


@dataclass(frozen=True)
class WarfarinGenotype:
    """The genotype part of CPIC's warfarin flowchart; the dose itself needs the clinical inputs (see notes)."""

    cyp2c9: str | None
    vkorc1: str | None
    cyp4f2_star3_copies: int | None
    rs12777823_a_copies: int | None
    cyp2c9_african_alleles_tested: bool
    notes: tuple[str, ...]


@dataclass(frozen=True)
class DrugResult:
    """A drug whose CPIC guideline involves a tested gene: the matched recommendations and the messages."""

    drug: str
    rxnorm: str | None
    guideline: str
    guideline_url: str | None
    version: str
    genes: tuple[str, ...]
    recommendations: tuple[Recommendation, ...]
    messages: tuple[Message, ...] = ()

    @property
    def actionable(self) -> tuple[Recommendation, ...]:
        """The recommendations that change the usual prescription (what a prescriber must see)."""
        return tuple(r for r in self.recommendations if changes_prescription(r))


@dataclass(frozen=True)
class PgxResult:
    """One sample's pharmacogenomic result; :meth:`to_dict` is the JSON document."""

    sample: str
    source: str | None
    calls: Mapping[str, GeneCall]
    phenotypes: Mapping[str, GenePhenotype]
    drugs: tuple[DrugResult, ...]
    not_tested: tuple[NotTested, ...]
    gene_messages: Mapping[str, tuple[Message, ...]]
    warfarin: WarfarinGenotype | None
    versions: Mapping[str, Any]
    generated: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def drug(self, name: str) -> DrugResult | None:
        """A drug's entry by name (any case), or None when its genes were not tested."""
        return next((d for d in self.drugs if d.drug.lower() == name.strip().lower()), None)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document: sample, genes, drugs, warfarin, not_tested, versions, intended_use, limits."""
        return {
            "schema": SCHEMA,
            "sample": self.sample,
            "source": self.source,
            "generated": self.generated,
            "intended_use": INTENDED_USE,
            "limits": list(LIMITS),
            "genes": [
                _gene_dict(self.phenotypes[g], self.calls.get(g), self.gene_messages.get(g, ()))
                for g in sorted(self.phenotypes)
            ],
            "drugs": [_drug_dict(d) for d in self.drugs],
            "warfarin": None
            if self.warfarin is None
            else {
                "cyp2c9": self.warfarin.cyp2c9,
                "vkorc1": self.warfarin.vkorc1,
                "cyp4f2_star3_copies": self.warfarin.cyp4f2_star3_copies,
                "rs12777823_a_copies": self.warfarin.rs12777823_a_copies,
                "cyp2c9_african_alleles_tested": self.warfarin.cyp2c9_african_alleles_tested,
                "notes": list(self.warfarin.notes),
            },
            "not_tested": [
                {"gene": n.gene, "status": n.status, "reason": n.reason, "missing_positions": list(n.missing_positions)}
                for n in self.not_tested
            ],
            "versions": dict(self.versions),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)


def _one(values: Iterable[str | None]) -> str | None:
    """Tied diplotypes' values: the value when they agree, else 'A or B'."""
    seen = list(dict.fromkeys(v for v in values if v))
    return " or ".join(seen) if seen else None


def _result_dict(r: DiplotypePhenotype) -> dict[str, Any]:
    return {
        "diplotype": r.diplotype.label if r.diplotype else None,
        "haplotypes": list(r.diplotype.haplotypes) if r.diplotype else [],
        "phenotype": r.phenotype,
        "activity_score": r.activity_score,
        "functions": list(r.functions),
        "activity_values": list(r.activity_values),
        "lookup_keys": list(r.lookup_keys),
    }


def _gene_dict(p: GenePhenotype, call: GeneCall | None, messages: tuple[Message, ...]) -> dict[str, Any]:
    source_dips = [d.label for d in call.diplotypes] if call else []
    if call and call.variants and not source_dips:
        source_dips = list(call.variants)
    results = [r for r in p.results if r.diplotype is not None or r.phenotype or r.lookup_keys]
    phenotype = _one(r.phenotype for r in results)
    if phenotype is None and p.gene in HLA_ALLELES:
        phenotype = _one(", ".join(r.lookup_keys) for r in results)
    return {
        "gene": p.gene,
        "source": p.source,
        "called": p.called,
        "diplotypes": source_dips,
        "lookup_diplotypes": [r.diplotype.label for r in results if r.diplotype],
        "phenotype": phenotype if p.called else None,
        "activity_score": _one(r.activity_score for r in results) if p.called else None,
        "functions": [list(r.functions) for r in results if r.functions],
        "results": [_result_dict(r) for r in results] if p.called else [],
        "phased": bool(call and call.phased),
        "missing_positions": list(call.missing_positions) if call else [],
        "warnings": list(p.warnings),
        "messages": [{"id": m.id, "type": m.kind, "text": m.text} for m in messages],
        "phenotype_table_version": p.table_version,
    }


def _drug_dict(d: DrugResult) -> dict[str, Any]:
    return {
        "drug": d.drug,
        "rxnorm": d.rxnorm,
        "guideline": d.guideline,
        "guideline_url": d.guideline_url,
        "version": d.version,
        "genes": list(d.genes),
        "recommendations": [
            {
                "population": r.population,
                "classification": r.classification,
                "text": r.text,
                "implications": list(r.implications),
                "alternate_drug": r.alternate_drug,
                "dosing_information": r.dosing_information,
                "other_guidance": r.other_guidance,
                "changes_prescription": changes_prescription(r),
                "lookup_key": dict(r.lookup_key),
                "phenotypes": dict(r.phenotypes),
            }
            for r in d.recommendations
        ],
        "messages": [{"id": m.id, "type": m.kind, "text": m.text} for m in d.messages],
    }


def read_results(path: Path, fix: str = "give the JSON of `medml pgx call --format json`") -> dict[str, Any]:
    """A saved results document (``medml pgx call --format json``); InputFileError saying what is wrong, with
    ``fix``. A missing file raises FileNotFoundError for the caller to word."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except IsADirectoryError:
        raise InputFileError(f"{path} is a folder, not a results file", fix) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputFileError(f"{path} is not a readable JSON file ({e})", fix) from e
    except RecursionError:
        raise InputFileError(f"{path} holds JSON nested too deeply to be a medml PGx result", fix) from None
    if not isinstance(document, dict):
        raise InputFileError(f"{path} is not a medml PGx result (a JSON object)", fix)
    return document


def phenotypes_from_dict(document: Mapping[str, Any]) -> dict[str, GenePhenotype]:
    """The gene results of a :meth:`PgxResult.to_dict` document, ready for :func:`medml.pgx.alerts.order_alerts`.

    Every field read is checked for its type first: InputFileError names the entry and the field that is wrong.
    """
    schema = document.get("schema") if isinstance(document, Mapping) else None
    if schema != SCHEMA:
        raise InputFileError(
            f"not a medml PGx result (schema {quote(schema)}, expected {SCHEMA!r})",
            "give the JSON that `medml pgx call SAMPLE.vcf --format json` writes",
        )
    genes = document.get("genes")
    if not isinstance(genes, list):
        raise _malformed(f"its 'genes' is {_json_kind(genes)}, not a list of gene entries")
    out = {}
    for i, g in enumerate(genes, start=1):
        if not isinstance(g, Mapping):
            raise _malformed(f"gene entry {i} is {_json_kind(g)}, not an object")
        gene = _field(g, "gene", str, f"gene entry {i}")
        where = f"gene entry {i} ({quote(gene)})"
        source = _field(g, "source", str, where)
        if source not in ("vcf", "outside"):
            raise _malformed(f"{where} has source {quote(source)}, not 'vcf' or 'outside'")
        results = []
        for j, r in enumerate(_field(g, "results", list, where, optional=True) or (), start=1):
            at = f"result {j} of {where}"
            if not isinstance(r, Mapping):
                raise _malformed(f"{at} is {_json_kind(r)}, not an object")
            haplotypes = _strings(r, "haplotypes", at)
            results.append(
                DiplotypePhenotype(
                    Diplotype(haplotypes) if haplotypes else None,
                    _strings(r, "functions", at),
                    _strings(r, "activity_values", at),
                    _field(r, "phenotype", str, at, optional=True),
                    _field(r, "activity_score", str, at, optional=True),
                    _strings(r, "lookup_keys", at),
                )
            )
        out[gene] = GenePhenotype(
            gene,
            source,
            tuple(results),
            _field(g, "called", bool, where),
            _field(g, "phenotype_table_version", str, where, optional=True),
            _strings(g, "warnings", where),
        )
    return out


def _malformed(what: str) -> InputFileError:
    return InputFileError(
        f"the PGx result is malformed: {what}", "regenerate it with `medml pgx call SAMPLE.vcf --format json`"
    )


_JSON_KINDS = {
    dict: "an object",
    list: "a list",
    str: "text",
    bool: "true or false",
    int: "a number",
    float: "a number",
}


def _json_kind(value: object) -> str:
    if value is None:
        return "null (or missing)"
    kind = next((k for t, k in _JSON_KINDS.items() if isinstance(value, t)), type(value).__name__)
    return f"{kind} {quote(value)}" if isinstance(value, str | int | float) else kind


def _field(entry: Mapping[str, Any], key: str, kind: type, where: str, *, optional: bool = False) -> Any:
    """``entry[key]`` when it is of ``kind`` (or missing/null and ``optional``), else InputFileError."""
    value = entry.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise _malformed(f"{where} has '{key}' as {_json_kind(value)}, not {_JSON_KINDS[kind]}")
    return value


def _strings(entry: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    """``entry[key]`` as a tuple of text (missing or null: empty)."""
    values = _field(entry, key, list, where, optional=True) or []
    if not all(isinstance(v, str) for v in values):
        bad = next(v for v in values if not isinstance(v, str))
        raise _malformed(f"{where} has in '{key}' {_json_kind(bad)}, not text")
    return tuple(values)


def _read_sample(vcf_path: Path, sample: str | None) -> VcfSample:
    samples = read_vcf(vcf_path, samples=None if sample is None else [sample])
    if not samples:
        raise InputFileError(f"{vcf_path} has no sample columns", "a VCF with genotypes (FORMAT + samples) is needed")
    if len(samples) > 1:
        names = [s.sample_id for s in samples]
        shown = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
        raise InputFileError(f"{vcf_path} has {len(names)} samples ({shown})", "choose one with --sample ID")
    return samples[0]


def analyse_vcf(
    vcf_path: str | Path,
    *,
    outside_calls: str | Path | Iterable[str | Path] | None = None,
    sample: str | None = None,
    find_combinations: bool = False,
    data_root: Path | None = None,
) -> PgxResult:
    """Analyse one sample of a GRCh38 VCF (``sample`` picks one of a multi-sample file), with optional outside-call
    files (``gene<TAB>diplotype<TAB>phenotype<TAB>activity score``) that replace the VCF's calls."""
    path = Path(vcf_path)
    if path.is_dir():
        raise InputFileError(f"{path} is a folder, not a VCF file", "give one VCF file (.vcf or .vcf.gz)")
    if not path.is_file():
        raise InputFileError(f"VCF file {path} not found", "check the path")
    vcf_sample = _read_sample(path, sample)
    defs = load_definitions()
    calls = call_genes(vcf_sample, definitions=defs, find_combinations=find_combinations)
    outside = read_outside_calls(outside_calls, data_root) if outside_calls is not None else []
    return analyse_calls(
        calls.values(),
        outside_calls=outside,
        sample=vcf_sample.sample_id,
        genotypes=vcf_sample,
        source=path.name,
        definitions=defs,
        data_root=data_root,
    )


def analyse_calls(
    calls: Iterable[GeneCall],
    *,
    outside_calls: Iterable[GeneCall] = (),
    sample: str = "unknown",
    genotypes: VcfSample | None = None,
    source: str | None = None,
    definitions: Mapping[str, GeneDefinition] | None = None,
    data_root: Path | None = None,
) -> PgxResult:
    """Interpret gene calls (VCF calls, and outside calls that replace them): phenotypes, CPIC recommendations,
    messages, warfarin's genotype part and what was not tested. ``genotypes`` (the sample's VCF genotypes) lets
    messages and warfarin read single positions."""
    defs = definitions if definitions is not None else load_definitions()
    chosen: dict[str, GeneCall] = {c.gene: c for c in calls}
    for oc in outside_calls:
        if oc.gene in chosen and chosen[oc.gene].source == "vcf" and chosen[oc.gene].called:
            oc = replace(
                oc,
                warnings=(
                    *oc.warnings,
                    f"the outside call replaces the VCF call {', '.join(_labels(chosen[oc.gene]))}",
                ),
            )
        chosen[oc.gene] = oc
    pheno = phenotypes(chosen.values(), data_root)
    g_messages = {g: gene_messages(c, defs.get(g), genotypes, data_root) for g, c in chosen.items()}
    ids = {g: [m.id for m in ms] for g, ms in g_messages.items()}
    table = guidelines(data_root)
    drugs = tuple(
        DrugResult(
            drug=d,
            rxnorm=table[d].rxnorm,
            guideline=table[d].name,
            guideline_url=table[d].url,
            version=table[d].version,
            genes=table[d].genes,
            recommendations=tuple(recs),
            messages=drug_messages(d, ids, data_root),
        )
        for d, recs in sorted(recommendations(pheno, data_root).items())
    )
    warfarin = (
        _warfarin(chosen, pheno, genotypes, defs)
        if any(pheno[g].called for g in WARFARIN_GENES if g in pheno)
        else None
    )
    return PgxResult(
        sample=sample,
        source=source,
        calls=chosen,
        phenotypes=pheno,
        drugs=drugs,
        not_tested=_not_tested(chosen, defs),
        gene_messages=g_messages,
        warfarin=warfarin,
        versions=_versions(pheno, defs, data_root),
    )


def _labels(call: GeneCall) -> list[str]:
    return [d.label for d in call.diplotypes] or list(call.variants)


def _not_tested(calls: Mapping[str, GeneCall], defs: Mapping[str, GeneDefinition]) -> tuple[NotTested, ...]:
    out = []
    for gene in sorted({*DEFAULT_GENES, *OUTSIDE_ONLY, *calls}):
        call = calls.get(gene)
        if call is not None and call.source == "outside":
            continue
        if gene in OUTSIDE_ONLY and (call is None or not call.called):
            how = "copy number and structural variants decide it" if gene == "CYP2D6" else "it is not typed from a VCF"
            out.append(
                NotTested(
                    gene, "outside call needed", f"{gene} needs an outside call ({how}); give one with --outside-calls"
                )
            )
            continue
        if call is None:
            out.append(NotTested(gene, "not called", "not analysed"))
            continue
        definition = defs.get(gene)
        n_positions = len(definition.positions) if definition else 0
        missing = tuple(call.missing_positions)
        if not call.called:
            if definition is not None and len(missing) >= n_positions:
                out.append(
                    NotTested(
                        gene,
                        "not in the VCF",
                        f"none of {gene}'s {n_positions} positions is in the "
                        "VCF (a missing position is a no-call, never reference)",
                        missing,
                    )
                )
            else:
                why = "; ".join(call.warnings) or "no diplotype matches the genotypes"
                out.append(NotTested(gene, "not called", why, missing))
        elif missing:
            out.append(
                NotTested(
                    gene,
                    "incomplete",
                    f"{len(missing)} of {n_positions} positions missing: alleles defined there cannot be ruled out",
                    missing,
                )
            )
    return tuple(out)


def _copies(genotypes: VcfSample | None, locus_defs: Iterable[Any], rsid: str) -> int | None:
    """Copies of the ALT allele at an rsid, read straight from the VCF; None when the position is missing."""
    if genotypes is None:
        return None
    for p in locus_defs:
        if p.rsid == rsid:
            gt = genotypes.genotypes.get((p.chromosome, p.position))
            return None if gt is None else sum(a in p.alts for a in gt.alleles)
    return None


def _warfarin(
    calls: Mapping[str, GeneCall],
    pheno: Mapping[str, GenePhenotype],
    genotypes: VcfSample | None,
    defs: Mapping[str, GeneDefinition],
) -> WarfarinGenotype:
    notes = [
        "CPIC's warfarin guideline is a dosing algorithm, not a lookup: the dose needs age, height, weight, "
        "ancestry, amiodarone and enzyme-inducer use (medml.pgx.warfarin.warfarin_dose computes the IWPC dose "
        "and CPIC 2017's adjustments from them)."
    ]
    c9 = calls.get("CYP2C9")
    cyp2c9 = None
    if c9 is not None and c9.called:
        labels = [d.label for d in c9.lookup_diplotypes]
        cyp2c9 = labels[0] if len(labels) == 1 else None
        if len(labels) > 1:
            notes.append(f"CYP2C9 is ambiguous ({' or '.join(labels)}): the algorithm's CYP2C9 term is unknown")
    vk = pheno.get("VKORC1")
    vkorc1 = None
    if vk is not None and vk.called and len(set(vk.phenotypes)) == 1:
        vkorc1 = vk.phenotypes[0].removeprefix("-1639 ").strip() or None
    c9_def, f2_def = defs.get("CYP2C9"), defs.get("CYP4F2")
    star3 = _copies(genotypes, f2_def.positions if f2_def else (), "rs2108622")
    f2 = calls.get("CYP4F2")
    if star3 is None and f2 is not None and f2.called and len(f2.diplotypes) == 1:
        star3 = f2.diplotypes[0].haplotypes.count("*3")
    rs127 = _copies(genotypes, c9_def.exemption.extra_positions if c9_def else (), "rs12777823")
    african = False
    if c9 is not None and c9.source == "vcf" and c9.called and c9_def is not None:
        names = {"*5", "*6", "*8", "*11"}
        needed = {
            p.position
            for a in c9_def.alleles
            if a.name in names
            for p, cell in zip(c9_def.positions, a.alleles, strict=True)
            if cell is not None
        }
        african = not (needed & set(c9.missing_positions))
    if cyp2c9 in ("*2/*3", "*3/*3"):
        notes.append("CYP2C9 poor metabolizer: consider an alternative agent (CPIC 2017, Figure 2 footnote e)")
    return WarfarinGenotype(cyp2c9, vkorc1, star3, rs127, african, tuple(notes))


@cache
def _definition_version(path: Path) -> str | None:
    try:
        return str(json.loads(path.read_text(encoding="utf-8")).get("version"))
    except (OSError, ValueError):
        return None


def _versions(
    pheno: Mapping[str, GenePhenotype], defs: Mapping[str, GeneDefinition], data_root: Path | None
) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        medml_version = version("medml")
    except PackageNotFoundError:
        medml_version = "unknown"
    root = pgx_data_root(data_root)
    alleles = root / "pharmcat-3.1.1" / "definition" / "alleles"
    definition_versions = sorted({v for g in defs if (v := _definition_version(alleles / f"{g}_translation.json"))})
    return {
        "schema": SCHEMA,
        "medml": medml_version,
        "pharmcat_data": "3.1.1",
        "allele_definitions": ", ".join(definition_versions),
        "cpic_guidelines": sorted({g.version for g in guidelines(data_root).values()}),
        "cpic_sources": [f"pgx/cpic/{ANNOTATIONS}", f"pgx/cpic/{API}"],
        "phenotype_tables": {g: p.table_version for g, p in sorted(pheno.items()) if p.table_version},
    }
