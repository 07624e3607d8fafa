"""FHIRPath for anonymizer configurations: the nodes of FHIR JSON as typed items, and the parser.

The subset: paths, ``where``/``select``/``exists``/``ofType``/``as``/``is`` and the other functions of ``_ARITY``,
the operators of FHIRPath N1, string, number, boolean and date/time literals, ``$this``, ``%resource``, and the
anonymizer's ``nodesByType('T')`` and ``nodesByName('n')`` (descendants of a type or name, not entering nested
resources). An unknown function is a syntax error, so a configuration fails when it is loaded, not midway.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from medml.deid._model import RESOURCE, element
from medml.deid._values import parse_temporal


class FhirPathSyntaxError(ValueError):
    """A path that does not parse, or names a function this engine does not have."""


class FhirPathEvaluationError(ValueError):
    """A path that parses but cannot be evaluated on this data (comparing a string with a number)."""


class InvalidElementError(ValueError):
    """A JSON key that FHIR R4 does not define under its parent: the resource is not R4."""


# ---------------------------------------------------------------------------------------------------------- items


class Item:
    """One value in a FHIRPath collection: a node of the resource (with its dict, key and index) or a computed
    value (``owner`` None). ``value`` is the JSON value of a node, or a str/int/Decimal/bool/FhirTemporal."""

    __slots__ = ("companion", "context", "index", "key", "name", "owner", "type", "value")

    def __init__(
        self,
        value: Any,
        fhir_type: str,
        name: str = "",
        context: str | None = None,
        owner: dict[str, Any] | None = None,
        key: str = "",
        index: int = -1,
        companion: dict[str, Any] | None = None,
    ) -> None:
        self.value = value
        self.type = fhir_type
        self.name = name
        self.context = context
        self.owner = owner
        self.key = key
        self.index = index
        self.companion = companion

    @property
    def location(self) -> tuple[int, str, int]:
        """Where the node lives: (id of its parent dict, JSON key, list index or -1)."""
        return (id(self.owner), self.key, self.index)

    @property
    def is_resource(self) -> bool:
        return isinstance(self.value, dict) and "resourceType" in self.value and self.context is not None


def resource_item(resource: dict[str, Any]) -> Item:
    """The root item of a resource."""
    rt = resource.get("resourceType", "")
    return Item(resource, rt, rt, rt)


def children(item: Item) -> Iterator[Item]:
    """The child nodes of a node, in document order; raises InvalidElementError for a key R4 does not define."""
    if item.context is None:
        return
    value = item.value
    if isinstance(value, dict):
        source: dict[str, Any] = value
    elif item.companion is not None:
        source = item.companion
    else:
        return
    for key, child in source.items():
        if key == "resourceType" or key == "fhir_comments":
            continue
        if key[0] == "_":
            if key[1:] in source:
                continue
            key = key[1:]
            child = None
        el = element(item.context, key)
        if el is None:
            raise InvalidElementError(f"{item.context} has no element {key!r} in FHIR R4")
        companions = source.get("_" + key) if el.primitive else None
        if isinstance(child, list) or isinstance(companions, list):
            values = child if isinstance(child, list) else [child] * len(companions or [])
            comps = companions if isinstance(companions, list) else [None] * len(values)
            for i, (v, c) in enumerate(zip(values, comps, strict=False)):
                yield _child_item(el.name, el.type, el.context, v, source, key, i, c)
        else:
            yield _child_item(el.name, el.type, el.context, child, source, key, -1, companions)


def _child_item(
    name: str, fhir_type: str, context: str, value: Any, owner: dict[str, Any], key: str, index: int, comp: Any
) -> Item:
    if fhir_type == RESOURCE and isinstance(value, dict):
        rt = value.get("resourceType", "")
        return Item(value, rt, name, rt, owner, key, index)
    return Item(value, fhir_type, name, context, owner, key, index, comp if isinstance(comp, dict) else None)


def descendants(item: Item, include_self: bool) -> Iterator[Item]:
    """A node's descendants (and itself), not entering nested resources (the anonymizer's extension semantics)."""
    if include_self:
        yield item
    for child in children(item):
        if child.is_resource:
            continue
        yield child
        yield from descendants(child, False)


# ------------------------------------------------------------------------------------------------------------ AST


@dataclass(frozen=True, slots=True)
class Lit:
    value: Any
    type: str


@dataclass(frozen=True, slots=True)
class Empty:
    pass


@dataclass(frozen=True, slots=True)
class Var:
    name: str  # $this, $index, %resource, %context


@dataclass(frozen=True, slots=True)
class Member:
    source: Node | None
    name: str


@dataclass(frozen=True, slots=True)
class Call:
    source: Node | None
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Indexer:
    source: Node
    index: Node


@dataclass(frozen=True, slots=True)
class Unary:
    op: str
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class TypeOp:
    op: str  # is | as
    operand: Node
    type_name: str


Node = Lit | Empty | Var | Member | Call | Indexer | Unary | Binary | TypeOp

# ---------------------------------------------------------------------------------------------------------- parser

_TOKEN = re.compile(
    r"""\s*(?:
    (?P<str>'(?:[^'\\]|\\.)*')
    |(?P<dt>@T?[0-9][0-9:\-T.+Z]*)
    |(?P<num>[0-9]+(?:\.[0-9]+)?)
    |(?P<id>[A-Za-z_][A-Za-z0-9_]*|`[^`]+`)
    |(?P<var>[$%][A-Za-z_][A-Za-z0-9_]*)
    |(?P<op><=|>=|!=|!~|[-+*/&|=~<>.,()\[\]{}])
    )""",
    re.VERBOSE,
)
_PRECEDENCE = [
    "implies",
    "or xor",
    "and",
    "in contains",
    "= ~ != !~",
    "< > <= >=",
    "|",
    "is as",
    "+ - &",
    "* / div mod",
]
_BINARY = {op: rank for rank, ops in enumerate(_PRECEDENCE, 1) for op in ops.split()}  # higher binds tighter
_ESCAPES = {"'": "'", '"': '"', "`": "`", "\\": "\\", "/": "/", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise FhirPathSyntaxError(f"unexpected {text[pos:].strip()[:20]!r} at character {pos + 1}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str]:
        return self.toks[self.i] if self.i < len(self.toks) else ("end", "")

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok[0] == "end" or (value is not None and tok[1] != value):
            want = f"{value!r}" if value else "more"
            raise FhirPathSyntaxError(f"expected {want} but found {tok[1] or 'the end'!r}")
        self.i += 1
        return tok

    def expression(self, min_prec: int = 0) -> Node:
        left = self.unary()
        while True:
            kind, text = self.peek()
            prec = _BINARY.get(text) if kind in ("op", "id") else None
            if prec is None or prec <= min_prec:
                return left
            self.i += 1
            if text in ("is", "as"):
                left = TypeOp(text, left, self.type_name())
            else:
                left = Binary(text, left, self.expression(prec))

    def type_name(self) -> str:
        name = self.take()[1]
        while self.peek()[1] == ".":
            self.i += 1
            name = self.take()[1]  # FHIR.Quantity, System.String: the last part names the type
        return name.strip("`")

    def unary(self) -> Node:
        if self.peek()[1] in ("+", "-"):
            op = self.take()[1]
            return Unary(op, self.unary())
        return self.postfix(self.term())

    def postfix(self, node: Node) -> Node:
        while True:
            text = self.peek()[1]
            if text == ".":
                self.i += 1
                node = self.invocation(node)
            elif text == "[":
                self.i += 1
                index = self.expression()
                self.take("]")
                node = Indexer(node, index)
            else:
                return node

    def invocation(self, source: Node | None) -> Node:
        kind, text = self.take()
        if kind != "id":
            raise FhirPathSyntaxError(f"expected a name but found {text!r}")
        name = text.strip("`")
        if self.peek()[1] == "(":
            self.i += 1
            args: list[Node] = []
            if self.peek()[1] != ")":
                args.append(self.expression())
                while self.peek()[1] == ",":
                    self.i += 1
                    args.append(self.expression())
            self.take(")")
            _check_call(name, len(args))
            return Call(source, name, tuple(args))
        return Member(source, name)

    def term(self) -> Node:
        kind, text = self.peek()
        if kind == "str":
            self.i += 1
            return Lit(re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), text[1:-1]), "string")
        if kind == "num":
            self.i += 1
            return Lit(Decimal(text), "decimal") if "." in text else Lit(int(text), "integer")
        if kind == "dt":
            self.i += 1
            temporal = parse_temporal(text[1:])
            if temporal is None:
                raise FhirPathSyntaxError(f"{text!r} is not a date, dateTime or time")
            return Lit(temporal, temporal.kind)
        if kind == "var":
            self.i += 1
            if text not in ("$this", "$index", "%resource", "%rootResource", "%context"):
                raise FhirPathSyntaxError(f"unknown variable {text}")
            return Var(text)
        if text == "(":
            self.i += 1
            inner = self.expression()
            self.take(")")
            return inner
        if text == "{":
            self.i += 1
            self.take("}")
            return Empty()
        if kind == "id" and text in ("true", "false"):
            self.i += 1
            return Lit(text == "true", "boolean")
        if kind == "id":
            return self.invocation(None)
        raise FhirPathSyntaxError(f"unexpected {text or 'end of path'!r}")


