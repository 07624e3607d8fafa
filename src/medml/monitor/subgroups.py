"""The subgroups a deployed model is watched in: the sensitive attributes of its development report, read back from
what the model saw, and each group's development AUROC to compare with.

The attributes are those of the bundle's evaluation (``metadata.evaluation["subgroups"]``, the report's subgroup
audit), sex and age band when it has none. Sensitive attributes travel beside the features, never inside them, so
the monitoring store has only what the model takes as input: an attribute that is also a feature (``sex``) is read
from it, ``age_band`` from the ``age`` feature (the bands of the dataset adapters: <40, 40-59, 60-79, 80+), and any
other (race, most often: never a predictor) is not monitored, and the check says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from medml.evaluate import Estimate

__all__ = ["DEFAULT_ATTRIBUTES", "Reference", "SubgroupLabels", "attributes_of", "references_of", "subgroup_labels"]

#: the attributes watched when the bundle's evaluation names none
DEFAULT_ATTRIBUTES = ("sex", "age_band")
UNKNOWN = "Unknown"
#: a numeric feature with more distinct values than this is not read as groups
MAX_GROUPS = 20


@dataclass(frozen=True)
class Reference:
    """What a group's realised AUROC is compared with: the group's development AUROC, or the overall one when the
    development report could not estimate the group's (``source`` says which)."""

    auroc: Estimate
    source: str


@dataclass(frozen=True)
class SubgroupLabels:
    """Each prediction's group per watched attribute (``labels``, one column each, rows as the predictions), and
    the attributes that cannot be watched with why."""

    labels: pd.DataFrame
    unavailable: Mapping[str, str]


def _report_subgroups(metadata: Any) -> list[Mapping[str, Any]]:
    evaluation = getattr(metadata, "evaluation", None) or {}
    found = evaluation.get("subgroups") if isinstance(evaluation, Mapping) else None
    return [s for s in found or () if isinstance(s, Mapping) and s.get("attribute")]


def attributes_of(metadata: Any) -> tuple[str, ...]:
    """The sensitive attributes of the bundle's development report, or :data:`DEFAULT_ATTRIBUTES`."""
    named = tuple(dict.fromkeys(str(s["attribute"]) for s in _report_subgroups(metadata)))
    return named or DEFAULT_ATTRIBUTES


def _age_band(age: pd.Series) -> pd.Series:
    from medml.data.datasets._common import age_band

    return age_band(age)


def _as_groups(column: pd.Series, known: Sequence[str]) -> pd.Series | None:
    """A recorded feature as group labels (missing: Unknown), spelled as the development report spells them."""
    if pd.api.types.is_numeric_dtype(column) and column.nunique(dropna=True) > MAX_GROUPS:
        return None
    text = column.astype(object).where(column.notna(), None)
    spelled = {k.casefold(): k for k in known}

    def label(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return UNKNOWN
        t = str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)
        return spelled.get(t.casefold(), t)

    return pd.Series([label(v) for v in text], index=column.index, dtype=object)


def subgroup_labels(frame: pd.DataFrame, attributes: Sequence[str], metadata: Any = None) -> SubgroupLabels:
    """Group labels of the predictions in ``frame`` (the monitoring store's rows, features as columns) for each of
    ``attributes`` that the recorded features give (see the module docstring)."""
    known = {
        str(s["attribute"]): [str(g.get("group")) for g in s.get("groups") or ()] for s in _report_subgroups(metadata)
    }
    labels: dict[str, pd.Series] = {}
    unavailable: dict[str, str] = {}
    for name in attributes:
        if name in frame.columns:
            groups = _as_groups(frame[name], known.get(name, ()))
            if groups is None:
                unavailable[name] = f"the feature {name} has too many values to be groups"
            else:
                labels[name] = groups
        elif name == "age_band" and "age" in frame.columns:
            labels[name] = _age_band(frame["age"]).set_axis(frame.index)
        else:
            unavailable[name] = "not among the features recorded with each prediction (sensitive attributes are not)"
    return SubgroupLabels(pd.DataFrame(labels, index=frame.index), unavailable)


def _stored_estimate(value: Any) -> Estimate | None:
    if not isinstance(value, Mapping) or value.get("value") is None:
        return None
    e = Estimate.from_dict(dict(value))
    return e if np.isfinite([e.value, e.low, e.high]).all() else None


def references_of(metadata: Any, overall: Estimate | None) -> dict[tuple[str, str], Reference]:
    """Per (attribute, group) of the development report, the group's development AUROC with its interval where the
    report estimated it (at least 10 events and non-events there), else ``overall`` (the development AUROC); groups
    missing from the report get ``overall`` too, through :func:`reference_for`."""
    out: dict[tuple[str, str], Reference] = {}
    for s in _report_subgroups(metadata):
        for g in s.get("groups") or ():
            own = _stored_estimate(g.get("auroc"))
            key = (str(s["attribute"]), str(g.get("group")))
            if own is not None:
                out[key] = Reference(own, f"development AUROC of {key[0]} {key[1]} (n={int(g.get('n', 0)):,})")
            elif overall is not None:
                out[key] = Reference(overall, "overall development AUROC (the group's was not estimable)")
    return out


def reference_for(
    references: Mapping[tuple[str, str], Reference], attribute: str, group: str, overall: Estimate | None
) -> Reference | None:
    """The reference of one group: its own, else the overall development AUROC, else None."""
    found = references.get((attribute, group))
    if found is not None:
        return found
    return None if overall is None else Reference(overall, "overall development AUROC (the group is not in the report)")
