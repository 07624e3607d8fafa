"""PharmCAT's allele definitions: positions, named alleles and per-gene exemptions, loaded once.

The files are PharmCAT 3.1.1's ``definition/alleles/<GENE>_translation.json`` and ``exemptions.json``
(``pgx/pharmcat-3.1.1`` of the shared data, ``MEDML_DATA``; MPL-2.0 code, CPIC/ClinPGx data). Alleles are VCF alleles
(left-aligned, parsimonious, with an anchor base for indels); ``None`` means "same as reference".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from medml.config import get_settings
from medml.errors import DataError, InputFileError
from medml.pgx.naming import name_key


def pharmcat_dir() -> Path:
    """PharmCAT 3.1.1's reference data in the shared data folder (read when asked, so MEDML_DATA can move it)."""
    return get_settings().data_root / "pgx" / "pharmcat-3.1.1"


def definition_dir() -> Path:
    return pharmcat_dir() / "definition" / "alleles"


def positions_vcf() -> Path:
    return pharmcat_dir() / "pharmcat_positions.vcf"


#: genes called from VCF by default (CYP2D6 needs an outside call unless research mode asks for it)
DEFAULT_GENES = (
    "ABCG2",
    "CACNA1S",
    "CFTR",
    "CYP2B6",
    "CYP2C19",
    "CYP2C9",
    "CYP3A4",
    "CYP3A5",
    "CYP4F2",
    "DPYD",
    "G6PD",
    "IFNL3",
    "NAT2",
    "NUDT15",
    "RYR1",
    "SLCO1B1",
    "TPMT",
    "UGT1A1",
    "VKORC1",
)
#: an allele seen at a defining position but in no definition is read as reference for these genes (with a warning)
TREAT_UNDOCUMENTED_AS_REFERENCE = frozenset({"CACNA1S", "DPYD", "G6PD", "NUDT15", "RYR1", "TPMT"})


@dataclass(frozen=True)
class VariantLocus:
    """One allele-defining position, in VCF terms (``ref``/``alts``) and CPIC terms."""

    chromosome: str
    position: int
    rsid: str | None
    ref: str
    alts: tuple[str, ...]
    hgvs: str
    cpic_to_vcf: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def vcf_alleles(self) -> frozenset[str]:
        return frozenset((self.ref, *self.alts))


@dataclass(frozen=True)
class NamedAllele:
    """A named allele: one VCF allele (or IUPAC wobble code) per definition position, ``None`` = reference."""

    name: str
    id: str
    alleles: tuple[str | None, ...]
    reference: bool = False

    @property
    def score(self) -> int:
        return sum(a is not None for a in self.alleles)


@dataclass(frozen=True)
class Exemption:
    """PharmCAT's per-gene exceptions to the default matching (exemptions.json)."""

    required_positions: frozenset[int] = frozenset()
    ignored_positions: frozenset[int] = frozenset()
    extra_positions: tuple[VariantLocus, ...] = ()
    ignored_alleles: frozenset[str] = frozenset()  # lower-cased
    #: (list, pick) pairs, in PharmCAT's order (by the pick's haplotypes, then the list): an unphased call whose
    #: candidates include every diplotype of ``list`` is reduced to ``pick``, the most frequent one (NAT2)
    unphased_priorities: tuple[tuple[frozenset[str], str], ...] = ()
    all_hits: bool | None = None
    #: unphased calls keep every candidate, not only the top score, for the priorities to choose from (PharmCAT's
    #: unphased-priority mode; on wherever PharmCAT's own exemptions list priorities, see :meth:`without_rules`)
    keep_all_unphased: bool = False

    def without_rules(self) -> Exemption:
        """No exemption applies, as when PharmCAT's matcher is given no exemptions file. PharmCAT still decides the
        unphased-priority mode from its default exemptions, so unphased NAT2 calls keep every candidate."""
        return Exemption(keep_all_unphased=self.keep_all_unphased)


@dataclass(frozen=True)
class GeneDefinition:
    """One gene's definition table: positions in genome order and named alleles, reference first."""

    gene: str
    chromosome: str
    positions: tuple[VariantLocus, ...]
    alleles: tuple[NamedAllele, ...]
    exemption: Exemption = Exemption()

    @property
    def reference(self) -> NamedAllele:
        return self.alleles[0]


def _locus(raw: dict[str, Any]) -> VariantLocus:
    return VariantLocus(
        chromosome=raw["chromosome"],
        position=int(raw["position"]),
        rsid=raw.get("rsid"),
        ref=raw["ref"],
        alts=tuple(raw.get("alts") or ()),
        hgvs=raw.get("chromosomeHgvsName") or "",
        cpic_to_vcf=dict(raw.get("cpicToVcfAlleleMap") or {}),
    )


