"""The walk of a resource in which no FHIRPath-evaluated rule selected a node (every Observation, Encounter and
Claim of a Safe Harbor run): what the general walk does to each JSON key, worked out once per position, rule in
force and key, and kept in a table on the position.

In such a resource the rule that wins a node depends on its position and the rule inherited from its parent alone,
so a key's treatment (leave it, remove it, hash it, another method, walk its objects) is a table look-up; only the
unusual keys (a ``_x`` companion, a list of primitives, a nested resource, a ``where(...)`` rule, the root ``id``)
go to the general :meth:`Anonymizer._key`, so the output is the general walk's, byte for byte
(``tests/deid/test_deid_fast.py`` compares the two on Synthea and PhysioNet).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medml.deid._apply import CRYPTOHASH, REDACT, SUBSTITUTE, RunState
from medml.deid._fhirpath import InvalidElementError
from medml.deid._model import DATE_TYPES
from medml.deid._plan import (
    COMPLEX,
    HASH,
    INF,
    KEEP,
    PHASE,
    PLAIN_REDACT,
    PRIMITIVE,
    SKIP,
    SUBSTITUTE_TEXT,
    Plan,
    Position,
)
from medml.deid._substitute import substitute_text

if TYPE_CHECKING:
    from medml.deid._engine import Anonymizer

# what the general walk does to a key: the primitive cases first (below _F_SKIP), then the others
_F_NONE, _F_REDACT, _F_HASH, _F_SUBSTITUTE, _F_SHIFT, _F_OTHER, _F_SKIP, _F_COMPLEX, _F_GENERAL = range(9)
_CODES = {KEEP: _F_NONE, PLAIN_REDACT: _F_REDACT, SUBSTITUTE_TEXT: _F_SUBSTITUTE, HASH: _F_HASH}
_NO_DYN: dict[tuple[int, str, int], int] = {}
_TOP = -(1 << 40)  # + the rule in force: the key of a top-level resource's root table, whose id is done first
Entry = tuple[int, Position, int, Any]


class Table(dict[str, Entry]):
    """JSON key -> what it gets, for the children of the nodes at ``pos`` with rule ``inherited`` in force."""

    __slots__ = ("inherited", "pos")

    def __init__(self, pos: Position, inherited: int) -> None:
        super().__init__()
        self.pos = pos
        self.inherited = inherited


def table_of(pos: Position, inherited: int) -> Table:
    table: Table | None = pos.tables.get(inherited)
    if table is None:
        table = pos.tables[inherited] = Table(pos, inherited)
    return table


class FastWalk:
    """The table-driven walk of one :class:`Anonymizer`'s resources (see the module's docstring)."""

    def __init__(self, engine: Anonymizer) -> None:
        self.engine = engine
        self.rules = engine.rules
        self.methods = engine.methods
        p = engine.params
        self.patient_shift = p.date_shift_scope == "patient" and p.date_shift_fixed_offset is None

    def resource(
        self,
        node: dict[str, Any],
        pos: Position,
        inherited: int,
        plan: Plan,
        run: RunState,
        ops: list[int],
        depth: int,
        top_level: bool,
    ) -> None:
        """Process a JSON object's children, as :meth:`Anonymizer._walk` does where no rule is evaluated."""
        if not (top_level and "id" in node):
            self.walk(node, table_of(pos, inherited), plan, run, ops, depth)
            return
        self._root_id(node, table_of(pos, inherited), plan, run, ops, depth)  # the date-shift prefix of the rest
        top = pos.tables.get(_TOP + inherited)
        if top is None:
            top = pos.tables[_TOP + inherited] = Table(pos, inherited)
            top["id"] = (_F_SKIP, pos, inherited, None)  # done
        self.walk(node, top, plan, run, ops, depth)

    def _root_id(
        self, node: dict[str, Any], table: Table, plan: Plan, run: RunState, ops: list[int], depth: int
    ) -> None:
        """A top-level resource's id, and what the run notes of it (the id the resource date-shift scope reads)."""
        entry = table.get("id") or self._entry(table, "id", plan)
        code, child, w, extra = entry
        value = node["id"]
        if child.companion_key not in node and type(value) is not list:
            if code == _F_NONE and w >= INF:
                return
            if code == _F_HASH and type(value) is str and value:
                h = extra.get(value)
                node["id"] = h = h if h is not None else self.methods.hash_value(value, child)
                ops[0] |= CRYPTOHASH
                run.root_id_winner = w
                run.root_id_final = h
                return
        self.engine._key(node, "id", child, plan, table.inherited, _NO_DYN, run, ops, depth, True)

    def walk(self, node: dict[str, Any], table: Table, plan: Plan, run: RunState, ops: list[int], depth: int) -> None:
        """The children of a JSON object below a resource's root (and the root's, but its id)."""
        lost: list[Position] | None = None  # required elements the rules emptied
        for key in list(node):
            entry = table.get(key)
            if entry is None:
                entry = self._entry(table, key, plan)
            code, child, w, extra = entry
            if code == _F_COMPLEX:
                value = node[key]
                if type(value) is list:
                    emptied = False
                    for item in value:
                        if type(item) is not dict:
                            raise InvalidElementError(f"{child.path} must hold JSON objects, not {item!r}")
                        self.walk(item, extra, plan, run, ops, depth)
                        if not item:
                            emptied = True
                    if emptied:
                        kept = [i for i in value if i]
                        if kept:
                            node[key] = kept
                            continue
                        del node[key]
                        if child.required:
                            lost = [*lost, child] if lost else [child]
                    continue
                if type(value) is not dict:
                    raise InvalidElementError(f"{child.path} must be a JSON object, not {value!r}")
                if child.repeats:
                    node[key] = [value]
                self.walk(value, extra, plan, run, ops, depth)
                if not value:
                    del node[key]
                    if child.required:
                        lost = [*lost, child] if lost else [child]
                continue
            if code < _F_SKIP:
                value = node[key]
                if type(value) is not list and child.companion_key not in node:
                    if code == _F_NONE:
                        continue
                    if code == _F_REDACT:
                        if value is not None and value != "":
                            del node[key]
                            ops[0] |= REDACT
                            if child.required:
                                lost = [*lost, child] if lost else [child]
                        continue
                    if code == _F_HASH and type(value) is str and value:
                        h = extra.get(value)
                        node[key] = h if h is not None else self.methods.hash_value(value, child)
                        ops[0] |= CRYPTOHASH
                        continue
                    if code == _F_SUBSTITUTE:
                        node[key] = extra
                        ops[0] |= SUBSTITUTE
                        continue
                    if value is None:
                        continue
                    if code == _F_SHIFT and type(value) is str and value:
                        new = self.methods.shift_for_patient(value, child.type, run.patient, ops)
                    else:
                        new = self.methods.apply(value, child, self.rules[w % PHASE], w, run, ops, depth)
                    if new is None:
                        del node[key]
                        if child.required:
                            lost = [*lost, child] if lost else [child]
                    elif new is not value:
                        node[key] = new
                    continue
            elif code == _F_SKIP:
                continue
            gone = self.engine._key(node, key, child, plan, table.inherited, _NO_DYN, run, ops, depth, False)
            if gone is not None:
                lost = [*lost, gone] if lost else [gone]
        if lost:
            self.engine.restore_required(node, lost)

    def _entry(self, table: Table, key: str, plan: Plan) -> Entry:
        """What the general walk does to ``key`` under the table's position and rule, as a table entry."""
        pos, inherited = table.pos, table.inherited
        child = pos.children.get(key)
        if child is None:
            child = self.engine._child(plan, pos, key)  # raises where the key is not R4, every time
        static = child.static
        w = static if static < inherited else inherited
        entry: Entry = (_F_GENERAL, child, w, None)
        if child.kind == SKIP:
            entry = (_F_SKIP, child, w, None)
        elif child.conditional:
            pass
        elif child.kind == PRIMITIVE:
            if w >= INF:
                entry = (_F_NONE, child, w, None)
            else:
                action = child.actions.get(w)
                if action is None:
                    action = self.engine._action(child, w)
                code = _CODES.get(action, _F_OTHER)
                rule = self.rules[w % PHASE]
                if code == _F_SUBSTITUTE:
                    entry = (_F_SUBSTITUTE, child, w, substitute_text(rule.replace_with))
                    if w == inherited:
                        entry = (_F_NONE, child, w, None)
                elif code == _F_HASH:
                    entry = (_F_HASH, child, w, self.methods.hash_memo(child))
                elif code == _F_OTHER and rule.method == "dateshift" and child.type in DATE_TYPES:
                    entry = (_F_SHIFT if self.patient_shift else _F_OTHER, child, w, None)
                else:
                    entry = (code, child, w, None)
        elif child.kind == COMPLEX:
            method = self.rules[w % PHASE].method if w < INF else ""
            if method != "generalize" and not (method == "substitute" and w != inherited):
                entry = (_F_COMPLEX, child, w, table_of(child, w))
        table[key] = entry
        return entry


__all__ = ["FastWalk", "Table"]
