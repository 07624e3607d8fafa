"""A ViewDefinition to one set-based SQL query over the ``resources`` table.

Each selection structure becomes either plain columns (exactly one row per focus) or a SQL list of row structs:
``forEach`` is a ``list_transform`` over the focus list (its 1-based lambda index gives ``%rowIndex``), sibling
selects are a cross product of lists, ``unionAll`` a list concatenation, ``forEachOrNull`` adds a null row for an
empty focus, and ``repeat`` walks the tree breadth-first with ``list_reduce`` keeping a depth-first sort key. The
top level unnests the list, so the whole view runs inside the database, one pass over the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medml.fhir.view import _elements as el
from medml.fhir.view._dialect import Dialect, get_dialect
from medml.fhir.view._errors import RuntimeCheck
from medml.fhir.view._expr import Batch, Scope, Val, as_list, compile_expr, kind_of, typed
from medml.fhir.view._fhirpath import parse
from medml.fhir.view._types import ColumnType, check_union, column_type, where_condition
from medml.fhir.view._validate import check_structure, columns_of, constants, known_type

REPEAT_DEPTH = 32  # levels a repeat walks; deeper data raises an error rather than being cut silently


@dataclass(frozen=True)
class ViewColumn:
    name: str
    type: str  # FHIR type (declared, or inferred; 'string' when unknown)
    collection: bool


@dataclass(frozen=True)
class CompiledView:
    """The SQL of a view and its output columns, in the order the view declares them.

    ``runtime_checks`` are the errors the SQL raises on data that break a rule of the specification (several values
    for a column that is not a collection, a where path that is not boolean), so a runner can tell them from others.
    """

    sql: str
    columns: list[ViewColumn]
    resource: str
    runtime_checks: tuple[RuntimeCheck, ...] = ()


@dataclass
class _Rows:
    """Rows of a selection: ``cols`` hold the same value on every row, ``lst`` (when set) lists the varying rest.

    Keeping the constant columns out of the row structs lets the top level emit them as plain columns beside one
    ``unnest``, instead of building every struct with a copy of them.
    """

    cols: list[tuple[str, str]] = field(default_factory=list)  # (name, sql), the same on each row
    lst: str | None = None  # a SQL list of row structs holding the other columns; None: exactly one row
    names: list[str] = field(default_factory=list)  # all columns, in view order


@dataclass
class _Ctx:
    d: Dialect
    types: dict[str, str] = field(default_factory=dict)  # column name -> SQL type
    row_index_cols: set[str] = field(default_factory=set)
    meta: dict[str, ViewColumn] = field(default_factory=dict)
    col_types: dict[str, ColumnType] = field(default_factory=dict)
    checks: list[RuntimeCheck] = field(default_factory=list)


def _column(col: dict[str, Any], s: Scope, ctx: _Ctx) -> str:
    d = s.d
    v = compile_expr(parse(col["path"]), s)
    declared = col.get("type")
    ftype = (known_type(declared) if declared else None) or declared or (v.ftype if v.ftype in el.PRIMITIVES else None)
    kind = el.kind_of(ftype) if ftype else kind_of(v)
    kind = "str" if kind == "json" else kind
    sql_type = d.sql_type(ftype, kind)
    text = typed(v, "str", s) if v.kind == "json" or v.path is not None or v.choice is not None else v
    collection = bool(col.get("collection"))
    name = col["name"]
    ctx.col_types[name] = column_type(name, col["path"], declared, collection, v)
    if collection:
        sql = d.cast(as_list(text, s).sql, d.list_type(sql_type))
        ctx.types[name] = d.list_type(sql_type)
    else:
        one = text.sql
        if text.many:
            check = RuntimeCheck(
                f"column {name!r} ({col['path']}) has several values: "
                "multiple values found but not expected for column",
                "set collection: true on the column, or pick one value, e.g. with first()",
            )
            ctx.checks.append(check)
            one = (
                f"CASE WHEN {d.length(text.sql)} > 1 THEN {d.error(check.message)} ELSE {d.element(text.sql, '1')} END"
            )
        sql = one if (text.kind, sql_type) == ("str", d.sql_type(None, "str")) else d.cast(one, sql_type)
        ctx.types[name] = sql_type
    if col["path"].strip() == "%rowIndex":
        ctx.row_index_cols.add(name)
    inferred = ftype or {"bool": "boolean", "int": "integer", "num": "decimal"}.get(kind, "string")
    ctx.meta[name] = ViewColumn(name, inferred, collection)
    return sql


def _as_list(rows: _Rows, s: Scope) -> str:
    """All the rows as one SQL list of structs, fields in ``rows.names`` order (so unionAll branches line up)."""
    d = s.d
    if rows.lst is None:
        return d.list_of([d.struct(rows.cols)])
    if not rows.cols:
        return rows.lst
    x = s.fresh()
    const = dict(rows.cols)
    return d.transform(rows.lst, [x], d.struct([(n, const[n] if n in const else d.field(x, n)) for n in rows.names]))


def _combine(parts: list[_Rows], s: Scope) -> _Rows:
    """The cross product of the parts' rows, columns in part order; constant columns stay out of the list."""
    d = s.d
    names = [n for p in parts for n in p.names]
    cols = [c for p in parts for c in p.cols]
    varying = [p for p in parts if p.lst is not None]
    if len(varying) <= 1:
        return _Rows(cols=cols, lst=varying[0].lst if varying else None, names=names)
    const = {n for n, _ in cols}
    fields: list[tuple[str, str]] = []
    loops: list[tuple[str, str]] = []
    for p in varying:
        x = s.fresh()
        loops.append((x, p.lst or ""))
        fields += [(n, d.field(x, n)) for n in p.names if n not in const]
    expr = d.list_of([d.struct(fields)])
    for i, (x, lst) in enumerate(reversed(loops)):
        expr = d.transform(lst, [x], d.element(expr, "1") if i == 0 else expr)
        expr = expr if i == 0 else d.flatten(expr)
    return _Rows(cols=cols, lst=expr, names=names)


