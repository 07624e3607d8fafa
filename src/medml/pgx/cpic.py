"""CPIC recommendations for a patient's gene phenotypes.

Matching uses the CPIC guideline annotations PharmCAT 2.10.0 shipped (``cpic/pharmcat_guidelines_2024-03-25``,
data version ``2024-03-25-16-13``): each recommendation row has a ``lookupKey`` (gene -> phenotype, activity score,
single-position function or HLA allele status), a population, a classification, implications and text. A row
matches when, for every gene it names, the value is among that gene's lookup keys (a gene without a result is
``No Result``); with tied diplotypes every combination is tried. Drugs CPIC covers that the 2024-03 files lack
(mostly the G6PD list) fall back to the CPIC API rows of v1.30.0, which also give RxNorm ids and drug names.
Every :class:`Recommendation` names the data version it came from.
"""

from __future__ import annotations

import csv
import html
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from medml.errors import DataError, NotFoundError
from medml.pgx.phenotype import NO_RESULT, GenePhenotype, pgx_data_root

__all__ = ["Guideline", "Recommendation", "find_guideline", "guidelines", "recommendations", "recommendations_for"]

ANNOTATIONS = "pharmcat_guidelines_2024-03-25"
API = "cpic_api_format_v1.30.0_2023-08-08"


@dataclass(frozen=True)
class Row:
    """One recommendation row of a guideline, before it is matched to a patient."""

    id: str
    drugs: tuple[str, ...]
    lookup_key: tuple[tuple[str, str], ...]
    population: str | None
    classification: str | None
    implications: tuple[str, ...]
    text: str
    dosing_information: bool
    alternate_drug: bool
    other_guidance: bool


@dataclass(frozen=True)
class Guideline:
    """A CPIC guideline as it applies to one drug: its genes, rows, source and version."""

    drug: str
    rxnorm: str | None
    name: str
    url: str | None
    genes: tuple[str, ...]
    rows: tuple[Row, ...]
    #: e.g. ``CPIC guideline annotation 2024-03-25-16-13`` or ``CPIC API v1.30.0``
    version: str
    notes: str | None = None


@dataclass(frozen=True)
class Recommendation:
    """A guideline row that matches the patient, with the gene results it was matched on."""

    drug: str
    rxnorm: str | None
    guideline: str
    guideline_url: str | None
    version: str
    id: str
    population: str | None
    classification: str | None
    lookup_key: tuple[tuple[str, str], ...]
    #: gene -> the patient's phenotype (or allele status) used for this match
    phenotypes: tuple[tuple[str, str], ...]
    implications: tuple[str, ...]
    text: str
    dosing_information: bool
    alternate_drug: bool
    other_guidance: bool


def _text(fragment: str) -> str:
    """Plain text from the annotation HTML, headings on their own line."""
    fragment = re.sub(r"</?(p|h\d|li|ul|ol|br)[^>]*>", "\n", fragment)
    lines = (" ".join(html.unescape(re.sub(r"<[^>]+>", "", line)).split()) for line in fragment.splitlines())
    return "\n".join(line for line in lines if line)


def _annotation_rows(recs: list[dict]) -> tuple[Row, ...]:
    rows = []
    for r in recs:
        cls = (r.get("classification") or {}).get("term")
        drugs = tuple(c["name"] for c in r.get("relatedChemicals") or ())
        rows.append(
            Row(
                id=str(r["id"]),
                drugs=drugs,
                lookup_key=tuple(r["lookupKey"].items()),
                population=r.get("population"),
                classification=cls,
                implications=tuple(r.get("implications") or ()),
                text=_text((r.get("text") or {}).get("html") or ""),
                dosing_information=bool(r.get("dosingInformation")),
                alternate_drug=bool(r.get("alternateDrugAvailable")),
                other_guidance=bool(r.get("otherPrescribingGuidance")),
            )
        )
    return tuple(rows)


def _api_rows(drug: str, recs: list[dict]) -> tuple[Row, ...]:
    """CPIC API rows; they carry no flags, so a text that is not 'no change' is taken as dosing information."""
    rows = []
    for i, r in enumerate(recs):
        text = r.get("drugrecommendation") or ""
        implications = tuple(f"{g}: {v}" for g, v in (r.get("implications") or {}).items())
        routine = bool(re.search(r"(?i)no reason to avoid|standard dos|recommended starting dose|no action", text))
        rows.append(
            Row(
                id=f"{drug}-v1.30.0-{i}",
                drugs=(drug,),
                lookup_key=tuple((r.get("lookupkey") or {}).items()),
                population=r.get("population"),
                classification=r.get("classification"),
                implications=implications,
                text=text,
                dosing_information=not routine,
                alternate_drug=False,
                other_guidance=False,
            )
        )
    return tuple(rows)