def parse_definition(raw: dict[str, Any], exemption: Exemption | None = None) -> GeneDefinition:
    """Build a :class:`GeneDefinition` from a parsed ``*_translation.json``; the first allele is the reference."""
    positions = tuple(_locus(v) for v in raw["variants"])
    order = sorted(range(len(positions)), key=lambda i: positions[i].position)
    alleles = []
    for i, na in enumerate(raw["namedAlleles"]):
        cells = na["alleles"]
        if len(cells) != len(positions):
            raise DataError(
                f"{raw.get('gene')} allele {na['name']} has {len(cells)} alleles for {len(positions)} positions",
                "use an unmodified PharmCAT definition file",
            )
        alleles.append(
            NamedAllele(
                name=na["name"],
                id=na.get("id") or na["name"],
                alleles=tuple(cells[j] for j in order),
                reference=bool(na.get("reference", i == 0)),
            )
        )
    if not alleles or not alleles[0].reference:
        alleles = sorted(alleles, key=lambda a: not a.reference)
    return GeneDefinition(
        gene=raw["gene"],
        chromosome=raw["chromosome"],
        positions=tuple(positions[j] for j in order),
        alleles=tuple(alleles),
        exemption=exemption or Exemption(),
    )


def parse_exemption(raw: dict[str, Any]) -> Exemption:
    """One gene's entry of exemptions.json."""

    def _positions(items: list[Any]) -> frozenset[int]:
        return frozenset(int(p["position"]) if isinstance(p, dict) else int(p) for p in items or ())

    priorities = tuple(
        sorted(
            ((frozenset(p["list"]), p["pick"]) for p in raw.get("unphasedDiplotypePriorities") or ()),
            key=_priority_order,
        )
    )
    for options, pick in priorities:
        if pick not in options:
            raise DataError(
                f"{raw.get('gene')}: unphased priority {sorted(options)} picks {pick}, not in its list",
                "restore exemptions.json from the PharmCAT 3.1.1 release",
            )
    return Exemption(
        required_positions=_positions(raw.get("requiredPositions", [])),
        ignored_positions=_positions(raw.get("ignoredPositions", [])),
        extra_positions=tuple(_locus(p) for p in raw.get("extraPositions") or ()),
        ignored_alleles=frozenset(a.lower() for a in raw.get("ignoredAlleles") or ()),
        unphased_priorities=priorities,
        all_hits=raw.get("allHits"),
        keep_all_unphased=bool(priorities),
    )


def _priority_order(priority: tuple[frozenset[str], str]) -> tuple[Any, ...]:
    """PharmCAT's order of priorities: by the pick's first then second haplotype name, then by the list."""
    options, pick = priority
    first, _, second = pick.partition("/")
    return name_key(first), name_key(second), "|".join(sorted(options))


def _read_json(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError as err:
        raise InputFileError(
            f"allele definition file {path} not found", "point MEDML_PGX_DATA at the folder holding pharmcat-3.1.1/"
        ) from err
    except json.JSONDecodeError as err:
        raise InputFileError(
            f"{path} is not valid JSON ({err.msg}, line {err.lineno})",
            "restore the file from the PharmCAT 3.1.1 release",
        ) from err


def load_exemptions(directory: Path | None = None) -> dict[str, Exemption]:
    """exemptions.json, keyed by gene."""
    return _load_exemptions(Path(directory) if directory is not None else definition_dir())


@cache
def _load_exemptions(directory: Path) -> dict[str, Exemption]:
    raw = _read_json(directory / "exemptions.json")
    items = raw.values() if isinstance(raw, dict) else raw
    return {item["gene"]: parse_exemption(item) for item in items}


@cache
def load_definition_file(path: Path, with_exemptions: bool = True) -> GeneDefinition:
    """One ``*_translation.json``; exemptions are looked up beside it when asked for and present."""
    path = Path(path)
    raw = _read_json(path)
    exemption = None
    if with_exemptions and (path.parent / "exemptions.json").exists():
        exemption = load_exemptions(path.parent).get(raw["gene"])
    return parse_definition(raw, exemption)


def load_definitions(
    genes: tuple[str, ...] | None = None,
    directory: Path | None = None,
) -> dict[str, GeneDefinition]:
    """Definitions for ``genes`` (default: :data:`DEFAULT_GENES`), each file read once per process."""
    folder = Path(directory) if directory is not None else definition_dir()
    return {g: load_definition_file(folder / f"{g}_translation.json") for g in genes or DEFAULT_GENES}


@cache
def load_activity_values(gene: str) -> dict[str, float]:
    """Allele activity values from ``phenotype/<GENE>.json`` (to pick DPYD's lowest-function variants).

    Empty when the gene has no phenotype file here (RYR1: PharmCAT's current file is not in our snapshot),
    so variants then rank by name only."""
    path = pharmcat_dir() / "phenotype" / f"{gene}.json"
    if not path.exists():
        return {}
    raw = _read_json(path)
    out: dict[str, float] = {}
    for na in raw.get("namedAlleles", []):
        try:
            out[na["name"]] = float(na.get("activityValue"))
        except (TypeError, ValueError):
            continue
    return out