def parse(text: str) -> Node:
    """The syntax tree of a FHIRPath expression; FhirPathSyntaxError says what is wrong and where."""
    if not isinstance(text, str) or not text.strip():
        raise FhirPathSyntaxError("the path is empty")
    parser = _Parser(text)
    node = parser.expression()
    if parser.peek()[0] != "end":
        raise FhirPathSyntaxError(f"unexpected {parser.peek()[1]!r} after a complete expression")
    return node


_ARITY: dict[str, tuple[int, int]] = {
    **dict.fromkeys(("where", "select", "all", "skip", "take", "ofType", "as", "is", "extension"), (1, 1)),
    **dict.fromkeys(("nodesByType", "nodesByName", "startsWith", "endsWith", "contains", "matches", "indexOf"), (1, 1)),
    **dict.fromkeys(("empty", "not", "first", "last", "tail", "single", "count", "hasValue", "children"), (0, 0)),
    **dict.fromkeys(("descendants", "length", "upper", "lower", "trim", "toString", "toInteger", "toDecimal"), (0, 0)),
    "exists": (0, 1),
    "iif": (2, 3),
    "replaceMatches": (2, 2),
    "replace": (2, 2),
    "substring": (1, 2),
}


def _check_call(name: str, n: int) -> None:
    if name not in _ARITY:
        raise FhirPathSyntaxError(f"unknown function {name}()")
    low, high = _ARITY[name]
    if not low <= n <= high:
        raise FhirPathSyntaxError(
            f"{name}() takes {low}-{high} arguments, got {n}"
            if low != high
            else f"{name}() takes {low} argument{'s' if low != 1 else ''}, got {n}"
        )


__all__ = [
    "Binary",
    "Call",
    "Empty",
    "FhirPathEvaluationError",
    "FhirPathSyntaxError",
    "Indexer",
    "InvalidElementError",
    "Item",
    "Lit",
    "Member",
    "Node",
    "TypeOp",
    "Unary",
    "Var",
    "children",
    "descendants",
    "parse",
    "resource_item",
]
