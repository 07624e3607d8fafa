"""FHIRPath syntax trees to SQL expressions over JSON, through a :class:`Dialect`.

A value is a :class:`Val`: a single value or a list (``many``), JSON or typed (``kind``), with its FHIR type when
known. Member steps stay *pending* (a JSONPath on a base) so that a chain like ``code.coding.code`` becomes one
``$.code.coding[*].code`` extraction; paths on the resource itself are batched into one multi-path call per row.
Whether an element repeats comes from the R4 element map; elements not in it are checked at run time.

An array that ``where()`` filters is parsed once into *records*: a list of structs shaped by exactly the members the
view goes on to read (a :class:`Shape`, grown as members are asked for, nested for complex members such as an
extension's extensions and its ``valueCoding``), its type written into the SQL when the whole view is compiled.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from medml.fhir.view import _elements as el
from medml.fhir.view._dialect import Dialect
from medml.fhir.view._errors import InvalidViewError
from medml.fhir.view._fhirpath import Binary, Call, Env, Index, Literal, Member, Node, This, Unary

_LIT_KIND = {"str": "str", "int": "int", "num": "num", "bool": "bool", "date": "str", "datetime": "str", "time": "str"}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REF = r"(?:^|/)({type})/([A-Za-z0-9\-\.]{{1,64}})(?:/_history/[^/]*)?$"


@dataclass(frozen=True)
class Val:
    """A compiled FHIRPath value. With ``path`` set, ``sql`` is the JSON base the path still has to be applied to."""

    sql: str
    many: bool
    kind: str  # 'json' | 'str' | 'bool' | 'int' | 'num'
    ftype: str | None = None
    path: str | None = None
    base_many: bool = False  # pending path applies to each element of a list base
    root: bool = False  # pending path on the resource itself: batched
    choice: tuple[Val, str] | None = None  # (parent, name) of a choice element awaiting ofType()
    # A record (a list of them when ``many``): a struct of the members of ``shape``, parsed once.
    shape: Shape | None = field(default=None, compare=False)
    as_json: Callable[[], Val] | None = field(default=None, compare=False)  # the same value as JSON, compiled lazily


@dataclass(eq=False)
class Shape:
    """The members of a JSON element that the view reads: text members and nested records (complex members)."""

    many: bool  # the element repeats: a list of structs
    members: dict[str, Shape | bool] = field(default_factory=dict)  # a nested record, or text (True: a list of text)

    def spec(self) -> object:
        """The ``json_transform`` structure; an element none of whose members are read stays JSON."""
        record: object = {
            n: m.spec() if isinstance(m, Shape) else ["VARCHAR"] if m else "VARCHAR" for n, m in self.members.items()
        } or "JSON"
        return [record] if self.many else record


class NeedJson(Exception):
    """A record was used where only its JSON will do; the caller compiles the JSON form instead."""


def json_of(v: Val) -> Val:
    """The JSON form of a record."""
    if v.as_json is None:
        raise NeedJson
    return v.as_json()


@dataclass
class Batch:
    """Paths on the resource extracted once per row: ``json_extract_string(resource, [p1, p2, ...])``; the shapes of
    the records parsed from JSON values, one per value so that its users share one parse."""

    text_paths: list[str] = field(default_factory=list)
    json_paths: list[str] = field(default_factory=list)
    d: Dialect = field(default_factory=Dialect)
    shapes: dict[str, tuple[str, list[str], Shape]] = field(default_factory=dict)  # base -> placeholder, keys, shape
    nonce: str = field(default_factory=lambda: uuid.uuid4().hex)

    def ref(self, path: str, as_text: bool) -> str:
        paths, col = (self.text_paths, "_t") if as_text else (self.json_paths, "_j")
        if path not in paths:
            paths.append(path)
        return self.d.element(f"_r.{col}", str(paths.index(path) + 1))

    def shape(self, base: str, keys: list[str], d: Dialect) -> tuple[str, Shape]:
        """The placeholder for the structure of the records at ``base`` (after ``keys``) and their shape."""
        key = base + "\x00" + "\x00".join(keys)
        if key not in self.shapes:
            self.shapes[key] = (d.literal(f"medml-shape-{self.nonce}-{len(self.shapes)}"), keys, Shape(True))
        token, _, shape = self.shapes[key]
        return token, shape

    def finish(self, sql: str, d: Dialect) -> str:
        """The SQL with each shape's placeholder replaced by its structure, now that all members are known."""
        for token, keys, shape in self.shapes.values():
            spec = shape.spec()
            for k in reversed(keys):
                spec = {k: spec}
            sql = sql.replace(token, d.json_shape(spec))
        return sql


