"""The anonymization engine: a configuration's rules applied to FHIR R4 JSON in one walk of each resource.

The Microsoft anonymizer applies its rules in order, each to the nodes its path selects and all their descendants,
and a node that one rule has processed is left alone by the rules after it. So the rule that processes a node is
the *first* rule (lowest index) that selects it or any of its ancestors. This engine computes that winner during a
single walk of the JSON: rules whose path is an element path or ``nodesByType``/``nodesByName`` (with a child, a
type filter or a ``where(...)``: all of a Safe Harbor configuration) are matched from the walk's position (see
:mod:`medml.deid._plan`); other paths (unions, functions) are evaluated with FHIRPath on the resource before the
walk, on its original values, and matched by node. Each resource of a Bundle and each contained resource is
processed with its own rules, as the anonymizer does.
"""

from __future__ import annotations

import random
from datetime import date
from typing import Any

from medml.deid._apply import CRYPTOHASH, REDACT, SECURITY_LABELS, SUBSTITUTE, Methods, RunState, add_security
from medml.deid._config import DeidConfig, Rule
from medml.deid._errors import RAISE_FIX, DeidProcessingError, InvalidResourceError, RuleNotApplicableError
from medml.deid._fast import FastWalk
from medml.deid._fhirpath import FhirPathEvaluationError, InvalidElementError, Item, boolean, evaluate, resource_item
from medml.deid._model import DATE_TYPES, RESOURCE, element, required, resource_types
from medml.deid._patients import bundle_patient, patient_key
from medml.deid._plan import (
    COMPLEX,
    HASH,
    INF,
    KEEP,
    NESTED,
    ORPHAN_COMPANION,
    OTHER,
    PHASE,
    PLAIN_REDACT,
    PRIMITIVE,
    SKIP,
    SUBSTITUTE_TEXT,
    Plan,
    Position,
    classify,
    matches,
)
from medml.deid._substitute import substitute, substitute_text
from medml.errors import ConfigError

ROOT = (0, "", -1)
_NO_DYN: dict[tuple[int, str, int], int] = {}  # read only: no FHIRPath-evaluated rule selected anything
DATA_ABSENT_REASON = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"


