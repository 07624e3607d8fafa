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
from functools import cmp_to_key

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


def _runs(name: str) -> list[int | str]:
    """NaturalStringComparator.partsOf: alternating runs of non-digits and digits, digit runs as numbers."""
    return [int(r) if r.isdecimal() else r for r in _RUNS.findall(name)]


def natural_compare(n1: str, n2: str) -> int:
    """pgkb-common 0.7.3 NaturalStringComparator.compare."""
    p1, p2 = _runs(n1), _runs(n2)
    for a, b in zip(p1, p2, strict=False):
        # numbers as numbers, text as text; text after a number at the same place (XXXa > XXX1)
        same = type(a) is type(b)
        rez = (a > b) - (a < b) if same else 1 if isinstance(a, str) else -1  # type: ignore[operator]
        if rez:
            return rez
    return (len(p1) > len(p2)) - (len(p1) < len(p2))


def _plain(n1: str, n2: str) -> int:
    """pgkb-common 0.7.3 HaplotypeNameComparator.compare."""
    if n1 == n2:
        return 0
    if n1 in _TOP or n2 in _BOTTOM:
        return -1
    if n2 in _TOP or n1 in _BOTTOM:
        return 1
    return natural_compare(n1, n2)


def is_combination(name: str) -> bool:
    """PharmCAT's CombinationMatcher.isCombinationName: ``[`` ... `` + `` ... ``]``."""
    return name.startswith("[") and COMBINATION_JOINER in name and name.endswith("]")


def combination_parts(name: str) -> list[str]:
    """The parts of a combination name (CombinationMatcher.splitCombinationName); a plain name is its own part."""
    return [p.strip() for p in name[1:-1].split(COMBINATION_JOINER)] if is_combination(name) else [name]


def is_partial(name: str) -> bool:
    return _PARTIAL.fullmatch(name) is not None


def compare_names(n1: str, n2: str) -> int:
    """-1, 0 or 1, as PharmCAT's util.HaplotypeNameComparator."""
    if n1 == n2:
        return 0
    c1, c2 = is_combination(n1), is_combination(n2)
    if c1 != c2:
        return 1 if c1 else -1
    if not c1:
        return _plain(n1, n2)
    p1, p2 = combination_parts(n1), combination_parts(n2)
    if len(p1) != len(p2):
        return -1 if len(p1) < len(p2) else 1
    for a, b in zip(p1, p2, strict=True):
        partial_a, partial_b = is_partial(a), is_partial(b)
        if partial_a != partial_b:
            return 1 if partial_a else -1
        rez = _plain(a, b)
        if rez:
            return rez
    return 0


name_key = cmp_to_key(compare_names)
