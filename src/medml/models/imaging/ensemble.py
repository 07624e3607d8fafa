"""A deep ensemble's networks kept as one flat state dict (``member<i>.<tensor>``), so the registry stores and loads
it like any single network's weights, and the way back to each member's state dict."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["MEMBER", "ensemble_state", "member_states"]

#: key prefix of each member's tensors in an ensemble's state dict: "member0.", "member1.", ...
MEMBER = "member"


def ensemble_state(states: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The state dicts of an ensemble's networks as one flat state dict (``member<i>.<tensor>``): still tensors
    only, so the registry saves and loads it like any other network's weights."""
    return {f"{MEMBER}{i}.{k}": v for i, state in enumerate(states) for k, v in state.items()}


def member_states(state: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The networks of a state dict: one for a single network, one per member for :func:`ensemble_state`."""
    if not state or not all(k.startswith(MEMBER) and "." in k for k in state):
        return [dict(state)]
    members: dict[int, dict[str, Any]] = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if not head[len(MEMBER) :].isdigit():
            return [dict(state)]
        members.setdefault(int(head[len(MEMBER) :]), {})[rest] = value
    return [members[i] for i in sorted(members)]