@dataclass
class Scope:
    """What a FHIRPath expression is evaluated against."""

    d: Dialect
    this: Val
    root: Val
    row_index: str
    constants: dict[str, Literal]
    batch: Batch
    key_sql: str
    counter: list[int]

    def fresh(self) -> str:
        self.counter[0] += 1
        return f"_v{self.counter[0]}"

    def at(self, this: Val, row_index: str | None = None) -> Scope:
        return replace(self, this=this, row_index=self.row_index if row_index is None else row_index)


def _empty() -> Val:
    return Val("NULL", False, "json")


def _nonnull(d: Dialect, lst: str, s: Scope) -> str:
    z = s.fresh()
    return d.filter(lst, z, f"{z} IS NOT NULL")


def materialize(v: Val, s: Scope, as_text: bool = False) -> Val:
    """A pending path turned into SQL: JSON (or text when ``as_text``), a list where the path has wildcards."""
    d = s.d
    if v.shape is not None:
        return materialize(json_of(v), s, as_text)
    if v.choice is not None:
        return _choice_value(v, s, as_text)
    if v.path is None:
        if as_text and v.kind == "json":
            if v.many:
                z = s.fresh()
                return Val(d.transform(v.sql, [z], d.json_to_text(z)), True, "str", v.ftype)
            return Val(d.json_to_text(v.sql), False, "str", v.ftype)
        return v
    kind = "str" if as_text else "json"
    path, many = "$" + v.path, "[*]" in v.path or v.base_many
    if v.base_many:
        z = s.fresh()
        inner = z if not v.path and not as_text else d.json_path(z, path, as_text)
        sql = (
            d.flatten(d.transform(v.sql, [z], inner))
            if "[*]" in v.path
            else _nonnull(d, d.transform(v.sql, [z], inner), s)
        )
    elif v.root and v.path:
        prefix, star, rest = path.partition("[*]")
        if star:
            sql = d.json_path(s.batch.ref(prefix, d.text_is_json), "$[*]" + rest, as_text)
        else:
            # An object's text is valid JSON: one multi-path text extraction serves it; primitives need JSON.
            complex_known = v.ftype is not None and el.kind_of(v.ftype) == "json"
            sql = s.batch.ref(prefix, as_text or (complex_known and d.text_is_json))
    elif not v.path:
        sql = d.json_to_text(v.sql) if as_text else v.sql
    else:
        sql = d.json_path(v.sql, path, as_text)
    if many:  # a missing base gives NULL, FHIRPath the empty collection
        sql = f"coalesce({sql}, {d.list_of([], 'VARCHAR' if as_text else 'JSON')})"
    return Val(sql, many, kind, v.ftype)


def _choice_value(v: Val, s: Scope, as_text: bool) -> Val:
    assert v.choice is not None
    parent, name = v.choice
    if parent.shape is not None:
        parent = replace(json_of(parent), ftype=parent.ftype)
    types = el.choice_types(parent.ftype, name) or []
    alts = [materialize(member(parent, name + t[0].upper() + t[1:], s), s, as_text) for t in types]
    if not alts:
        return _empty()
    if any(a.many for a in alts):
        return Val(s.d.concat(*[as_list(a, s).sql for a in alts]), True, alts[0].kind)
    return Val(f"coalesce({', '.join(a.sql for a in alts)})", False, alts[0].kind)


def as_list(v: Val, s: Scope) -> Val:
    """The value as a list (empty for a missing single value)."""
    v = materialize(v, s)
    if v.many:
        return v
    if v.sql == "NULL":
        return Val(s.d.list_of([], "JSON"), True, v.kind, v.ftype)
    return Val(_nonnull(s.d, s.d.list_of([v.sql]), s), True, v.kind, v.ftype)


