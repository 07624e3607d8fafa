"""Where each rule can apply, worked out once per resource type and element position.

A rule whose path is an element path (``Claim.insurance.coverage``), ``nodesByType('T')``, ``nodesByName('n')``,
one of those followed by a child name, an ``as``/``ofType`` filter, or a ``where(...)`` (then checked per node),
is matched from a node's *position* in its resource's element tree; the first such rule of each position is
memoised on a :class:`Position`, shared by every node there. Other paths are evaluated with FHIRPath per resource.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medml.deid._config import Rule
from medml.deid._fhirpath import Call, Lit, Member, TypeOp
from medml.deid._model import QUANTITY_TYPES, resource_types

INF = 1 << 30
PRIMITIVE, COMPLEX, NESTED, SKIP, ORPHAN_COMPANION = range(5)
PHASE = 1 << 20  # a rule of an enclosing resource outranks every rule of the resource it encloses
#: what the winning rule does to the primitives at a position (memoised in Position.actions): keep them, remove
#: them (plain redaction), put the replacement text, hash them, or another method
KEEP, PLAIN_REDACT, SUBSTITUTE_TEXT, HASH, OTHER = range(5)


class Position:
    """A place in a resource type's element tree (``Patient.contact.name``) and the first static rule that
    selects a node there; shared by every node at that place, and memoised per child key."""

    __slots__ = (
        "actions",
        "base",
        "children",
        "companion_key",
        "conditional",
        "context",
        "kind",
        "name",
        "name_key",
        "parent",
        "path",
        "primitive",
        "repeats",
        "required",
        "static",
        "tables",
        "type",
    )

    def __init__(self, fhir_type: str, name: str, context: str, path: str, parent: Position | None) -> None:
        self.type = fhir_type
        self.name = name
        self.context = context
        self.path = path
        self.parent = parent
        self.primitive = False
        self.repeats = False
        self.required = False
        self.static = INF
        self.kind = COMPLEX
        self.name_key = ""  # the JSON key (valueQuantity), where name is the element's name (value)
        self.companion_key = ""
        self.base: Position = self
        self.children: dict[str, Position] = {}
        self.actions: dict[int, int] = {}
        self.conditional: tuple[tuple[int, Any], ...] = ()  # (rule index, where condition) that may select here
        self.tables: dict[int, Any] = {}  # per rule in force: what each child key gets (medml.deid._fast)


@dataclass(frozen=True)
class Static:
    """A path the walk can match from a node's position: kind is type, type_child, name, name_child, path or
    root; ``a`` the type, name or path; ``b`` the child's name; ``as_type`` an ``as``/``ofType`` filter.
    type_where and name_where (``nodesByType('T').where(...)``) hold a condition checked on each such node."""

    index: int
    kind: str
    a: str
    b: str = ""
    as_type: str = ""
    condition: Any = None


def classify(rule: Rule) -> Static | None:
    """The static form of a rule's path, or None where it must be evaluated with FHIRPath."""
    if rule.whole_resource:
        return Static(rule.index, "root", rule.resource_type)
    node: Any = rule.tree
    as_type = ""
    if isinstance(node, TypeOp) and node.op == "as":
        as_type, node = node.type_name, node.operand
    elif (
        isinstance(node, Call)
        and node.name == "ofType"
        and isinstance(node.args[0], Member)
        and node.args[0].source is None
        and node.source is not None
    ):
        as_type, node = node.args[0].name, node.source

    def finder(n: Any) -> tuple[str, str] | None:
        if (
            isinstance(n, Call)
            and n.source is None
            and n.name in ("nodesByType", "nodesByName")
            and isinstance(n.args[0], Lit)
            and isinstance(n.args[0].value, str)
        ):
            wanted = n.args[0].value
            if wanted in resource_types() or wanted in ("resource", "contained", "outcome"):
                return None  # nested resources: leave to FHIRPath
            return ("type" if n.name == "nodesByType" else "name", wanted)
        return None

    direct = finder(node)
    if direct:
        return Static(rule.index, direct[0], direct[1], "", as_type)
    if isinstance(node, Call) and node.name == "where" and node.source is not None and not as_type:
        inner = finder(node.source)
        if inner:
            return Static(rule.index, inner[0] + "_where", inner[1], condition=node.args[0])
    if isinstance(node, Member) and node.source is not None:
        inner = finder(node.source)
        if inner:
            return Static(rule.index, inner[0] + "_child", inner[1], node.name, as_type)
    names: list[str] = []
    while isinstance(node, Member):
        names.append(node.name)
        node = node.source
    if node is not None or not names:
        return None
    names.reverse()
    if names[0][:1].isupper() or any(n in ("resource", "contained", "outcome") for n in names):
        return None
    return Static(rule.index, "path", ".".join(names), "", as_type)


def _type_matches(fhir_type: str, wanted: str) -> bool:
    return not wanted or fhir_type == wanted or (wanted == "Quantity" and fhir_type in QUANTITY_TYPES)


def matches(s: Static, pos: Position) -> bool:
    parent = pos.parent
    if s.kind == "type":
        return pos.type == s.a and _type_matches(pos.type, s.as_type)
    if s.kind == "name":
        return pos.name == s.a and _type_matches(pos.type, s.as_type)
    if s.kind == "path":
        return pos.path == s.a and _type_matches(pos.type, s.as_type)
    if parent is None:
        return False
    if s.kind == "type_child":
        return parent.type == s.a and pos.name == s.b and _type_matches(pos.type, s.as_type)
    if s.kind == "name_child":
        return parent.name == s.a and pos.name == s.b and _type_matches(pos.type, s.as_type)
    return False


class Plan:
    """The rules that apply to one resource type, split into static and FHIRPath-evaluated ones."""

    def __init__(self, resource_type: str, rules: tuple[Rule, ...], statics: dict[int, Static | None]) -> None:
        applicable = [r for r in rules if r.resource_type in (resource_type, "", "Resource", "DomainResource")]
        self.static = [s for s in (statics[r.index] for r in applicable) if s is not None]
        self.dynamic = [r for r in applicable if statics[r.index] is None]
        self.root = Position(resource_type, resource_type, resource_type, "", None)
        self.root.static = min((s.index for s in self.static if s.kind == "root"), default=INF)


__all__ = [
    "COMPLEX",
    "HASH",
    "INF",
    "KEEP",
    "NESTED",
    "ORPHAN_COMPANION",
    "OTHER",
    "PHASE",
    "PLAIN_REDACT",
    "PRIMITIVE",
    "SKIP",
    "SUBSTITUTE_TEXT",
    "Plan",
    "Position",
    "Static",
    "classify",
    "matches",
]