def _null_row(names: list[str], ctx: _Ctx) -> str:
    d = ctx.d
    return d.list_of(
        [d.struct([(n, "0" if n in ctx.row_index_cols else d.cast("NULL", ctx.types[n], strict=True)) for n in names])]
    )


def _repeat(paths: list[str], s: Scope) -> Val:
    """All nodes reachable through the paths, depth-first, as a JSON list (``%rowIndex`` is the position)."""
    d = s.d
    nodes = [parse(p) for p in paths]

    def children(node: Val) -> tuple[str, str | None]:
        lists, ftype = [], None
        for j, tree in enumerate(nodes):
            v = as_list(compile_expr(tree, s.at(node)), s)
            ftype = ftype or v.ftype
            c, ci = s.fresh(), s.fresh()
            key = d.list_of([f"CAST({j} AS BIGINT)", f"CAST({ci} AS BIGINT)"])
            lists.append(d.transform(v.sql, [c, ci], d.struct([("k", key), ("n", c)])))
        return d.concat(*lists), ftype

    first, ftype = children(s.this)
    st, it, p, q = s.fresh(), s.fresh(), s.fresh(), s.fresh()
    p_node = Val(d.field(p, "n"), False, "json", ftype, path="")
    grand, _ = children(p_node)
    step_f = d.flatten(
        d.transform(
            d.field(st, "f"),
            [p],
            d.transform(
                grand, [q], d.struct([("k", d.concat(d.field(p, "k"), d.field(q, "k"))), ("n", d.field(q, "n"))])
            ),
        )
    )
    step = d.struct([("f", step_f), ("acc", d.concat(d.field(st, "acc"), d.field(st, "f")))])
    node_type = d.struct_type([("k", d.list_type("BIGINT")), ("n", d.json_sql_type)])
    initial = d.struct([("f", first), ("acc", d.list_of([], node_type))])
    walked = d.reduce(d.range(REPEAT_DEPTH), st, it, step, initial)
    w, z = s.fresh(), s.fresh()
    msg = f"repeat {paths} nests deeper than {REPEAT_DEPTH} levels"
    body = (
        f"CASE WHEN {d.length(d.field(w, 'f'))} > 0 THEN {d.error(msg)} "
        f"ELSE {d.transform(d.sort_by(d.field(w, 'acc'), 'k'), [z], d.field(z, 'n'))} END"
    )
    return Val(d.element(d.transform(d.list_of([walked]), [w], body), "1"), True, "json", ftype)