def typed(v: Val, kind: str, s: Scope) -> Val:
    """The value converted to a SQL kind ('str', 'bool', 'int', 'num', or 'json' to keep JSON)."""
    d = s.d
    if kind == "json":
        return materialize(v, s)
    if v.kind == kind and v.path is None and v.choice is None:
        return v
    if v.kind in ("json",) or v.path is not None or v.choice is not None:
        v = materialize(v, s, as_text=True)
    if kind == "str" or v.kind == kind:
        return replace(v, kind=kind) if kind == "str" else v
    sql_type = d.sql_type(None, kind)
    if v.many:
        return Val(d.cast(v.sql, d.list_type(sql_type)), True, kind, v.ftype)
    return Val(d.cast(v.sql, sql_type), False, kind, v.ftype)


def single(v: Val, s: Scope) -> Val:
    """A single value: the only item of a list, NULL for none or several."""
    if v.shape is not None:
        v = materialize(v, s)
    if not v.many:
        return v
    d = s.d
    return Val(f"CASE WHEN {d.length(v.sql)} = 1 THEN {d.element(v.sql, '1')} END", False, v.kind, v.ftype)


def kind_of(v: Val) -> str:
    return v.kind if v.kind != "json" else el.kind_of(v.ftype)


def member(v: Val, name: str, s: Scope) -> Val:
    """``v.name``: extends a pending JSONPath when the element map knows the element, else checks arrays at run time."""
    if v.shape is not None:
        if el.choice_types(v.ftype, name):  # ofType() picks a member of the record; other uses read the JSON
            return Val("", False, "json", None, choice=(v, name))
        rec = _record_member(v, name, s)
        if rec is not None:
            return rec
        v = replace(json_of(v), ftype=v.ftype)
    if v.choice is not None:
        v = materialize(v, s)
    if v.kind != "json" or (v.path is None and v.sql == "NULL"):
        return _empty()
    elem = el.child(v.ftype, name)
    if elem.repeats is None:
        if el.choice_types(v.ftype, name):
            return Val("", False, "json", None, choice=(v, name))
        return _runtime_member(v, name, s)
    step = "." + name if _IDENT.match(name) else "." + '"' + name.replace('"', '\\"') + '"'
    step += "[*]" if elem.repeats else ""
    if v.path is not None:
        return Val(v.sql, v.many or elem.repeats, "json", elem.context, v.path + step, v.base_many, v.root)
    return Val(v.sql, v.many or elem.repeats, "json", elem.context, step, v.many, False)


def records(v: Val, s: Scope) -> Val | None:
    """``v`` as a list of records when it is an array of complex elements the map knows, else None."""
    if v.shape is not None:
        return v if v.many else None
    if not (
        v.many
        and v.kind == "json"
        and v.path
        and v.choice is None
        and not v.base_many
        and v.path.endswith("[*]")
        and v.path.count("[*]") == 1
        and el.has_children(v.ftype)
    ):
        return None
    keys = v.path[1:-3].split(".")
    if not all(_IDENT.match(k) for k in keys):
        return None
    d = s.d
    base, keys = (s.batch.ref("$." + ".".join(keys), d.text_is_json), []) if v.root else (v.sql, keys)
    token, shape = s.batch.shape(base, keys, d)
    return Val(d.json_records(base, keys, token), True, "json", v.ftype, shape=shape, as_json=lambda: v)


