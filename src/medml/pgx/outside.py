"""PharmCAT outside-call files -> :class:`GeneCall` (``source="outside"``).

The format (PharmCAT's OutsideCallParser): one call a line, ``gene<TAB>diplotype<TAB>phenotype<TAB>activity score``;
blank lines and lines starting with ``#`` are skipped; columns after the fourth are ignored. A call needs a
diplotype, a phenotype or an activity score. Alleles may carry the gene as a prefix (``CYP2D6*1/CYP2D6*2``);
``.`` or ``./.`` is a no-call; several diplotypes may be given as ``*1/*2 or *2/*3`` or on several lines (all are
kept, as ties). Normalisation, as PharmCAT does it:

- CYP2D6 copy number: ``*1x7`` is looked up as ``*1x≥3`` where the phenotype table has an ``x≥3`` allele for that
  star (Cyp2d6CopyNumberCaller); the call keeps ``*1x7`` as reported (its display) and puts the inferred diplotype
  in ``GeneCall.lookup``; ``*2.001`` -> ``*2`` (no sub-alleles);
- HLA-A/B: ``B*57:01:01`` -> ``*57:01``; a phenotype such as ``*57:01 positive`` is an allele status;
- phenotypes: PM/IM/NM/EM/UM and metaboliser spellings (:func:`~medml.pgx.phenotype.normalize_phenotype`);
- several diplotypes keep the reporter's order (by the alleles as written, :meth:`_GeneLines.report_order`);
- the two alleles are put in PharmCAT's name order (:func:`~medml.pgx.naming.compare_names`), so ``*2/*1`` is
  ``*1/*2``, and ``*4/*1x2`` is ``*1x2/*4`` (numbers compare as numbers, run by run).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from medml.errors import InputFileError
from medml.pgx.calls import Diplotype, GeneCall
from medml.pgx.naming import name_key
from medml.pgx.phenotype import HLA_ALLELES, load_phenotype_table, normalize_phenotype

__all__ = ["parse_outside_calls", "read_outside_calls"]

_COPY_NUMBER = re.compile(r"\*(\d+)[xX](≥?)(\d+)")
_CYP2D6_SUBALLELE = re.compile(r"(\*\d+)\.\d+")
_HLA_ALLELE = re.compile(r"(\*\d+:\d+)((?::\d+)*)")
_HLA_STATUS = re.compile(r"\*\d+:\d+ (positive|negative)")
_SCORE = re.compile(r"≥?\d+(\.\d+)?")
_FIX = "write gene<TAB>diplotype<TAB>phenotype<TAB>activity score, e.g. 'CYP2D6\t*1/*4' or 'HLA-B\t\t*57:01 positive'"


@dataclass
class _GeneLines:
    diplotypes: list[Diplotype] = field(default_factory=list)
    #: the diplotype each of ``diplotypes`` is looked up as (differs for CYP2D6 copy numbers of three or more)
    lookups: list[Diplotype] = field(default_factory=list)
    phenotype: str | None = None
    activity_score: str | None = None
    allele_status: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: each diplotype's alleles in the order the file gives them (the report's order of several diplotypes)
    written: list[tuple[str, ...]] = field(default_factory=list)

    def report_order(self) -> list[int]:
        """PharmCAT's reporter Diplotype.compareTo: by the first allele as written, then the second (none first);
        ``*1x3/*1`` sorts as ``*1x3``, after ``*1x2/*17``, though it prints as ``*1/*1x3``."""
        return sorted(range(len(self.written)), key=lambda i: [name_key(a) for a in self.written[i]])


class _Parser:
    """Reads lines of one or more files into per-gene calls; errors name the file and line."""

    def __init__(self, data_root: Path | None) -> None:
        self.data_root = data_root
        self.genes: dict[str, _GeneLines] = {}
        self._gte_three: set[str] | None = None

    def error(self, where: str, what: str) -> InputFileError:
        return InputFileError(f"outside-call file {where}: {what}", _FIX)

    def cyp2d6_gte_three(self) -> set[str]:
        """Stars with an ``x≥3`` allele in the CYP2D6 table (``*1``, ``*2``, ``*4``)."""
        if self._gte_three is None:
            table = load_phenotype_table("CYP2D6", self.data_root)
            names = table.functions if table else {}
            self._gte_three = {m.group(1) for n in names if (m := _COPY_NUMBER.fullmatch(n)) and m.group(2)}
        return self._gte_three

    def allele(self, gene: str, name: str, where: str, notes: list[str]) -> str:
        name = re.sub(rf"^{re.escape(gene)}\s*", "", name.strip())
        if gene == "CYP2D6":
            if m := _CYP2D6_SUBALLELE.fullmatch(name):
                notes.append(f"sub-alleles are not supported for CYP2D6: {name} read as {m.group(1)}")
                name = m.group(1)
            name = re.sub(r"(?<=\d)X(?=≥?\d)", "x", name)
        elif gene in HLA_ALLELES:
            prefix = gene[-1] + "*"
            if name.startswith(prefix):
                name = name[1:]
            m = _HLA_ALLELE.fullmatch(name)
            if m is None:
                raise self.error(where, f"{name!r} is not an {gene} allele (expected e.g. *57:01)")
            if m.group(2):
                notes.append(f"sub-alleles are not supported for {gene}: {name} read as {m.group(1)}")
            name = m.group(1)
        return name

    def lookup_name(self, gene: str, name: str, notes: list[str]) -> str:
        """The name recommendations are looked up by: CYP2D6 ``*1x7`` -> ``*1x≥3`` (Cyp2d6CopyNumberCaller)."""
        m = _COPY_NUMBER.fullmatch(name)
        if gene != "CYP2D6" or m is None or m.group(1) not in self.cyp2d6_gte_three():
            return name
        copies = int(m.group(3))
        if copies < 3 or (m.group(2) and copies == 3):
            return name
        notes.append(f"CYP2D6 {name} is looked up as *{m.group(1)}x≥3")
        return f"*{m.group(1)}x≥3"

    def diplotypes(
        self, gene: str, text: str, where: str, notes: list[str]
    ) -> list[tuple[Diplotype, Diplotype, tuple[str, ...]]]:
        """Each diplotype of the text in name order, the diplotype it is looked up as, and its alleles as written."""
        out = []
        for one in re.split(r"\s+or\s+", text):
            alleles = [a for a in (s.strip() for s in one.split("/")) if a]
            if not alleles:
                raise self.error(where, f"no allele in diplotype {one!r}")
            if len(alleles) > 2:
                raise self.error(where, f"too many alleles in {one!r}")
            written = tuple(self.allele(gene, a, where, notes) for a in alleles)
            names = sorted(written, key=name_key)
            lookup = sorted((self.lookup_name(gene, n, notes) for n in names), key=name_key)
            out.append((Diplotype(tuple(names)), Diplotype(tuple(lookup)), written))
        return out

    def line(self, text: str, where: str) -> None:
        fields = [f.strip() for f in text.split("\t")]
        if len(fields) < 2:
            raise self.error(where, f"expected at least 2 tab-separated fields, got {len(fields)}")
        gene, dip_text = fields[0], fields[1]
        if not gene:
            raise self.error(where, "no gene")
        pheno_text = fields[2].replace(gene, "").strip() if len(fields) > 2 else ""
        score = fields[3] if len(fields) > 3 and fields[3] else None
        if dip_text == "/":
            dip_text = ""
        if not (dip_text or pheno_text or score):
            raise self.error(where, f"give a diplotype, phenotype or activity score for {gene}")
        if score is not None and not _SCORE.fullmatch(score):
            raise self.error(where, f"activity score {score!r} is not a number")
        entry = self.genes.setdefault(gene, _GeneLines())
        if dip_text and dip_text not in (".", "./."):
            for shown, lookup, written in self.diplotypes(gene, dip_text, where, entry.warnings):
                if shown not in entry.diplotypes:
                    entry.diplotypes.append(shown)
                    entry.lookups.append(lookup)
                    entry.written.append(written)
        if pheno_text and gene in HLA_ALLELES:
            if not _HLA_STATUS.fullmatch(pheno_text):
                raise self.error(where, f"{gene} phenotype {pheno_text!r} is not an allele status ('*57:01 positive')")
            entry.allele_status.append(pheno_text)
        elif pheno_text:
            entry.phenotype = self.same(entry.phenotype, normalize_phenotype(pheno_text), gene, where)
        if score is not None:
            entry.activity_score = self.same(entry.activity_score, score, gene, where)

    def same(self, old: str | None, new: str | None, gene: str, where: str) -> str | None:
        if old is not None and new != old:
            raise self.error(where, f"{gene} has two different outside results ({old!r}, {new!r})")
        return new

    def calls(self) -> list[GeneCall]:
        out = []
        for g, e in self.genes.items():
            order = e.report_order()
            dips, lookups = [e.diplotypes[i] for i in order], [e.lookups[i] for i in order]
            out.append(
                GeneCall(
                    gene=g,
                    source="outside",
                    diplotypes=tuple(dips),
                    phenotype=e.phenotype,
                    activity_score=e.activity_score,
                    allele_status=tuple(e.allele_status),
                    lookup=tuple(lookups) if lookups != dips else None,
                    warnings=tuple(e.warnings),
                )
            )
        return out


def _parse_into(parser: _Parser, text: str, name: str) -> None:
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r\n")
        if line.strip() and not line.startswith("#"):
            parser.line(line, f"{name}, line {n}")


def parse_outside_calls(text: str, name: str = "<text>", data_root: Path | None = None) -> list[GeneCall]:
    """Outside calls from the text of one file (``name`` is used in error messages)."""
    parser = _Parser(data_root)
    _parse_into(parser, text, name)
    return parser.calls()


def read_outside_calls(paths: Path | str | Iterable[Path | str], data_root: Path | None = None) -> list[GeneCall]:
    """Outside calls from one or more files; a gene named in several files keeps every diplotype (PharmCAT too)."""
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    parser = _Parser(data_root)
    for p in map(Path, items):
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise InputFileError(
                f"cannot read the outside-call file {p}: {e}", "check the path and that it is UTF-8 text"
            ) from e
        _parse_into(parser, text, str(p))
    return parser.calls()