class Anonymizer:
    """Apply a :class:`DeidConfig` to FHIR R4 resources (dicts, changed in place and returned).

    ``file_name``/``folder_name`` feed ``dateShiftScope`` file and folder. ``today`` fixes the date ages are counted
    from (Safe Harbor: over 89); ``seed`` makes perturbation repeatable (tests only: noise should be unpredictable).
    """

    def __init__(self, config: DeidConfig, *, today: date | None = None, seed: int | None = None) -> None:
        self.config = config
        self.params = config.parameters
        self.rules = {r.index: r for r in config.rules}
        self._statics = {r.index: classify(r) for r in config.rules}
        self._plans: dict[str, Plan] = {}
        rng: random.Random = random.Random(seed) if seed is not None else random.SystemRandom()
        self.methods = Methods(self.params, today or date.today(), rng)
        self._absent = self.params.required_data_absent_reason
        self._by_patient = self.params.date_shift_scope == "patient" and self.params.date_shift_fixed_offset is None
        self._fast: FastWalk | None = FastWalk(self)
        self._types = resource_types()
        for r in config.rules:
            if r.method == "substitute" and r.whole_resource:
                raise ConfigError(
                    f"{config.source}: rule {r.index + 1} ({r.path}) substitutes a whole resource",
                    "substitute elements of the resource instead",
                )

    # ------------------------------------------------------------------------------------------------ entry points

    def anonymize(self, resource: Any, *, file_name: str = "", folder_name: str = "") -> dict[str, Any]:
        """The de-identified resource (a Bundle's entries and contained resources each under their own rules).

        Raises InvalidResourceError for input that is not R4 and, with processingErrors ``raise``,
        DeidProcessingError; with ``skip`` a failing resource comes back emptied, labelled REDACTED.
        """
        if not isinstance(resource, dict):
            raise InvalidResourceError("the input is not a FHIR resource (a JSON object)", "give FHIR R4 JSON")
        rt = resource.get("resourceType")
        if not isinstance(rt, str) or rt not in self._types:
            raise InvalidResourceError(_not_r4(rt), "give FHIR R4 resources (STU3 and R5 types differ)")
        run = RunState(file_name, folder_name)
        try:
            ops = self._resource(resource, INF, 0, run)
        except InvalidElementError as e:
            raise InvalidResourceError(
                f"{_label(resource)} is not valid FHIR R4: {e}", "give FHIR R4 resources"
            ) from None
        except (DeidProcessingError, FhirPathEvaluationError) as e:
            if self.config.skip_processing_errors:
                return {"resourceType": rt, "meta": {"security": [dict(SECURITY_LABELS[0][1])]}}
            if isinstance(e, DeidProcessingError):
                raise
            raise DeidProcessingError(f"{_label(resource)}: {e}", RAISE_FIX) from None
        add_security(resource, ops)
        return resource

    # ---------------------------------------------------------------------------------------------------- plumbing

    def _plan(self, resource_type: str) -> Plan:
        plan = self._plans.get(resource_type)
        if plan is None:
            plan = self._plans[resource_type] = Plan(resource_type, self.config.rules, self._statics)
        return plan

    def _conditional(self, pos: Position, value: Any, owner: dict[str, Any], key: str, index: int, w: int) -> int:
        """The first ``nodesByType(...).where(...)`` rule before ``w`` whose condition holds on this node."""
        item = Item(value, pos.type, pos.name, pos.context, owner, key, index)
        for rule_index, condition in pos.conditional:
            if rule_index >= w:
                break
            try:
                if boolean(evaluate(condition, [item])):
                    return rule_index
            except FhirPathEvaluationError as e:
                rule = self.rules[rule_index]
                raise DeidProcessingError(
                    f"rule {rule_index + 1} ({rule.path}) cannot be evaluated at {pos.path}: {e}", RAISE_FIX
                ) from None
        return w

    def _absent_element(self) -> dict[str, Any]:
        """An element with only a data-absent-reason extension: what stays of a required element the rules
        emptied, so that the resource stays valid (medml's ``requiredElementsDataAbsentReason``)."""
        return {"extension": [{"url": DATA_ABSENT_REASON, "valueCode": self._absent}]}

    def _action(self, pos: Position, w: int) -> int:
        """What the rule ``w`` does to primitives at ``pos``, memoised: keep, plain redaction (removal),
        substitute, a hash (of an id or reference: memoised per value), or another method."""
        method = self.rules[w % PHASE].method
        plain_redact = (
            method == "redact"
            and pos.type not in DATE_TYPES
            and pos.name != "postalCode"
            and not (pos.type == "decimal" and pos.parent is not None and pos.parent.type == "Age")
        )
        if method == "keep":
            action = KEEP
        elif plain_redact:
            action = PLAIN_REDACT
        elif method == "substitute":
            action = SUBSTITUTE_TEXT
        elif method == "cryptohash":
            action = HASH
        else:
            action = OTHER
        pos.actions[w] = action
        return action

    def _child(self, plan: Plan, parent: Position, key: str) -> Position:
        """The position of a JSON key under ``parent``, made once and memoised there."""
        if key in ("resourceType", "fhir_comments"):
            pos = Position("", key, "", "", parent)
            pos.kind = SKIP
            parent.children[key] = pos
            return pos
        if key[:1] == "_":
            base = parent.children.get(key[1:]) or self._child(plan, parent, key[1:])
            if not base.primitive:
                raise InvalidElementError(f"{parent.context}.{key[1:]} is not a primitive, so {key!r} is not R4")
            pos = Position(base.type, base.name, base.context, base.path, parent)
            pos.kind = ORPHAN_COMPANION  # handled with its primitive, or alone where the primitive is absent
            pos.base = base
            parent.children[key] = pos
            return pos
        el = element(parent.context, key)
        if el is None:
            raise InvalidElementError(f"{parent.context} has no element {key!r}")
        path = f"{parent.path}.{el.name}" if parent.path else el.name
        pos = Position(el.type, el.name, el.context, path, parent)
        pos.primitive = el.primitive
        pos.repeats = el.repeats
        pos.name_key = key
        pos.companion_key = "_" + key
        pos.required = (
            bool(self._absent)
            and el.type != "xhtml"
            and key != "id"
            and not (key == "url" and parent.context == "Extension")  # XML attributes: they take no extension
            and required(parent.context, key)
        )
        pos.kind = PRIMITIVE if el.primitive else NESTED if el.type == RESOURCE else COMPLEX
        pos.static = min((s.index for s in plan.static if matches(s, pos)), default=INF)
        pos.conditional = tuple(
            (s.index, s.condition)
            for s in plan.static
            if s.index < pos.static
            and ((s.kind == "type_where" and s.a == pos.type) or (s.kind == "name_where" and s.a == pos.name))
        )
        parent.children[key] = pos
        return pos

    def _dynamic(self, plan: Plan, resource: dict[str, Any], alive: list[Any]) -> dict[tuple[int, str, int], int]:
        """The nodes FHIRPath-evaluated rules select, by location, with the first such rule for each.
        ``alive`` keeps their parent dicts referenced, so that no location (an id()) is reused while it is used."""
        found: dict[tuple[int, str, int], int] = {}
        root = resource_item(resource)
        for rule in plan.dynamic:
            try:
                items = evaluate(rule.tree, [root], root)
            except FhirPathEvaluationError as e:
                raise DeidProcessingError(
                    f"{_label(resource)}: rule {rule.index + 1} ({rule.path}) cannot be evaluated: {e}", RAISE_FIX
                ) from None
            for item in items:
                if item.value is resource:
                    loc = ROOT
                elif item.owner is not None:
                    loc = item.location
                    alive.append(item.owner)
                else:
                    continue
                if found.get(loc, INF) > rule.index:
                    found[loc] = rule.index
        return found

    # ------------------------------------------------------------------------------------------------------- walk

    def _resource(self, resource: dict[str, Any], inherited: int, depth: int, run: RunState) -> int:
        """Process one resource with its own rules; returns the operations done (for the security labels)."""
        rt = resource.get("resourceType")
        if not isinstance(rt, str) or rt not in self._types:
            raise InvalidElementError(_not_r4(rt))
        plan = self._plans.get(rt) or self._plan(rt)
        alive: list[Any] = []
        dyn = self._dynamic(plan, resource, alive) if plan.dynamic else _NO_DYN
        winner = min(inherited, plan.root.static, dyn.get(ROOT, INF))
        if winner < INF and self.rules[winner % PHASE].method == "generalize":
            raise RuleNotApplicableError(_not_primitive(self.rules[winner % PHASE], plan.root))
        ops = [0]
        if depth == 0:
            rid = resource.get("id")
            run.root_id = run.root_id_final = rid if isinstance(rid, str) else ""
        if not self._by_patient:
            self._walk(resource, plan.root, plan, winner, dyn, run, ops, depth, top_level=depth == 0)
            return ops[0]
        enclosing = run.patient
        # read before the walk: the walk hashes the references the key comes from
        key = patient_key(resource) or (bundle_patient(resource) if rt == "Bundle" else "")
        run.patient = key or enclosing or f"{rt}/{resource.get('id', '')}"
        try:
            self._walk(resource, plan.root, plan, winner, dyn, run, ops, depth, top_level=depth == 0)
        finally:
            run.patient = enclosing
        return ops[0]

    def _walk(
        self,
        node: dict[str, Any],
        pos: Position,
        plan: Plan,
        inherited: int,
        dyn: dict[tuple[int, str, int], int],
        run: RunState,
        ops: list[int],
        depth: int,
        top_level: bool = False,
    ) -> None:
        """Process a JSON object's children: key by key with :meth:`_key`, or, where no FHIRPath-evaluated rule
        selected anything in this resource, with the compiled tables of :mod:`medml.deid._fast` (the same result)."""
        if not dyn and self._fast is not None:
            self._fast.resource(node, pos, inherited, plan, run, ops, depth, top_level)
            return
        keys = list(node)
        if top_level and "id" in node:
            keys.remove("id")
            keys.insert(0, "id")  # its value is the date-shift prefix of everything after it
        children = pos.children
        lost: list[Position] | None = None  # required elements the rules emptied
        for key in keys:
            child = children.get(key)
            if child is None:
                child = self._child(plan, pos, key)
            gone = self._key(node, key, child, plan, inherited, dyn, run, ops, depth, top_level)
            if gone is not None:
                lost = [*lost, gone] if lost else [gone]
        if lost:
            self.restore_required(node, lost)

    def restore_required(self, node: dict[str, Any], lost: list[Position]) -> None:
        """The required elements the rules emptied, as data-absent-reason elements, where ``node`` stays."""
        if any(k != "resourceType" for k in node):
            for gone in lost:  # the element stays, so must its required parts: a data-absent-reason each
                absent = self._absent_element()
                if gone.primitive:
                    node[gone.companion_key] = [absent] if gone.repeats else absent
                else:
                    node[gone.name_key] = [absent] if gone.repeats else absent

    def _key(
        self,
        node: dict[str, Any],
        key: str,
        child: Position,
        plan: Plan,
        inherited: int,
        dyn: dict[tuple[int, str, int], int],
        run: RunState,
        ops: list[int],
        depth: int,
        top_level: bool,
    ) -> Position | None:
        """Process one key of a JSON object (every case); the required element it emptied, if any."""
        kind = child.kind
        if kind == SKIP:
            return None
        if kind == PRIMITIVE:
            gone: Position | None = None
            static = child.static
            w = static if static < inherited else inherited
            if not dyn and not child.conditional and child.companion_key not in node:
                value = node[key]
                if w >= INF or type(value) is list:
                    if type(value) is list:
                        self._primitives(node, key, value, child, plan, inherited, dyn, run, ops, depth)
                    return None
                action = child.actions.get(w)
                if action is None:
                    action = self._action(child, w)
                if action == KEEP:
                    pass
                elif action == PLAIN_REDACT:
                    if value is not None and value != "":
                        del node[key]
                        ops[0] |= REDACT
                        if child.required:
                            gone = child
                elif action == SUBSTITUTE_TEXT:
                    if w != inherited:  # a primitive without extensions: the replacement text, nothing to keep
                        node[key] = substitute_text(self.rules[w % PHASE].replace_with)
                        ops[0] |= SUBSTITUTE
                    return None
                elif action == HASH and type(value) is str and value:
                    node[key] = self.methods.hash_value(value, child)
                    ops[0] |= CRYPTOHASH
                elif value is not None:
                    new = self.methods.apply(value, child, self.rules[w % PHASE], w, run, ops, depth)
                    if new is None:
                        del node[key]
                        if child.required:
                            gone = child
                    elif new is not value:
                        node[key] = new
            elif self._primitives(node, key, node.get(key), child, plan, inherited, dyn, run, ops, depth):
                gone = child
            if top_level and key == "id":
                run.root_id_winner = min(w, dyn.get((id(node), "id", -1), INF) if dyn else INF)
                rid = node.get("id")
                run.root_id_final = rid if isinstance(rid, str) else ""
            return gone
        if kind == ORPHAN_COMPANION:  # "_x": on its own only without "x" (a primitive with only extensions)
            base = child.base
            if base.name_key not in node:
                self._primitives(node, base.name_key, None, base, plan, inherited, dyn, run, ops, depth)
            return None
        value = node[key]
        if kind == NESTED:
            self._nested(node, key, value, child, dyn, run, ops, depth)
            return None
        static = child.static
        if type(value) is list:
            items = value
            listed = True
        elif type(value) is dict:
            items = [value]
            listed = False
            if child.repeats:
                node[key] = items
                listed = True  # locations were read before the wrap: index -1
        else:
            raise InvalidElementError(f"{child.path} must be a JSON object, not {value!r}")
        emptied = False
        for i, item in enumerate(items):
            if type(item) is not dict:
                raise InvalidElementError(f"{child.path} must hold JSON objects, not {item!r}")
            w = static if static < inherited else inherited
            if dyn:
                d = dyn.get((id(node), key, i if value is items else -1), INF)
                if d < w:
                    w = d
            if child.conditional:
                w = self._conditional(child, item, node, key, i if value is items else -1, w)
            if w < INF:
                rule = self.rules[w % PHASE]
                method = rule.method
                if method == "generalize":
                    raise RuleNotApplicableError(_not_primitive(rule, child))
                if method == "substitute" and w != inherited:
                    self._walk(item, child, plan, w, dyn, run, ops, depth)
                    items[i] = substitute(self, item, None, child, rule, w, plan, dyn, ops)
                    emptied = emptied or not items[i]
                    continue
            self._walk(item, child, plan, w, dyn, run, ops, depth)
            if not item:
                emptied = True
        if emptied:
            kept = [i for i in items if i]
            if not kept:
                del node[key]
                if child.required:
                    return child
            elif listed:
                node[key] = kept
        elif not listed and items[0] is not node.get(key):
            node[key] = items[0]
        return None

    def _nested(
        self,
        node: dict[str, Any],
        key: str,
        value: Any,
        child: Position,
        dyn: dict[tuple[int, str, int], int],
        run: RunState,
        ops: list[int],
        depth: int,
    ) -> None:
        """Resources inside this one (Bundle entries, contained): each under its own rules. A rule of this
        resource that selects the nested one (``Bundle.entry.resource``) processes it first and outranks them."""
        listed = isinstance(value, list)
        for i, item in enumerate(value if listed else [value]):
            if not isinstance(item, dict):
                raise InvalidElementError(f"{child.path} must hold resources, not {item!r}")
            # the enclosing rules' recursion stops at a nested resource: only a rule that selects it reaches in
            w = min(child.static, dyn.get((id(node), key, i if listed else -1), INF) if dyn else INF)
            nested_ops = self._resource(item, w - PHASE if w < INF else INF, depth + 1, run)
            ops[0] |= nested_ops
            if key != "contained":
                add_security(item, nested_ops)

    def _primitives(
        self,
        node: dict[str, Any],
        key: str,
        value: Any,
        child: Position,
        plan: Plan,
        inherited: int,
        dyn: dict[tuple[int, str, int], int],
        run: RunState,
        ops: list[int],
        depth: int,
    ) -> bool:
        """Process a primitive element (or a list of them) with its ``_key`` companion; True where a required
        element was emptied."""
        ckey = "_" + key
        companion = node.get(ckey)
        node_id = id(node)
        if isinstance(value, list) or isinstance(companion, list):
            values = value if isinstance(value, list) else [value] * len(companion)  # type: ignore[arg-type]
            comps = companion if isinstance(companion, list) else [None] * len(values)
            for i in range(len(values)):
                w = min(inherited, child.static, dyn.get((node_id, key, i), INF) if dyn else INF)
                if child.conditional:
                    w = self._conditional(child, values[i], node, key, i, w)
                comp = comps[i] if i < len(comps) else None
                values[i], comps[i] = self._primitive(
                    values[i], comp, child, plan, w, w != inherited, dyn, run, ops, depth
                )
            keep = [i for i in range(len(values)) if values[i] is not None or comps[i]]
            if len(keep) != len(values):
                values = [values[i] for i in keep]
                comps = [comps[i] for i in keep]
            if any(v is not None for v in values):
                node[key] = values
            else:
                node.pop(key, None)
            if any(comps):
                node[ckey] = comps
            else:
                node.pop(ckey, None)
            return False
        w = min(inherited, child.static, dyn.get((node_id, key, -1), INF) if dyn else INF)
        if child.conditional:
            w = self._conditional(child, value, node, key, -1, w)
        if not isinstance(companion, dict):
            companion = None
        if w >= INF and companion is None:
            if isinstance(value, dict):
                raise InvalidElementError(f"{child.path} is a primitive but holds a JSON object")
            return False
        new, comp = self._primitive(value, companion, child, plan, w, w != inherited, dyn, run, ops, depth)
        if new is None:
            node.pop(key, None)
        else:
            node[key] = new
        if comp:
            node[ckey] = comp
        else:
            node.pop(ckey, None)
            return new is None and value is not None and child.required
        return False

    def _primitive(
        self,
        value: Any,
        companion: dict[str, Any] | None,
        pos: Position,
        plan: Plan,
        w: int,
        top: bool,
        dyn: dict[tuple[int, str, int], int],
        run: RunState,
        ops: list[int],
        depth: int,
    ) -> tuple[Any, dict[str, Any] | None]:
        """A primitive's new value and its ``_key`` companion (id, extensions), after the winning rule."""
        if isinstance(value, dict | list):
            raise InvalidElementError(f"{pos.path} is a primitive but holds {type(value).__name__}")
        if w < INF:
            rule = self.rules[w % PHASE]
            if rule.method == "substitute":
                if not top:
                    if companion is not None:
                        self._walk(companion, pos, plan, w, dyn, run, ops, depth)
                    return value, companion
                if companion is not None:
                    self._walk(companion, pos, plan, w, dyn, run, ops, depth)
                return substitute(self, value, companion, pos, rule, w, plan, dyn, ops)
            if value is not None:
                value = self.methods.apply(value, pos, rule, w, run, ops, depth)
        if companion is not None:
            self._walk(companion, pos, plan, w, dyn, run, ops, depth)
        return value, companion or None

    # ---------------------------------------------------------------------------------------------------- methods


def _label(resource: dict[str, Any]) -> str:
    """The resource named by its type only: its id may be an identifier, and messages end up in logs."""
    return f"a {resource.get('resourceType')} resource"


def _not_r4(rt: object) -> str:
    if not isinstance(rt, str) or not rt:
        return "the input has no resourceType: it is not a FHIR resource"
    return f"resourceType {rt!r} is not a FHIR R4 resource type"


def _not_primitive(rule: Rule, pos: Position) -> str:
    return (
        f"rule {rule.index + 1} ({rule.path}) generalizes {pos.path} of type {pos.type}: generalize applies only "
        "to primitive elements; point its path at primitive values"
    )


__all__ = ["DATA_ABSENT_REASON", "Anonymizer"]