def _record_member(v: Val, name: str, s: Scope) -> Val | None:
    """A member of a record (of each record of a list): text for a string-like primitive, a record for a complex
    element; None for anything else (numbers, booleans, choices, unknown elements), which is read from the JSON.

    Missing members are left out of lists.
    """
    assert v.shape is not None
    elem = el.child(v.ftype, name)
    if elem.repeats is None or elem.context is None or el.choice_types(v.ftype, name):
        return None
    complex_ = el.kind_of(elem.context) == "json"
    if not complex_ and (elem.context not in el.PRIMITIVES or el.kind_of(elem.context) != "str"):
        return None
    known = v.shape.members.get(name)
    if complex_:
        sub = known if isinstance(known, Shape) else Shape(elem.repeats)
        v.shape.members[name] = sub
    else:
        sub = None
        v.shape.members[name] = elem.repeats
    d = s.d
    kind = "json" if complex_ else "str"
    parent = v

    def as_json() -> Val:
        return member(json_of(parent), name, s)

    as_json_ = as_json if v.as_json is not None else None
    if not v.many and not elem.repeats:
        return Val(d.field(v.sql, name), False, kind, elem.context, shape=sub, as_json=as_json_)
    if v.many:
        z = s.fresh()
        lst = d.transform(v.sql, [z], d.field(z, name))
        lst = d.flatten(lst) if elem.repeats else lst
    else:
        lst = d.field(v.sql, name)
    if not (complex_ and elem.repeats):  # JSON nulls in an array of text; elements without the member
        lst = _nonnull(d, lst, s)
    if not v.many:  # a missing member of a single record; a list of records is never NULL
        lst = f"coalesce({lst}, {'[]' if complex_ else d.list_of([], 'VARCHAR')})"
    return Val(lst, True, kind, elem.context, shape=sub, as_json=as_json_)


def _runtime_member(v: Val, name: str, s: Scope) -> Val:
    """An element the map does not know (non-R4, ``_birthDate``): flatten it if it is an array in this row."""
    d = s.d
    v = materialize(v, s)
    x = s.fresh()
    key = "$." + (name if _IDENT.match(name) else '"' + name + '"')
    one = (
        f"CASE WHEN {d.json_type(x, key)} = 'ARRAY' THEN {d.json_path(x, key + '[*]', False)} "
        f"ELSE {_nonnull(d, d.list_of([d.json_path(x, key, False)]), s)} END"
    )
    lst = v.sql if v.many else d.list_of([v.sql])
    return Val(d.flatten(d.transform(lst, [x], one)), True, "json", None)


def compile_expr(node: Node, s: Scope) -> Val:
    """SQL for a FHIRPath syntax tree evaluated on ``s.this``."""
    if isinstance(node, Literal):
        if node.kind == "empty":
            return _empty()
        return Val(s.d.literal(node.value), False, _LIT_KIND[node.kind], _lit_ftype(node.kind))
    if isinstance(node, This):
        return s.this
    if isinstance(node, Env):
        return _env(node.name, s)
    if isinstance(node, Member):
        if isinstance(node.base, This) and s.this is s.root and node.name == s.root.ftype:
            return s.root
        return member(compile_expr(node.base, s), node.name, s)
    if isinstance(node, Index):
        return _index(compile_expr(node.base, s), compile_expr(node.index, s), s)
    if isinstance(node, Unary):
        operand = compile_expr(node.operand, s)
        kind = "int" if kind_of(operand) == "int" else "num"
        v = single(typed(operand, kind, s), s)
        return v if node.op == "+" else Val(f"(-{v.sql})", False, kind, _lit_ftype(kind))
    if isinstance(node, Binary):
        from medml.fhir.view._ops import binary

        return binary(node, s)
    assert isinstance(node, Call)
    from medml.fhir.view._functions import call

    return call(node, s)


def _lit_ftype(kind: str) -> str | None:
    return {
        "str": "string",
        "int": "integer",
        "num": "decimal",
        "bool": "boolean",
        "date": "date",
        "datetime": "dateTime",
        "time": "time",
    }.get(kind)


def _env(name: str, s: Scope) -> Val:
    if name == "rowIndex":
        return Val(s.row_index, False, "int", "integer")
    if name in ("resource", "rootResource", "context"):
        return s.root
    if name not in s.constants:
        raise InvalidViewError(f"%{name} is used but not defined", "add it to the view's constant list or fix the name")
    lit = s.constants[name]
    return Val(s.d.literal(lit.value), False, _LIT_KIND.get(lit.kind, "str"), _lit_ftype(lit.kind))


def _index(v: Val, i: Val, s: Scope) -> Val:
    d = s.d
    if (
        i.kind == "int"
        and i.sql.isdigit()
        and v.path is not None
        and v.path.endswith("[*]")
        and v.path.count("[*]") == 1
        and not v.base_many
    ):
        return replace(v, path=v.path[:-3] + f"[{i.sql}]", many=False)
    lst = as_list(v, s)
    return Val(d.element(lst.sql, f"({single(i, s).sql}) + 1"), False, lst.kind, lst.ftype)
