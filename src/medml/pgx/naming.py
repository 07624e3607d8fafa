"""PharmCAT's ordering of haplotype names, so tied diplotypes come out in the order PharmCAT prints them.

Star names sort by prefix, then number, then suffix (``*9`` < ``*10``); HGVS names (``c.62G>A``) by position;
combinations (``[*2 + *3]``) after plain names. The number rule mirrors pgkb-common's comparator, whose greedy
pattern reads the *last* digit as the number: a quirk kept on purpose so our order matches PharmCAT's.
"""

from __future__ import annotations

import re
from functools import cmp_to_key

_STAR = re.compile(r"(.*)(\d+)(.*)", re.DOTALL)
_SUBALLELE = re.compile(r"^(\*\d+[A-Z]?)\.\d{3}$")
_HGVS = re.compile(r"(?:.*:)?[cgnmopr]\.(\d+).*", re.DOTALL)
_TOP = ("Any", "All")
_BOTTOM = ("Other", "Unknown")


def star_allele(name: str) -> str:
    """A PharmVar sub-allele (``*45.001``) as its star allele (``*45``), the name reports and phenotype tables use."""
    return _SUBALLELE.sub(r"\1", name)


def _cmp(a: object, b: object) -> int:
    if a is None:
        return 0 if b is None else -1
    if b is None:
        return 1
    return (a > b) - (a < b)  # type: ignore[operator]


def _plain(n1: str, n2: str) -> int:
    if n1 == n2:
        return 0
    if n1 in _TOP or n2 in _BOTTOM:
        return -1
    if n2 in _TOP or n1 in _BOTTOM:
        return 1
    m1, m2 = _STAR.fullmatch(n1), _STAR.fullmatch(n2)
    if m1 and m2:
        rez = _cmp(m1.group(1).strip() or None, m2.group(1).strip() or None)
        if rez:
            return rez
        rez = _cmp(int(m1.group(2)), int(m2.group(2)))
        if rez:
            return rez
        return _cmp(m1.group(3).strip() or None, m2.group(3).strip() or None)
    return _cmp(n1, n2)


def is_combination(name: str) -> bool:
    return name.startswith("[") and name.endswith("]")


def combination_parts(name: str) -> list[str]:
    return [p.strip() for p in name[1:-1].split(" + ")] if is_combination(name) else [name]


def compare_names(n1: str, n2: str) -> int:
    """-1, 0 or 1, as PharmCAT's HaplotypeNameComparator."""
    if n1 == n2:
        return 0
    c1, c2 = is_combination(n1), is_combination(n2)
    if c1 != c2:
        return 1 if c1 else -1
    if c1:
        p1, p2 = combination_parts(n1), combination_parts(n2)
        if len(p1) != len(p2):
            return _cmp(len(p1), len(p2))
        n1, n2 = p1[0], p2[0]
    h1, h2 = _HGVS.fullmatch(n1), _HGVS.fullmatch(n2)
    if h1 and h2:
        pos1, pos2 = int(h1.group(1)), int(h2.group(1))
        return _cmp(n1, n2) if pos1 == pos2 else _cmp(pos1, pos2)
    return _plain(n1, n2)


name_key = cmp_to_key(compare_names)
