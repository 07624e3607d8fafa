"""The TRIPOD+AI (2024) reporting checklist: read from the shared data folder, or an embedded outline of it."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from medml.config import get_settings

CHECKLIST_FILE = "tripod_ai_checklist_2024.csv"

# Item ids, sections and topics of TRIPOD+AI (Collins et al., BMJ 2024), for when the CSV is not at hand.
_OUTLINE: tuple[tuple[str, str, str], ...] = (
    ("1", "TITLE", "Title"),
    ("2", "ABSTRACT", "Abstract"),
    ("3a", "INTRODUCTION", "Background"),
    ("3b", "INTRODUCTION", "Background"),
    ("3c", "INTRODUCTION", "Background"),
    ("4", "INTRODUCTION", "Objectives"),
    ("5a", "METHODS", "Data"),
    ("5b", "METHODS", "Data"),
    ("6a", "METHODS", "Participants"),
    ("6b", "METHODS", "Participants"),
    ("6c", "METHODS", "Participants"),
    ("7", "METHODS", "Data preparation"),
    ("8a", "METHODS", "Outcome"),
    ("8b", "METHODS", "Outcome"),
    ("8c", "METHODS", "Outcome"),
    ("9a", "METHODS", "Predictors"),
    ("9b", "METHODS", "Predictors"),
    ("9c", "METHODS", "Predictors"),
    ("10", "METHODS", "Sample size"),
    ("11", "METHODS", "Missing data"),
    ("12a", "METHODS", "Analytical methods"),
    ("12b", "METHODS", "Analytical methods"),
    ("12c", "METHODS", "Analytical methods"),
    ("12d", "METHODS", "Analytical methods"),
    ("12e", "METHODS", "Analytical methods"),
    ("12f", "METHODS", "Analytical methods"),
    ("12g", "METHODS", "Analytical methods"),
    ("13", "METHODS", "Class imbalance"),
    ("14", "METHODS", "Fairness"),
    ("15", "METHODS", "Model output"),
    ("16", "METHODS", "Training versus evaluation"),
    ("17", "METHODS", "Ethical approval"),
    ("18a", "OPEN SCIENCE", "Funding"),
    ("18b", "OPEN SCIENCE", "Conflicts of interest"),
    ("18c", "OPEN SCIENCE", "Protocol"),
    ("18d", "OPEN SCIENCE", "Registration"),
    ("18e", "OPEN SCIENCE", "Data sharing"),
    ("18f", "OPEN SCIENCE", "Code sharing"),
    ("19", "PATIENT & PUBLIC INVOLVEMENT", "Patient & Public Involvement"),
    ("20a", "RESULTS", "Participants"),
    ("20b", "RESULTS", "Participants"),
    ("20c", "RESULTS", "Participants"),
    ("21", "RESULTS", "Model development"),
    ("22", "RESULTS", "Model specification"),
    ("23a", "RESULTS", "Model performance"),
    ("23b", "RESULTS", "Model performance"),
    ("24", "RESULTS", "Model updating"),
    ("25", "DISCUSSION", "Interpretation"),
    ("26", "DISCUSSION", "Limitations"),
    ("27a", "DISCUSSION", "Usability of the model in the context of current care"),
    ("27b", "DISCUSSION", "Usability of the model in the context of current care"),
    ("27c", "DISCUSSION", "Usability of the model in the context of current care"),
)


@dataclass(frozen=True)
class ChecklistItem:
    """One row of the checklist; ``text`` is empty when only the embedded outline was available."""

    item: str
    section: str
    topic: str
    text: str = ""


@dataclass(frozen=True)
class Checklist:
    """The checklist's rows and where they came from (``embedded`` when the CSV was not found)."""

    items: tuple[ChecklistItem, ...]
    source: str
    embedded: bool


def checklist_path() -> Path:
    """Where the checklist CSV is looked for: ``<data_root>/reporting/tripod_ai_checklist_2024.csv``."""
    return get_settings().data_root / "reporting" / CHECKLIST_FILE


def load_checklist(path: Path | None = None) -> Checklist:
    """The TRIPOD+AI rows from the CSV at ``path`` (default :func:`checklist_path`); when that file is
    absent, the embedded outline (ids, sections and topics only, without the items' wording)."""
    path = path or checklist_path()
    if not path.is_file():
        items = tuple(ChecklistItem(i, s, t) for i, s, t in _OUTLINE)
        return Checklist(items, f"embedded outline ({path} not found; item wording not included)", True)
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    items = tuple(
        ChecklistItem(
            item=r["item"].strip(),
            section=r["section"].strip(),
            topic=r["topic"].strip(),
            text=(r.get("checklist_item") or "").strip(),
        )
        for r in rows
        if (r.get("item") or "").strip()
    )
    return Checklist(items, f"{path.name}", False)
