"""SMART App Launch 2.0 scopes (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html), parsed.

A clinical scope is ``patient|user|system`` ``/`` a FHIR R4 resource type or ``*`` ``.`` permissions, and
optionally ``?`` and ``param=value`` pairs joined by ``&`` that narrow it (``patient/Observation.rs?category=
http://terminology.hl7.org/CodeSystem/observation-category|laboratory``). Permissions are a non-empty subsequence
of ``cruds`` in that order (create, read, update, delete, search); SMART 1.0's ``read``, ``write`` and ``*`` are
read as ``rs``, ``cud`` and ``cruds``, as the specification says servers should. Anything else after the dot
(``.dus``, ``.rd`` for ``.read``) is refused rather than guessed at: the specification warns that a lenient
reading grants what was never asked for.

The other scopes: ``openid``, ``fhirUser``, ``profile``, ``launch``, ``launch/<context>`` (lower case, e.g.
``launch/patient``, ``launch/imagingstudy``), ``offline_access``, ``online_access``; extensions (a full URI, or a
name starting with ``__``); and the URI form of any scope (``http://smarthealthit.org/fhir/scopes/patient/*.r``,
``http://openid.net/specs/openid-connect-core-1_0#openid``), read as the scope it stands for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from medml.errors import MedmlError
from medml.fhir._r4types import R4_RESOURCE_TYPES

PERMISSIONS = "cruds"
INTERACTIONS = {"create": "c", "read": "r", "update": "u", "delete": "d", "search": "s"}
V1_PERMISSIONS = {"read": "rs", "write": "cud", "*": "cruds"}
CONTEXTS = ("patient", "user", "system")
SCOPE_URI = "http://smarthealthit.org/fhir/scopes/"
OPENID_URI = "http://openid.net/specs/openid-connect-core-1_0#"
IDENTITY = frozenset({"openid", "fhirUser", "profile"})
REFRESH = frozenset({"offline_access", "online_access"})
_FIX = (
    "write a SMART scope: patient|user|system/<Type or *>.<subset of cruds in that order>[?param=value&...], "
    "launch, launch/<context>, openid, fhirUser, offline_access, online_access, or an extension (a URI or __name)"
)
_CLINICAL = re.compile(r"^(?P<context>[a-z]+)/(?P<type>[A-Za-z]+|\*)\.(?P<permissions>[^?]*)(?:\?(?P<query>.*))?$")
_LAUNCH = re.compile(r"^launch/[a-z][a-z0-9-]*$")
_PARAM = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-.:]*$")


class ScopeError(MedmlError):
    """A scope that is not SMART App Launch 2.0 syntax (the token's or the configuration's)."""


Kind = Literal["clinical", "identity", "launch", "launch-context", "refresh", "extension"]


@dataclass(frozen=True)
class Scope:
    """One scope: its kind and, for a clinical scope, context, resource type, permissions and query."""

    text: str
    kind: Kind
    context: str = ""  # patient, user or system
    resource_type: str = ""  # a resource type or "*"
    permissions: frozenset[str] = field(default_factory=frozenset)
    query: tuple[tuple[str, str], ...] = ()
    v1: bool = False  # written in SMART 1.0's .read/.write/.* form
    launch_context: str = ""  # launch/<this>

    def allows(
        self, context: str, resource_type: str, interaction: str, params: Mapping[str, str] | None = None
    ) -> bool:
        """Whether this scope grants ``interaction`` (create, read, update, delete, search, or its letter) on
        ``resource_type`` in ``context``. A scope narrowed by a query grants only a request that carries each of
        its ``param=value`` pairs (``params``)."""
        if self.kind != "clinical" or self.context != context:
            return False
        if self.resource_type not in ("*", resource_type):
            return False
        letter = INTERACTIONS.get(interaction, interaction)
        if letter not in self.permissions:
            return False
        given = params or {}
        return all(given.get(k) == v for k, v in self.query)


def _bad(text: str, why: str) -> ScopeError:
    shown = text if len(text) <= 80 else text[:77] + "..."
    return ScopeError(f"scope {shown!r} {why}", _FIX)


def _permissions(text: str, raw: str) -> tuple[frozenset[str], bool]:
    if raw in V1_PERMISSIONS:
        return frozenset(V1_PERMISSIONS[raw]), True
    if not raw:
        raise _bad(text, "has no permissions after the dot")
    position = -1
    for letter in raw:
        at = PERMISSIONS.find(letter)
        if at < 0 or at <= position:
            raise _bad(
                text,
                f"has permissions {raw!r}: they must be letters of 'cruds' in that order, each once "
                "(or SMART 1.0's read, write or *)",
            )
        position = at
    return frozenset(raw), False


def _query(text: str, raw: str) -> tuple[tuple[str, str], ...]:
    if not raw:
        raise _bad(text, "ends with '?' and no param=value")
    pairs = []
    for part in raw.split("&"):
        name, eq, value = part.partition("=")
        if not eq or not _PARAM.match(name) or not value:
            raise _bad(text, f"has {part!r} in its query: each item must be param=value, joined by &")
        pairs.append((name, value))
    return tuple(pairs)


def parse_scope(text: str) -> Scope:
    """One scope; :class:`ScopeError` naming what is wrong for anything that is not SMART 2.0 syntax."""
    if not isinstance(text, str) or not text or any(c.isspace() for c in text):
        raise _bad(str(text), "is empty or holds white space: give one scope (a scope string splits on spaces)")
    if text.startswith(SCOPE_URI):
        return replace(parse_scope(text[len(SCOPE_URI) :]), text=text)
    if text.startswith(OPENID_URI):
        name = text[len(OPENID_URI) :]
        if name not in IDENTITY:
            raise _bad(text, f"names {name!r}, not an OpenID Connect scope SMART uses (openid, fhirUser, profile)")
        return Scope(text, "identity")
    if text in IDENTITY:
        return Scope(text, "identity")
    if text in REFRESH:
        return Scope(text, "refresh")
    if text == "launch":
        return Scope(text, "launch")
    if text.startswith("launch/"):
        if not _LAUNCH.match(text):
            raise _bad(text, "is a launch context scope but not lower case letters (e.g. launch/patient)")
        return Scope(text, "launch-context", launch_context=text[len("launch/") :])
    if text.startswith("__") and len(text) > 2:
        return Scope(text, "extension")
    if re.match(r"^[a-z][a-z0-9+.\-]*://", text):
        return Scope(text, "extension")
    m = _CLINICAL.match(text)
    if m is None:
        raise _bad(text, "is not a SMART scope")
    context, resource_type = m.group("context"), m.group("type")
    if context not in CONTEXTS:
        raise _bad(text, f"starts with {context!r}: a clinical scope starts with patient/, user/ or system/")
    if resource_type != "*" and resource_type not in R4_RESOURCE_TYPES:
        raise _bad(text, f"names {resource_type!r}, not a FHIR R4 resource type (or * for all)")
    permissions, v1 = _permissions(text, m.group("permissions"))
    query = _query(text, m.group("query")) if m.group("query") is not None else ()
    return Scope(text, "clinical", context, resource_type, permissions, query, v1)


@dataclass(frozen=True)
class Scopes:
    """A granted scope string (space-separated), parsed."""

    scopes: tuple[Scope, ...]

    def allows(
        self, context: str, resource_type: str, interaction: str, params: Mapping[str, str] | None = None
    ) -> bool:
        """Whether any scope grants the interaction (scopes are OR'd; ``.rs`` equals ``.r`` plus ``.s``)."""
        return any(s.allows(context, resource_type, interaction, params) for s in self.scopes)

    def has(self, kind: Kind) -> bool:
        return any(s.kind == kind for s in self.scopes)


def parse_scopes(text: str | Iterable[str]) -> Scopes:
    """A scope string (space-separated, as in a token's ``scope`` claim) or a list of scopes; the empty string
    grants nothing. The first bad scope is the error."""
    items = text.split() if isinstance(text, str) else list(text)
    return Scopes(tuple(parse_scope(s) for s in items))


__all__ = ["INTERACTIONS", "PERMISSIONS", "Scope", "ScopeError", "Scopes", "parse_scope", "parse_scopes"]
