"""FHIRPath evaluation on FHIR JSON, so that a result names its node (see :mod:`medml.deid._fhirpath_syntax`).

A rule's path must say *which* element to change, not only its value, so every result of a path is an
:class:`Item` that knows the dict and key it lives at. Parsing is separate from evaluation so a configuration is
checked once, when it is loaded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from medml.deid._fhirpath_syntax import (
    Binary,
    Call,
    Empty,
    FhirPathEvaluationError,
    FhirPathSyntaxError,
    Indexer,
    InvalidElementError,
    Item,
    Lit,
    Member,
    Node,
    TypeOp,
    Unary,
    Var,
    children,
    descendants,
    parse,
    resource_item,
)
from medml.deid._model import PRIMITIVE_TYPES, QUANTITY_TYPES
from medml.deid._values import FhirTemporal, parse_temporal

# ------------------------------------------------------------------------------------------------------ evaluation


@dataclass(frozen=True, slots=True)
class _Env:
    this: Item | None
    resource: Item | None
    index: int = 0


def evaluate(node: Node, focus: list[Item], resource: Item | None = None) -> list[Item]:
    """The collection ``node`` gives on ``focus``; FhirPathEvaluationError where FHIRPath calls it an error."""
    return _eval(node, focus, _Env(focus[0] if len(focus) == 1 else None, resource))


def _eval(node: Node, focus: list[Item], env: _Env) -> list[Item]:
    if isinstance(node, Member):
        base = focus if node.source is None else _eval(node.source, focus, env)
        if node.source is None and node.name[:1].isupper():
            typed = [i for i in base if _is_type(i, node.name)]
            if typed:
                return typed
        return [c for i in base for c in children(i) if c.name == node.name]
    if isinstance(node, Call):
        base = focus if node.source is None else _eval(node.source, focus, env)
        return _call(node, base, env)
    if isinstance(node, Lit):
        return [Item(node.value, node.type)]
    if isinstance(node, Var):
        if node.name == "$this":
            return [env.this] if env.this is not None else focus
        if node.name == "$index":
            return [Item(env.index, "integer")]
        return [env.resource] if env.resource is not None else []
    if isinstance(node, Binary):
        return _binary(node, focus, env)
    if isinstance(node, TypeOp):
        values = _eval(node.operand, focus, env)
        if node.op == "as":
            return [v for v in values if _is_type(v, node.type_name)]
        if len(values) > 1:
            raise FhirPathEvaluationError("'is' needs a single value")
        return [Item(_is_type(values[0], node.type_name), "boolean")] if values else []
    if isinstance(node, Indexer):
        values = _eval(node.source, focus, env)
        k = _integer(_eval(node.index, focus, env))
        return [values[k]] if k is not None and 0 <= k < len(values) else []
    if isinstance(node, Unary):
        values = _eval(node.operand, focus, env)
        if node.op == "-":
            return [Item(-_number(values), "decimal" if isinstance(values[0].value, Decimal) else "integer")]
        return values
    return []


def _is_type(item: Item, name: str) -> bool:
    if item.type == name:
        return True
    if name in ("Resource", "DomainResource"):
        return item.is_resource
    if name == "Quantity":
        return item.type in QUANTITY_TYPES
    return name.lower() == item.type.lower() and item.type in PRIMITIVE_TYPES


# ------------------------------------------------------------------------------------------------ values and logic


def plain(item: Item) -> Any:
    """The FHIRPath value of an item: str, int, Decimal, bool or FhirTemporal (dates parsed by the item's type)."""
    v = item.value
    if isinstance(v, str) and item.type in ("date", "dateTime", "instant", "time"):
        parsed = parse_temporal(v if item.type != "time" else "T" + v)
        return parsed if parsed is not None else v
    if isinstance(v, float):
        return Decimal(repr(v))
    return v


def boolean(values: list[Item]) -> bool | None:
    """FHIRPath's singleton evaluation of a collection as a boolean: None for empty."""
    if not values:
        return None
    if len(values) > 1:
        raise FhirPathEvaluationError("a condition gave several values where one boolean was needed")
    v = values[0].value
    return v if isinstance(v, bool) else True


def _single(values: list[Item], what: str) -> Any:
    if len(values) > 1:
        raise FhirPathEvaluationError(f"{what} needs a single value, got {len(values)}")
    return plain(values[0]) if values else None


def _integer(values: list[Item]) -> int | None:
    v = _single(values, "an index")
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | Decimal):
        raise FhirPathEvaluationError(f"{v!r} is not an integer")
    return int(v)


def _number(values: list[Item]) -> Any:
    v = _single(values, "arithmetic")
    if isinstance(v, bool) or not isinstance(v, int | Decimal):
        raise FhirPathEvaluationError(f"{v!r} is not a number")
    return v


def _equal(a: Any, b: Any) -> bool | None:
    if isinstance(a, FhirTemporal) and isinstance(b, FhirTemporal):
        c = a.compare(b)
        return None if c is None else c == 0
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    if isinstance(a, int | Decimal) and isinstance(b, int | Decimal):
        return Decimal(a) == Decimal(b)
    return bool(a == b)