@cache
def _load(root: Path) -> dict[str, Guideline]:
    cpic = root / "cpic"
    try:
        with (cpic / "drugs_cpic_v1.30.0.tsv").open() as f:
            rxnorm = {r["drugname"]: r["drugid"] for r in csv.DictReader(f, delimiter="\t")}
        out: dict[str, Guideline] = {}
        for path in sorted((cpic / ANNOTATIONS / "cpic").glob("*.json")):
            data = json.loads(path.read_text())
            g = data["guideline"]
            rows = _annotation_rows(data["recommendations"])
            genes = tuple(x["symbol"] for x in g["relatedGenes"])
            for chem in g["relatedChemicals"]:
                drug = chem["name"]
                mine = tuple(r for r in rows if drug in r.drugs)
                out[drug] = Guideline(
                    drug,
                    rxnorm.get(drug),
                    g["name"].removeprefix("Annotation of "),
                    g.get("url"),
                    genes,
                    mine,
                    f"CPIC guideline annotation {data['version']}",
                )
        for path in sorted((cpic / API).glob("*.json")):
            data = json.loads(path.read_text())
            drug = data["drugname"]
            if drug not in out:
                rows = _api_rows(drug, data.get("recommendations") or [])
                out[drug] = Guideline(
                    drug,
                    data.get("drugid"),
                    data.get("guidelinename") or drug,
                    data.get("url"),
                    tuple(data.get("genes") or ()),
                    rows,
                    f"CPIC API {data.get('cpicVersion', 'v1.30.0')}",
                    data.get("notesonusage"),
                )
        return out
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(
            f"cannot read the CPIC recommendation data under {cpic}: {e}",
            "restore pgx/cpic from the shared data (see its PROVENANCE.md)",
        ) from e


def guidelines(data_root: Path | None = None) -> dict[str, Guideline]:
    """Every drug with a CPIC guideline, by lower-case drug name."""
    return _load(pgx_data_root(data_root))


def find_guideline(drug: str, data_root: Path | None = None) -> Guideline:
    """A drug's guideline by name (any case) or RxNorm code (``RxNorm:32968`` or ``32968``)."""
    table = guidelines(data_root)
    query = drug.strip().lower()
    code = query.removeprefix("rxnorm:")
    for g in table.values():
        if g.drug.lower() == query or (g.rxnorm and g.rxnorm.lower().removeprefix("rxnorm:") == code):
            return g
    raise NotFoundError(
        f"no CPIC guideline for drug {drug!r}",
        "give a drug name or RxNorm code; medml.pgx.cpic.guidelines() lists the "
        f"{len(table)} drugs CPIC covers (e.g. clopidogrel, RxNorm:32968)",
    )


def _matches(row: Row, keys: Mapping[str, tuple[str, ...]]) -> bool:
    return all(v.lower() in keys.get(g, (NO_RESULT.lower(),)) for g, v in row.lookup_key)


def _match(guideline: Guideline, phenotypes: Mapping[str, GenePhenotype]) -> list[Recommendation]:
    per_gene = []
    for gene in guideline.genes:
        p = phenotypes.get(gene)
        per_gene.append([(gene, r) for r in p.results] if p is not None else [(gene, None)])
    found: dict[str, Recommendation] = {}
    for combo in itertools.product(*per_gene):
        keys = {g: tuple(k.lower() for k in r.lookup_keys) if r else (NO_RESULT.lower(),) for g, r in combo}
        used = tuple((g, (r.phenotype or ", ".join(r.lookup_keys)) if r else NO_RESULT) for g, r in combo)
        for row in guideline.rows:
            if row.lookup_key and row.id not in found and _matches(row, keys):
                found[row.id] = Recommendation(
                    drug=guideline.drug,
                    rxnorm=guideline.rxnorm,
                    guideline=guideline.name,
                    guideline_url=guideline.url,
                    version=guideline.version,
                    id=row.id,
                    population=row.population,
                    classification=row.classification,
                    lookup_key=row.lookup_key,
                    phenotypes=used,
                    implications=row.implications,
                    text=row.text,
                    dosing_information=row.dosing_information,
                    alternate_drug=row.alternate_drug,
                    other_guidance=row.other_guidance,
                )
    return list(found.values())


def recommendations_for(
    drug: str, phenotypes: Mapping[str, GenePhenotype], data_root: Path | None = None
) -> list[Recommendation]:
    """The CPIC recommendations for one drug (name or RxNorm code); one per matching population."""
    return _match(find_guideline(drug, data_root), phenotypes)


def recommendations(
    phenotypes: Mapping[str, GenePhenotype], data_root: Path | None = None
) -> dict[str, list[Recommendation]]:
    """Every drug whose guideline involves one of the patient's called genes -> its matching recommendations."""
    called = {g for g, p in phenotypes.items() if p.called}
    return {d: _match(g, phenotypes) for d, g in guidelines(data_root).items() if called & set(g.genes)}
