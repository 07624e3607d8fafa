"""The substitute method: an element replaced by ``replaceWith``, keeping what earlier rules already processed.

Substitution is the one method that changes a subtree's shape, so it works on a small tree of its own (converted
from the JSON and back). The anonymizer's semantics: children named in the replacement are replaced pairwise (a
child an earlier rule processed keeps its place and its value), extra replacement children are added, children the
replacement does not name are removed unless an earlier rule processed them or something beneath them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from medml.deid._model import RESOURCE, element

if TYPE_CHECKING:
    from medml.deid._config import Rule
    from medml.deid._engine import Anonymizer
    from medml.deid._plan import Plan, Position


class _Node:
    __slots__ = ("keep", "key", "kids", "pos", "value", "visited")

    def __init__(self, key: str, value: Any, pos: Position | None, visited: bool = False) -> None:
        self.key = key
        self.value = value
        self.pos = pos
        self.visited = visited
        self.keep = visited
        self.kids: list[_Node] = []


_DUMMY = _Node("", None, None)


def substitute(
    engine: Anonymizer,
    value: Any,
    companion: dict[str, Any] | None,
    pos: Position,
    rule: Rule,
    winner: int,
    plan: Plan,
    dyn: dict[tuple[int, str, int], int],
    ops: list[int],
) -> Any:
    """The substituted element: a dict for a complex element, (value, companion) for a primitive one."""
    from medml.deid._apply import SUBSTITUTE
    from medml.deid._errors import DeidProcessingError

    def build(key: str, v: Any, comp: Any, p: Position, visited: bool) -> _Node:
        node = _Node(key, None if isinstance(v, dict) else v, p, visited)
        source = v if isinstance(v, dict) else comp if isinstance(comp, dict) else None
        if source is not None:
            owner = id(source)
            for k in source:
                if k in ("resourceType", "fhir_comments") or (k[0] == "_" and k[1:] in source):
                    continue
                name = k[1:] if k[0] == "_" else k
                cpos = p.children.get(name) or engine._child(plan, p, name)
                values = source.get(name)
                comps = source.get("_" + name) if cpos.primitive else None
                if isinstance(values, list) or isinstance(comps, list):
                    n = len(values) if isinstance(values, list) else len(comps or [])
                    for i in range(n):
                        vi = values[i] if isinstance(values, list) else None
                        ci = comps[i] if isinstance(comps, list) and i < len(comps) else None
                        seen = min(cpos.static, dyn.get((owner, name, i), 1 << 30)) < winner
                        node.kids.append(build(name, vi, ci, cpos, seen))
                else:
                    seen = min(cpos.static, dyn.get((owner, name, -1), 1 << 30)) < winner
                    node.kids.append(build(name, values, comps, cpos, seen))
        node.keep = node.visited or any([k.keep for k in node.kids])
        return node

    def replacement(v: Any, p: Position) -> _Node:
        if p.primitive:
            return _Node("", substitute_text(v), p)
        if isinstance(v, str):
            try:
                v = orjson.loads(v)
            except orjson.JSONDecodeError:
                v = None
        if v is None:
            v = {}
        if not isinstance(v, dict):
            raise DeidProcessingError(
                f"rule {rule.index + 1} ({rule.path}): replaceWith for {p.path} ({p.type}) must be a JSON object",
                "give replaceWith as an object of the element's type",
            )
        return tree_of(v, p)

    def tree_of(v: dict[str, Any], p: Position) -> _Node:
        node = _Node("", None, p)
        for k, child in v.items():
            el = element(p.context, k)
            if el is None or el.type == RESOURCE:
                raise DeidProcessingError(
                    f"rule {rule.index + 1} ({rule.path}): replaceWith has {k!r}, which {p.type} does not have",
                    "give replaceWith the elements of the type it replaces",
                )
            cpos = p.children.get(k) or engine._child(plan, p, k)
            for item in child if isinstance(child, list) else [child]:
                kid = tree_of(item, cpos) if isinstance(item, dict) else _Node(k, item, cpos)
                kid.key = k
                node.kids.append(kid)
        return node

    def run(node: _Node, repl: _Node) -> None:
        if node.visited:
            return
        names = list(dict.fromkeys(k.key for k in repl.kids))
        for name in names:
            targets = [t for t in repl.kids if t.key == name]
            i = 0
            for kid in [k for k in node.kids if k.key == name]:
                if kid.visited:
                    i += 1
                elif i < len(targets):
                    run(kid, targets[i])
                    i += 1
                elif kid.keep:
                    run(kid, _DUMMY)
                else:
                    node.kids.remove(kid)
            node.kids.extend(targets[i:])
        for kid in [k for k in node.kids if k.key not in names]:
            if kid.visited:
                continue
            if kid.keep:
                run(kid, _DUMMY)
            else:
                node.kids.remove(kid)
        node.value = repl.value
        ops[0] |= SUBSTITUTE

    top = build(pos.name, value, companion, pos, False)
    run(top, replacement(rule.replace_with, pos))
    if pos.primitive:
        return top.value, _dict_of(top.kids) or None
    return _dict_of(top.kids)


def substitute_text(v: Any) -> str:
    """``replaceWith`` as the text the anonymizer puts in a primitive (its JSON token's string)."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, int | float):
        return str(v)
    return orjson.dumps(v).decode()


def _dict_of(kids: list[_Node]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    groups: dict[str, list[_Node]] = {}
    for kid in kids:
        groups.setdefault(kid.key, []).append(kid)
    for key, nodes in groups.items():
        pos = nodes[0].pos
        repeats = len(nodes) > 1 or (pos is not None and pos.repeats)
        if pos is not None and pos.primitive:
            values = [n.value for n in nodes]
            comps = [_dict_of(n.kids) or None for n in nodes]
            keep = [i for i in range(len(nodes)) if values[i] is not None or comps[i]]
            values, comps = [values[i] for i in keep], [comps[i] for i in keep]
            if not keep:
                continue
            if any(v is not None for v in values):
                out[key] = values if repeats else values[0]
            if any(comps):
                out["_" + key] = comps if repeats else comps[0]
        else:
            dicts = [d for d in (_dict_of(n.kids) for n in nodes) if d]
            if dicts:
                out[key] = dicts if repeats else dicts[0]
    return out


__all__ = ["substitute", "substitute_text"]