def _select(sel: dict[str, Any], s: Scope, ctx: _Ctx) -> _Rows:
    d = s.d

    def body(scope: Scope) -> _Rows:
        parts: list[_Rows] = []
        cols = [(c["name"], _column(c, scope, ctx)) for c in sel.get("column", [])]
        if cols:
            parts.append(_Rows(cols=cols, names=[n for n, _ in cols]))
        parts += [_select(sub, scope, ctx) for sub in sel.get("select", [])]
        branches, branch_types = [], []
        for u in sel.get("unionAll", []):
            branches.append(_select(u, scope, ctx))
            branch_types.append({n: ctx.col_types[n] for n in branches[-1].names})
        if branches:
            check_union(branch_types, branches[0].names)
            parts.append(_Rows(lst=d.concat(*[_as_list(b, scope) for b in branches]), names=branches[0].names))
        return _combine(parts, scope) if parts else _Rows()

    if "repeat" in sel:
        foci = _repeat(sel["repeat"], s)
    elif "forEach" in sel or "forEachOrNull" in sel:
        foci = as_list(compile_expr(parse(sel["forEach"] if "forEach" in sel else sel["forEachOrNull"]), s), s)
    else:
        return body(s)
    x, i = s.fresh(), s.fresh()
    item = Val(x, False, "json", foci.ftype, path="") if foci.kind == "json" else Val(x, False, foci.kind, foci.ftype)
    inner = body(s.at(item, row_index=d.index0(i)))
    if inner.lst is None:
        lst = d.transform(foci.sql, [x, i], d.struct(inner.cols))
    else:
        lst = d.flatten(d.transform(foci.sql, [x, i], _as_list(inner, s)))
    if "forEachOrNull" in sel:
        lst = f"(CASE WHEN {d.length(foci.sql)} = 0 THEN {_null_row(inner.names, ctx)} ELSE {lst} END)"
    return _Rows(lst=lst, names=inner.names)


def compile_view(view: dict[str, Any], *, dialect: str = "duckdb", table: str = "resources") -> CompiledView:
    """Compile a ViewDefinition to one SQL query over ``table`` (resource_type, id, resource JSON)."""
    check_structure(view)
    d = get_dialect(dialect)
    resource = view["resource"]
    batch = Batch(d=d)
    root = Val("_r._res", False, "json", resource, path="", root=True)
    scope = Scope(d, root, root, "0", constants(view), batch, "_r._key", [0])
    ctx = _Ctx(d)
    top = {"select": view["select"]}
    rows = _select(top, scope, ctx)
    conds = [
        f"coalesce({where_condition(w['path'], compile_expr(parse(w['path']), scope), scope, ctx.checks)}, false)"
        for w in view.get("where", [])
    ]
    names = columns_of(top, [])
    extracts = ["r.id AS _key", "r.resource AS _res", *d.extra_extracts()]  # the planner prunes unused ones
    if batch.text_paths:
        extracts.append(d.json_paths("r.resource", batch.text_paths, True) + " AS _t")
    if batch.json_paths:
        extracts.append(d.json_paths("r.resource", batch.json_paths, False) + " AS _j")
    source = (
        f"SELECT {', '.join(extracts)} FROM {d.source(table)} WHERE r.resource_type = {d.literal(resource)}{d.fence()}"
    )
    where = f" WHERE {' AND '.join(conds)}" if conds else ""
    cols = dict(rows.cols)
    if rows.lst is None:
        out = ", ".join(f"{cols[n]} AS {d.quote(n)}" for n in names)
        sql = f"SELECT {out} FROM ({source}) AS _r{where}"
    else:
        alias = {n: f"_c{k}" for k, n in enumerate(n for n in names if n in cols)}
        inner = [f"{cols[n]} AS {a}" for n, a in alias.items()] + [d.unnest_rows(rows.lst, "_row")]
        out = ", ".join(f"{'_u.' + alias[n] if n in alias else d.field('_u._row', n)} AS {d.quote(n)}" for n in names)
        sql = f"SELECT {out} FROM (SELECT {', '.join(inner)} FROM ({source}) AS _r{where}) AS _u"
    return CompiledView(batch.finish(sql, d), [ctx.meta[n] for n in names], resource, tuple(dict.fromkeys(ctx.checks)))


def validate_view(view: dict[str, Any]) -> None:
    """Raise :class:`InvalidViewError` with the reason when a ViewDefinition is not valid; otherwise return None.

    Checks what the specification requires (the model's elements and invariants, constants of their declared types,
    unique column names, unionAll branches with the same columns of the same types, column types that fit their paths,
    where paths that give booleans) and what this engine needs to run it (FHIRPath syntax, supported functions).
    docs/sql-on-fhir-requirements.csv lists each rule with its source, the code that enforces it and its test.
    """
    compile_view(view)