def _equivalent(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return " ".join(a.lower().split()) == " ".join(b.lower().split())
    return bool(_equal(a, b))


def _compare(a: Any, b: Any) -> int | None:
    if isinstance(a, FhirTemporal) and isinstance(b, FhirTemporal):
        return a.compare(b)
    numeric = (int, Decimal)
    if isinstance(a, numeric) and isinstance(b, numeric) and not isinstance(a, bool) and not isinstance(b, bool):
        return (Decimal(a) > Decimal(b)) - (Decimal(a) < Decimal(b))
    if isinstance(a, str) and isinstance(b, str):
        return (a > b) - (a < b)
    raise FhirPathEvaluationError(f"cannot compare {a!r} with {b!r}: they are of different types")


def _collection_equal(left: list[Item], right: list[Item], equivalent: bool) -> bool | None:
    if not left or not right:
        return (not left and not right) if equivalent else None
    if len(left) != len(right):
        return False
    result: bool | None = True
    for a, b in zip(left, right, strict=True):
        same = _equivalent(plain(a), plain(b)) if equivalent else _equal(plain(a), plain(b))
        if same is False:
            return False
        if same is None:
            result = None
    return result


def _bool_item(v: bool | None) -> list[Item]:
    return [] if v is None else [Item(v, "boolean")]


def _binary(node: Binary, focus: list[Item], env: _Env) -> list[Item]:
    op = node.op
    left = _eval(node.left, focus, env)
    if op in ("and", "or", "xor", "implies"):
        a = boolean(left)
        if op == "and" and a is False:
            return _bool_item(False)
        if op == "or" and a is True:
            return _bool_item(True)
        if op == "implies" and a is False:
            return _bool_item(True)
        b = boolean(_eval(node.right, focus, env))
        if op == "and":
            return _bool_item(False if b is False else (None if a is None or b is None else True))
        if op == "or":
            return _bool_item(True if b is True else (None if a is None or b is None else False))
        if op == "xor":
            return _bool_item(None if a is None or b is None else a != b)
        return _bool_item(True if b is True else (None if a is None else b))
    right = _eval(node.right, focus, env)
    if op == "|":
        seen: list[Any] = []
        out: list[Item] = []
        for i in left + right:
            key = i.location if i.owner is not None else ("v", repr(plain(i)))
            if key not in seen:
                seen.append(key)
                out.append(i)
        return out
    if op in ("=", "!=", "~", "!~"):
        same = _collection_equal(left, right, op in ("~", "!~"))
        return _bool_item(same if op in ("=", "~") or same is None else not same)
    if op in ("in", "contains"):
        element, collection = (left, right) if op == "in" else (right, left)
        if not element:
            return []
        v = _single(element, f"'{op}'")
        return _bool_item(any(_equal(v, plain(c)) for c in collection))
    if op == "&":
        a, b = _single(left, "'&'"), _single(right, "'&'")
        return [Item(_text(a) + _text(b), "string")]
    if not left or not right:
        return []
    if op in ("<", ">", "<=", ">="):
        c = _compare(_single(left, f"'{op}'"), _single(right, f"'{op}'"))
        if c is None:
            return []
        return _bool_item({"<": c < 0, ">": c > 0, "<=": c <= 0, ">=": c >= 0}[op])
    return _arithmetic(op, _single(left, f"'{op}'"), _single(right, f"'{op}'"))


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return v.text if isinstance(v, FhirTemporal) else str(v)


def _arithmetic(op: str, a: Any, b: Any) -> list[Item]:
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        return [Item(a + b, "string")]
    for v in (a, b):
        if isinstance(v, bool) or not isinstance(v, int | Decimal):
            raise FhirPathEvaluationError(f"'{op}' needs numbers, got {v!r}")
    if op in ("/", "div", "mod") and b == 0:
        return []
    if op == "/":
        return [Item(Decimal(a) / Decimal(b), "decimal")]
    result = {"+": a + b, "-": a - b, "*": a * b, "div": _div(a, b), "mod": a - b * _div(a, b)}[op]
    return [Item(result, "integer" if isinstance(result, int) else "decimal")]


def _div(a: Any, b: Any) -> Any:
    q = Decimal(a) / Decimal(b)
    whole = int(q)  # FHIRPath's div truncates toward zero
    return whole if isinstance(a, int) and isinstance(b, int) else Decimal(whole)


# ------------------------------------------------------------------------------------------------------- functions


def _type_arg(node: Node) -> str:
    if isinstance(node, Member) and node.source is None:
        return node.name
    raise FhirPathEvaluationError("a type name was expected")


def _string_arg(node: Node, env: _Env, focus: list[Item]) -> str:
    v = _single(_eval(node, focus, env), "an argument")
    if not isinstance(v, str):
        raise FhirPathEvaluationError(f"{v!r} is not a string")
    return v


def _call(node: Call, base: list[Item], env: _Env) -> list[Item]:
    name, args = node.name, node.args
    if name in ("where", "select", "all", "exists") and args:
        out: list[Item] = []
        for n, item in enumerate(base):
            result = _eval(args[0], [item], _Env(item, env.resource, n))
            if name == "select":
                out.extend(result)
                continue
            ok = boolean(result)
            if name == "all" and ok is not True:
                return _bool_item(False)
            if ok:
                if name == "exists":
                    return _bool_item(True)
                out.append(item)
        return _bool_item(True) if name == "all" else (_bool_item(False) if name == "exists" else out)
    if name == "exists":
        return _bool_item(bool(base))
    if name == "empty":
        return _bool_item(not base)
    if name == "not":
        b = boolean(base)
        return [] if b is None else _bool_item(not b)
    if name == "first":
        return base[:1]
    if name == "last":
        return base[-1:]
    if name == "tail":
        return base[1:]
    if name == "single":
        if len(base) > 1:
            raise FhirPathEvaluationError("single() on several values")
        return base
    if name in ("skip", "take"):
        k = _integer(_eval(args[0], base, env)) or 0
        return base[k:] if name == "skip" else base[: max(k, 0)]
    if name == "count":
        return [Item(len(base), "integer")]
    if name == "hasValue":
        return _bool_item(len(base) == 1 and base[0].value is not None and not isinstance(base[0].value, dict))
    if name == "children":
        return [c for i in base for c in children(i)]
    if name == "descendants":
        return [d for i in base for d in _all_descendants(i)]
    if name in ("ofType", "as"):
        t = _type_arg(args[0])
        return [i for i in base if _is_type(i, t)]
    if name == "is":
        return _bool_item(_is_type(base[0], _type_arg(args[0]))) if len(base) == 1 else []
    if name == "iif":
        cond = boolean(_eval(args[0], base, env))
        if cond:
            return _eval(args[1], base, env)
        return _eval(args[2], base, env) if len(args) == 3 else []
    if name == "extension":
        url = _string_arg(args[0], env, base)
        return [c for i in base for c in children(i) if c.name == "extension" and _url(c) == url]
    if name in ("nodesByType", "nodesByName"):
        wanted = _string_arg(args[0], env, base)
        attr = "type" if name == "nodesByType" else "name"
        return [d for i in base for d in descendants(i, True) if getattr(d, attr) == wanted]
    return _string_function(name, args, base, env)


def _url(item: Item) -> str | None:
    return item.value.get("url") if isinstance(item.value, dict) else None


def _all_descendants(item: Item) -> Iterator[Item]:
    for child in children(item):
        yield child
        yield from _all_descendants(child)


def _string_function(name: str, args: tuple[Node, ...], base: list[Item], env: _Env) -> list[Item]:
    if not base:
        return []
    v = _single(base, f"{name}()")
    if name == "toString":
        return [Item(_text(v), "string")]
    if name in ("toInteger", "toDecimal"):
        try:
            number = Decimal(str(v)) if not isinstance(v, bool) else Decimal(int(v))
        except ArithmeticError:
            return []
        return [Item(int(number), "integer")] if name == "toInteger" else [Item(number, "decimal")]
    if isinstance(v, FhirTemporal):
        v = v.text  # the anonymizer's docs generalize dates with replaceMatches: they are read as their text
    if not isinstance(v, str):
        raise FhirPathEvaluationError(f"{name}() needs a string, got {v!r}")
    if name == "length":
        return [Item(len(v), "integer")]
    if name in ("upper", "lower", "trim"):
        return [Item({"upper": v.upper, "lower": v.lower, "trim": v.strip}[name](), "string")]
    if name == "substring":
        start = _integer(_eval(args[0], base, env))
        if start is None or start < 0 or start >= len(v):
            return []
        length = _integer(_eval(args[1], base, env)) if len(args) == 2 else None
        return [Item(v[start:] if length is None else v[start : start + max(length, 0)], "string")]
    a = _string_arg(args[0], env, base)
    if name == "startsWith":
        return _bool_item(v.startswith(a))
    if name == "endsWith":
        return _bool_item(v.endswith(a))
    if name == "contains":
        return _bool_item(a in v)
    if name == "indexOf":
        return [Item(v.find(a), "integer")]
    if name == "matches":
        return _bool_item(re.search(_regex(a), v) is not None)
    b = _string_arg(args[1], env, base)
    if name == "replace":
        return [Item(v.replace(a, b) if a else "".join(b + ch for ch in v) + b, "string")]
    # replaceMatches: .NET substitutions ($1, ${name}) as the anonymizer's FHIRPath engine writes them
    template = re.sub(r"\$\{(\w+)\}|\$(\d+)", lambda m: f"\\g<{m.group(1) or m.group(2)}>", b)
    return [Item(re.sub(_regex(a), template, v), "string")]


def _regex(pattern: str) -> str:
    """A .NET regular expression in Python's syntax: named groups ``(?<name>...)`` become ``(?P<name>...)``."""
    return re.sub(r"\(\?<([A-Za-z_]\w*)>", r"(?P<\1>", pattern)


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
    "boolean",
    "children",
    "descendants",
    "evaluate",
    "parse",
    "plain",
    "resource_item",
]
