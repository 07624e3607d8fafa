"""Gene calls -> phenotypes, the way PharmCAT's Phenotyper does it, from ``pharmcat-3.1.1/phenotype/<GENE>.json``.

Each allele gets a function (and, for CYP2C9, CYP2D6 and DPYD, an activity value); the diplotype maps to a phenotype
through the table's ``diplotypekey`` (an allele -> count map, so ``*2/*1`` and ``*1/*2`` are the same). The *lookup
key* is what CPIC recommendations are matched on: the activity score for activity genes, the phenotype otherwise,
and the allele statuses (``*57:01 positive``) for HLA. Outside calls override the VCF (:func:`phenotypes`) and may
give only a phenotype, an activity score or an allele status.

Rules reproduced from PharmCAT 3.1.1 (checked against its test suite, see ``checks_interpretation``):

- a gene that is not called looks recommendations up as ``No Result``;
- a diplotype with no row in the table (an allele it does not know, such as an outside call's ``*XXX``, or a
  pair it does not list) is ``Indeterminate`` for the activity-score genes, looked up by the scores of the
  table's ``Indeterminate`` rows (``n/a``), and ``n/a`` for the others (PharmCAT's
  Diplotype.lookupPhenotypesByDiplotype; Cyp2d6Test.testCyp2d6AlleleWithNoFunction, PipelineTest TPMT
  ``*1/g.18143724C>T``); every allele the table lacks has the function ``Unassigned function``;
- lowest-function genes (DPYD, RYR1) are phenotyped from ``GeneCall.lookup``, the matcher's recommendation diplotype;
- HLA-A/B have no table: a diplotype is turned into the positive/negative status of each allele CPIC keys on.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from medml.config import get_settings
from medml.errors import DataError, NotFoundError
from medml.pgx.calls import CallSource, Diplotype, GeneCall
from medml.pgx.naming import star_allele

__all__ = [
    "ACTIVITY_GENES",
    "HLA_ALLELES",
    "INDETERMINATE",
    "NA",
    "NO_RESULT",
    "DiplotypePhenotype",
    "GenePhenotype",
    "PhenotypeTable",
    "load_phenotype_table",
    "normalize_phenotype",
    "pgx_data_root",
    "phenotype",
    "phenotype_result",
    "phenotypes",
    "slco1b1_rs4149056_diplotype",
]

NO_RESULT = "No Result"
NA = "n/a"
INDETERMINATE = "Indeterminate"
#: genes whose CPIC recommendations are keyed on the activity score
ACTIVITY_GENES = frozenset({"CYP2C9", "CYP2D6", "DPYD"})
#: the HLA alleles CPIC's lookup keys name (abacavir, allopurinol, carbamazepine, oxcarbazepine, phenytoin);
#: tests/pgx/test_cpic.py checks this against the guideline files
HLA_ALLELES: Mapping[str, tuple[str, ...]] = {"HLA-A": ("*31:01",), "HLA-B": ("*15:02", "*57:01", "*58:01")}

#: PharmCAT 3.1.1 ships these three tables above the snapshot's size limit; the data README names the substitutes
_OLDER_TABLES = {
    "CYP2D6": "phenotype-older/c8100ec8/cpic/CYP2D6.json",
    "G6PD": "phenotype-older/76bfe08c/cpic/G6PD.json",
    "RYR1": "phenotype-older/5cb67175/cpic/RYR1.json",
}
_ABBREVIATIONS = {
    "pm": "Poor Metabolizer",
    "im": "Intermediate Metabolizer",
    "nm": "Normal Metabolizer",
    "em": "Normal Metabolizer",
    "um": "Ultrarapid Metabolizer",
}


def pgx_data_root(data_root: Path | None = None) -> Path:
    """The ``pgx`` folder of the shared data (``MEDML_DATA``), or ``data_root`` itself when it is one."""
    root = data_root if data_root is not None else get_settings().data_root / "pgx"
    if not (root / "pharmcat-3.1.1").is_dir():
        raise NotFoundError(
            f"no PharmCAT reference data under {root}",
            "set MEDML_DATA to the shared data folder that holds pgx/pharmcat-3.1.1",
        )
    return root


@dataclass(frozen=True)
class TableRow:
    """One row of a phenotype table: the phenotype (PharmCAT's ``generesult``), its score and lookup key."""

    phenotype: str
    activity_score: str | None
    lookup_key: str


@dataclass(frozen=True)
class PhenotypeTable:
    """A gene's allele functions, activity values and diplotype -> phenotype rows, with the data version."""

    gene: str
    version: str
    path: str
    functions: Mapping[str, str]
    activity_values: Mapping[str, str]
    rows: Mapping[frozenset[tuple[str, int]], TableRow] = field(repr=False)

    def row(self, haplotypes: Iterable[str]) -> TableRow | None:
        """The row for these haplotypes in any order (one for haploid calls), or None."""
        return self.rows.get(frozenset(Counter(haplotypes).items()))

    def scores_for_phenotype(self, phenotype: str) -> tuple[str, ...]:
        """The activity scores of the rows giving this phenotype, sorted, or ``n/a`` when none has one (PharmCAT's
        Diplotype.lookupActivityScoresByPhenotype)."""
        found = sorted({r.activity_score for r in self.rows.values() if r.phenotype == phenotype and r.activity_score})
        return tuple(found) or (NA,)

    def phenotype_for_score(self, score: str) -> str | None:
        """The phenotype the table gives to an activity score (an outside call may give only the score)."""
        for r in self.rows.values():
            if r.lookup_key == score:
                return r.phenotype
        return None


@cache
def _load_table(path: Path) -> PhenotypeTable:
    try:
        data = json.loads(path.read_text())
        rows = {
            frozenset(Counter(d["diplotypekey"]).items()): TableRow(
                d["generesult"], d.get("activityScore"), d["lookupkey"]
            )
            for d in data["diplotypes"]
        }
        # activity genes keep activity values in "haplotypes"; the function is in namedAlleles (absent in old G6PD)
        named = data.get("namedAlleles") or []
        functions = {n["name"]: n["functionValue"] for n in named} if named else dict(data["haplotypes"])
        return PhenotypeTable(
            gene=data["gene"],
            version=str(data["version"]),
            path=str(path),
            functions=functions,
            activity_values=dict(data.get("activityValues") or {}),
            rows=rows,
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(
            f"cannot read the phenotype table {path}: {e}",
            "restore it from PharmCAT 3.1.1 (see pgx/pharmcat-3.1.1/PROVENANCE.md)",
        ) from e


def load_phenotype_table(gene: str, data_root: Path | None = None) -> PhenotypeTable | None:
    """The gene's phenotype table, or None for genes PharmCAT has none for (CYP4F2, HLA-A/B)."""
    base = pgx_data_root(data_root) / "pharmcat-3.1.1"
    path = base / _OLDER_TABLES.get(gene, f"phenotype/{gene.replace('-', '_')}.json")
    return _load_table(path) if path.is_file() else None


def normalize_phenotype(value: str | None) -> str | None:
    """Common spellings to CPIC terms: PM/IM/NM/EM/UM, metaboliser, extensive -> normal, likely/possible kept."""
    if value is None or not value.strip():
        return None
    text = re.sub(r"\s\s+", " ", value).strip()
    text = re.sub(r"(?i)metaboli[zs]ers?", "Metabolizer", text)
    low = text.lower()
    if low in _ABBREVIATIONS:
        return _ABBREVIATIONS[low]
    if "indeterminate" in low:
        return INDETERMINATE
    low = low.replace("extensive", "normal")
    for name in dict.fromkeys(_ABBREVIATIONS.values()):
        if name.lower() in low:
            for qualifier in ("Likely", "Possible"):
                if low.startswith(qualifier.lower()):
                    return f"{qualifier} {name}"
            return name
    return text


@dataclass(frozen=True)
class DiplotypePhenotype:
    """One diplotype's interpretation; ``diplotype`` is None for outside calls that give no diplotype."""

    diplotype: Diplotype | None
    functions: tuple[str, ...]
    activity_values: tuple[str, ...]
    phenotype: str | None
    activity_score: str | None
    #: the values CPIC recommendation rows are matched against (several for HLA: one per allele status)
    lookup_keys: tuple[str, ...]


@dataclass(frozen=True)
class GenePhenotype:
    """A gene's phenotype for one sample: one entry per diplotype used (ties are all kept), and where it came from."""

    gene: str
    source: CallSource
    results: tuple[DiplotypePhenotype, ...]
    called: bool
    table_version: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def phenotypes(self) -> tuple[str, ...]:
        return tuple(r.phenotype for r in self.results if r.phenotype is not None)

    @property
    def activity_scores(self) -> tuple[str, ...]:
        return tuple(r.activity_score for r in self.results if r.activity_score is not None)


def slco1b1_rs4149056_diplotype(genotype: str) -> Diplotype:
    """PharmCAT's SLCO1B1 fallback when no star call is possible: rs4149056 (c.521T>C) alone, C read as ``*5``.

    ``genotype`` is the two bases, e.g. ``"T/C"``; the matcher puts the result in ``GeneCall.lookup``.
    """
    bases = [b.strip().upper() for b in re.split(r"[/|]", genotype)]
    if len(bases) != 2 or not set(bases) <= {"T", "C"}:
        raise DataError(f"rs4149056 genotype {genotype!r} is not two of T/C", "pass it as e.g. 'T/C'")
    return Diplotype(tuple(sorted("*5" if b == "C" else "*1" for b in bases)))


def _hla_statuses(gene: str, haplotypes: Iterable[str]) -> tuple[str, ...]:
    present = set(haplotypes)
    return tuple(f"{a} {'positive' if a in present else 'negative'}" for a in HLA_ALLELES.get(gene, ()))


def _in_table(table: PhenotypeTable, haplotype: str) -> str:
    """A sub-allele the table does not list (SLCO1B1 ``*45.001``) takes its star allele's function, as in PharmCAT."""
    return haplotype if haplotype in table.functions else star_allele(haplotype)


def _interpret_diplotype(table: PhenotypeTable | None, gene: str, dip: Diplotype) -> DiplotypePhenotype:
    if gene in HLA_ALLELES:
        statuses = _hla_statuses(gene, dip.haplotypes)
        return DiplotypePhenotype(dip, (), (), None, None, statuses)
    if table is None:
        return DiplotypePhenotype(dip, (), (), None, None, ())
    haplotypes = tuple(_in_table(table, h) for h in dip.haplotypes)
    functions = tuple(table.functions.get(h, "Unassigned function") for h in haplotypes)
    values = tuple(table.activity_values.get(h, NA) for h in haplotypes) if table.activity_values else ()
    row = table.row(haplotypes)
    if row is not None:
        return DiplotypePhenotype(dip, functions, values, row.phenotype, row.activity_score, (row.lookup_key,))
    if not table.rows:  # IFNL3: single-position function only, no diplotype rows in 3.1.1
        return DiplotypePhenotype(dip, functions, values, None, None, ())
    # no row (an allele the table lacks, an outside call's *XXX, or an unlisted pair): PharmCAT's
    # Diplotype.lookupPhenotypesByDiplotype gives activity-score genes "Indeterminate" and the rest "n/a"; an
    # activity gene's score is then n/a and it is looked up by the scores of the table's rows with that phenotype
    if gene in ACTIVITY_GENES:
        return DiplotypePhenotype(dip, functions, values, INDETERMINATE, NA, table.scores_for_phenotype(INDETERMINATE))
    return DiplotypePhenotype(dip, functions, values, NA, None, (NA,))


def _outside_overrides(call: GeneCall, table: PhenotypeTable | None, r: DiplotypePhenotype) -> DiplotypePhenotype:
    """An outside phenotype or activity score replaces the one the diplotype would give."""
    pheno = normalize_phenotype(call.phenotype) or r.phenotype
    score = call.activity_score or r.activity_score
    if call.activity_score and call.phenotype is None and table is not None:
        pheno = table.phenotype_for_score(call.activity_score) or pheno
    key = score if call.gene in ACTIVITY_GENES and score else pheno
    keys = (key,) if key else r.lookup_keys
    return DiplotypePhenotype(r.diplotype, r.functions, r.activity_values, pheno, score, keys)


def phenotype(call: GeneCall, data_root: Path | None = None) -> GenePhenotype:
    """Interpret one gene call: function per allele, phenotype, activity score and CPIC lookup key per diplotype."""
    table = load_phenotype_table(call.gene, data_root) if call.gene not in HLA_ALLELES else None
    version = table.version if table else None
    if not (call.called or call.lookup):  # a lookup alone: the matcher's fallback (SLCO1B1 rs4149056)
        none = DiplotypePhenotype(None, (), (), NO_RESULT, None, (NO_RESULT,))
        return GenePhenotype(call.gene, call.source, (none,), False, version, call.warnings)
    statuses = call.allele_status or ((call.phenotype,) if call.gene in HLA_ALLELES and call.phenotype else ())
    if statuses and not call.diplotypes:
        status = DiplotypePhenotype(None, (), (), None, None, tuple(statuses))
        return GenePhenotype(call.gene, call.source, (status,), True, version, call.warnings)
    dips = call.lookup_diplotypes
    results = [_interpret_diplotype(table, call.gene, d) for d in dips]
    if not results:  # an outside call with a phenotype and/or activity score only
        results = [DiplotypePhenotype(None, (), (), None, None, ())]
    if call.source == "outside" and (call.phenotype or call.activity_score):
        results = [_outside_overrides(call, table, r) for r in results]
    return GenePhenotype(call.gene, call.source, tuple(results), True, version, call.warnings)


def phenotypes(calls: Iterable[GeneCall], data_root: Path | None = None) -> dict[str, GenePhenotype]:
    """Phenotype every gene; where a gene has both, the outside call wins over the VCF (as in PharmCAT)."""
    chosen: dict[str, GeneCall] = {}
    for c in calls:
        if c.gene not in chosen or (c.source == "outside" and chosen[c.gene].source != "outside"):
            chosen[c.gene] = c
    return {g: phenotype(c, data_root) for g, c in chosen.items()}


def phenotype_result(
    gene: str,
    phenotype_: str | None = None,
    activity_score: str | None = None,
    allele_status: Iterable[str] = (),
    diplotype: str | None = None,
    data_root: Path | None = None,
) -> GenePhenotype:
    """A result as a lab or the EHR reports it (``CYP2C19``, ``PM``; ``CYP2D6`` score ``0.0``; ``*57:01 positive``)."""
    dips = (Diplotype(tuple(diplotype.split("/"))),) if diplotype else ()
    call = GeneCall(
        gene=gene,
        source="outside",
        diplotypes=dips,
        phenotype=phenotype_,
        activity_score=activity_score,
        allele_status=tuple(allele_status),
    )
    return phenotype(call, data_root)
