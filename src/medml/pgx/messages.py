"""PharmCAT's report messages (``reporter/messages.json``): ambiguity warnings, notes and footnotes per gene and drug.

Matching follows PharmCAT 3.1.1's MessageHelper. A gene message applies only to a gene called from the VCF, and only
when every condition it names holds: the haplotypes it names were called (``hapsCalled``), its haplotypes could not
be called because their positions are missing (``hapsMissing``), its variants are present (``variant``) or missing
(``variantsMissing``), its diplotypes were called (``dips``). An ``ambiguity`` message with diplotypes applies only to
unphased data, one with a variant only when that variant is heterozygous. A drug message applies when it names no
gene, or when its gene got the same message.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from medml.errors import DataError
from medml.pgx.calls import GeneCall
from medml.pgx.definitions import GeneDefinition, VariantLocus
from medml.pgx.phenotype import pgx_data_root
from medml.pgx.vcf import VcfSample

__all__ = [
    "OUTSIDE_CALL",
    "REFERENCE_ALLELE",
    "Message",
    "drug_messages",
    "gene_messages",
    "load_rules",
    "message_by_id",
]

#: the message PharmCAT attaches to every outside call
OUTSIDE_CALL = "pcat-outside-call"
#: PharmCAT's note on a called reference allele (not in messages.json; the text is the report's)
REFERENCE_ALLELE = "reference-allele"
#: genes whose reference allele is named for what it is (rs2231142 reference (G)), so the note is not shown
_NO_REFERENCE_NOTE = frozenset({"ABCG2", "CFTR", "IFNL3", "VKORC1"})


@dataclass(frozen=True)
class Message:
    """One message shown with a gene or a drug: PharmCAT's rule name, its type and its text (plain text)."""

    id: str
    kind: str
    text: str


@dataclass(frozen=True)
class Rule:
    """A messages.json entry: the conditions (``matches``) and the message it raises."""

    message: Message
    gene: str | None
    haps_called: tuple[str, ...]
    haps_missing: tuple[str, ...]
    variants: tuple[str, ...]
    variants_missing: tuple[str, ...]
    dips: tuple[str, ...]
    drugs: tuple[str, ...]


def _plain(fragment: str) -> str:
    """Plain text from the message's HTML (links keep their text)."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", fragment)).split())


@cache
def _load(path: Path) -> tuple[Rule, ...]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        rules = []
        for r in raw:
            m = r["matches"]
            variant = m.get("variant") or ()
            rules.append(
                Rule(
                    message=Message(r["rule_name"], r.get("exception_type") or "note", _plain(r.get("message") or "")),
                    gene=m.get("gene") or None,
                    haps_called=tuple(m.get("hapsCalled") or ()),
                    haps_missing=tuple(m.get("hapsMissing") or ()),
                    variants=(variant,) if isinstance(variant, str) else tuple(variant),
                    variants_missing=tuple(m.get("variantsMissing") or ()),
                    dips=tuple(m.get("dips") or ()),
                    drugs=tuple(m.get("drugs") or ()),
                )
            )
        return tuple(rules)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(
            f"cannot read PharmCAT's messages {path}: {e}",
            "restore it from PharmCAT 3.1.1 (see pgx/pharmcat-3.1.1/PROVENANCE.md)",
        ) from e


def load_rules(data_root: Path | None = None) -> tuple[Rule, ...]:
    """Every rule of ``pharmcat-3.1.1/reporter/messages.json``."""
    return _load(pgx_data_root(data_root) / "pharmcat-3.1.1" / "reporter" / "messages.json")


def message_by_id(rule_name: str, data_root: Path | None = None) -> Message | None:
    """A message by its rule name (``pcat-dpyd-hapB3-exonic-only``), or None."""
    return next((r.message for r in load_rules(data_root) if r.message.id == rule_name), None)


def _loci(definition: GeneDefinition) -> dict[str, VariantLocus]:
    return {p.rsid: p for p in (*definition.positions, *definition.exemption.extra_positions) if p.rsid}


def _reference_note(call: GeneCall, definition: GeneDefinition) -> Message | None:
    ref = definition.reference.name
    if call.gene in _NO_REFERENCE_NOTE or not any(ref in d.haplotypes for d in call.diplotypes):
        return None
    return Message(
        REFERENCE_ALLELE,
        "note",
        f"The {call.gene} {ref} allele assignment is characterized by the "
        "absence of variants at the positions that are included in the underlying allele definitions.",
    )


def _uncalled_haplotypes(definition: GeneDefinition, missing: set[int]) -> set[str]:
    """Named alleles whose every defining position is missing from the VCF (PharmCAT's uncalled haplotypes)."""
    out = set()
    for allele in definition.alleles[1:]:
        defined = {p.position for p, a in zip(definition.positions, allele.alleles, strict=True) if a is not None}
        if defined and defined <= missing:
            out.add(allele.name)
    return out


def _matches(rule: Rule, call: GeneCall, definition: GeneDefinition, sample: VcfSample) -> bool:
    if rule.message.kind == "non-match":  # written for a gene that is not called; PharmCAT shows none on a call
        return False
    haplotypes = {h for d in call.diplotypes for h in d.haplotypes} | set(call.variants)
    if rule.haps_called and not all(any(h.strip() in haplotypes for h in spec.split(";")) for spec in rule.haps_called):
        return False
    if rule.haps_missing and not set(rule.haps_missing) <= _uncalled_haplotypes(
        definition, set(call.missing_positions)
    ):
        return False
    loci = _loci(definition)
    genotypes = {rsid: sample.genotypes.get((p.chromosome, p.position)) for rsid, p in loci.items()}
    if any(genotypes.get(v) is None for v in rule.variants):
        return False
    if any(v not in loci or genotypes[v] is not None for v in rule.variants_missing):
        return False
    called = {tuple(sorted(d.haplotypes)) for d in call.diplotypes}
    if rule.dips and not all(tuple(sorted(d.split("/"))) in called for d in rule.dips):
        return False
    if rule.message.kind == "ambiguity":
        if rule.dips and call.phased:
            return False
        if rule.variants and not all(
            (g := genotypes[v]) is not None and len(g.alleles) == 2 and not g.homozygous for v in rule.variants
        ):
            return False
    return True


def gene_messages(
    call: GeneCall, definition: GeneDefinition | None, sample: VcfSample | None, data_root: Path | None = None
) -> tuple[Message, ...]:
    """The messages for one gene call: the matcher's own (``call.messages``), then messages.json's rules."""
    rules = load_rules(data_root)
    if call.source == "outside":
        found = message_by_id(OUTSIDE_CALL, data_root)
        return (found,) if found else ()
    out = [m for name in call.messages if (m := message_by_id(name, data_root)) is not None]
    if not call.called or definition is None or sample is None:
        return tuple(out)
    out += [
        r.message
        for r in rules
        if r.gene == call.gene and r.message.text and r.message not in out and _matches(r, call, definition, sample)
    ]
    if (note := _reference_note(call, definition)) is not None:
        out.append(note)
    return tuple(out)


def drug_messages(
    drug: str, gene_message_ids: Mapping[str, Iterable[str]], data_root: Path | None = None
) -> tuple[Message, ...]:
    """The messages for a drug: rules naming it with no gene, or whose gene got the same message."""
    out = []
    for r in load_rules(data_root):
        if (
            drug in r.drugs
            and r.message.text
            and (r.gene is None or r.message.id in set(gene_message_ids.get(r.gene, ())))
        ):
            out.append(r.message)
    return tuple(out)
