"""PharmCAT's ordering of haplotype names: the order of the two alleles in a diplotype's name, of tied diplotypes,
and of the parts of a combination.

Two layers, as in PharmCAT 3.1.1:

- pgkb-common 0.7.3's ``HaplotypeNameComparator`` (the version PharmCAT 3.1.1 builds with): ``Any``, ``All`` and
  ``Reference`` sort first, ``Other`` and ``Unknown`` last; everything else by ``NaturalStringComparator``, which
  splits a name into runs of digits and non-digits and compares them pairwise, digit runs as numbers (``*2`` <
  ``*10``, ``*1x2`` < ``*9``, ``c.85T>C`` < ``c.1627A>G``), text runs as strings, a text run after a digit run at the
  same place (``XXXa`` > ``XXX1``), and a name that runs out first before the longer one;
- PharmCAT's own ``util.HaplotypeNameComparator.compare``: a combination (``[*6 + *14]``, bracketed and joined by
  `` + ``) sorts after any plain name; two combinations by their number of parts, then part by part, a partial
  (``g.94781859G>A``, PharmCAT's ``PARTIAL_PATTERN``) after a named part, else by the layer above.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

_SUBALLELE = re.compile(r"^(\*\d+[A-Z]?)\.\d{3}$")
#: PharmCAT's HaplotypeNameComparator.PARTIAL_PATTERN
_PARTIAL = re.compile(r"^g\.\d+[?=]?[ACGT>\d]+$")
_RUNS = re.compile(r"\d+|\D+")
_TOP = ("Any", "All", "Reference")
_BOTTOM = ("Other", "Unknown")
COMBINATION_JOINER = " + "


def star_allele(name: str) -> str:
    """A PharmVar sub-allele (``*45.001``) as its star allele (``*45``), the name reports and phenotype tables use."""
    return _SUBALLELE.sub(r"\1", name)


def _runs(name: str) -> tuple[tuple[int, int | str], ...]:
    """NaturalStringComparator.partsOf as a sort key: alternating runs of non-digits and digits, a digit run as a
    number. ``(0, n)`` before ``(1, text)`` puts a number before text at the same place (XXX1 < XXXa), and a tuple that
    runs out first sorts first, as in the Java."""
    return tuple((0, int(r)) if r.isdecimal() else (1, r) for r in _RUNS.findall(name))


def _plain_key(name: str) -> tuple[Any, ...]:
    """pgkb-common 0.7.3 HaplotypeNameComparator as a key: top terms, then natural order, then bottom terms. (Two top
    or two bottom terms compare as -1 both ways in the Java, so no order among them is defined; they keep the order
    of its lists here.)"""
    if name in _TOP:
        return (0, _TOP.index(name))
    if name in _BOTTOM:
        return (2, _BOTTOM.index(name))
    return (1, _runs(name))


def natural_compare(n1: str, n2: str) -> int:
    """pgkb-common 0.7.3 NaturalStringComparator.compare: -1, 0 or 1."""
    k1, k2 = _runs(n1), _runs(n2)
    return (k1 > k2) - (k1 < k2)


def is_combination(name: str) -> bool:
    """PharmCAT's CombinationMatcher.isCombinationName: ``[`` ... `` + `` ... ``]``."""
    return name.startswith("[") and COMBINATION_JOINER in name and name.endswith("]")


def combination_parts(name: str) -> list[str]:
    """The parts of a combination name (CombinationMatcher.splitCombinationName); a plain name is its own part."""
    return [p.strip() for p in name[1:-1].split(COMBINATION_JOINER)] if is_combination(name) else [name]


def is_partial(name: str) -> bool:
    return _PARTIAL.fullmatch(name) is not None


@lru_cache(maxsize=65536)
def name_key(name: str) -> tuple[Any, ...]:
    """PharmCAT's util.HaplotypeNameComparator as a sort key: plain names, then combinations by their number of
    parts and part by part (a partial part after a named one). Cached: the same names are sorted over and over."""
    if not is_combination(name):
        return (0, _plain_key(name))
    parts = combination_parts(name)
    return (1, len(parts), tuple((is_partial(p), _plain_key(p)) for p in parts))


def compare_names(n1: str, n2: str) -> int:
    """-1, 0 or 1, as PharmCAT's util.HaplotypeNameComparator."""
    k1, k2 = name_key(n1), name_key(n2)
    return (k1 > k2) - (k1 < k2)
