"""The model card: every TRIPOD+AI row, answered from the inputs where the platform knows, else left to the
deployer."""

from __future__ import annotations

import csv
import dataclasses

import pytest
from report_factory import SCRIPT_LABEL

from medml.config import get_settings
from medml.report import load_checklist, model_card, model_card_markdown, render_report
from medml.report.model_card import ANSWERED, FOR_DEPLOYER

CHECKLIST = get_settings().data_root / "reporting" / "tripod_ai_checklist_2024.csv"
needs_checklist = pytest.mark.skipif(not CHECKLIST.is_file(), reason=f"{CHECKLIST} not found")

# what the platform records must answer these, and nothing it cannot know
MUST_ANSWER = {"8a", "9b", "10", "11", "12c", "12e", "12f", "12g", "14", "18f", "21", "22", "23a", "23b"}
NEVER_ANSWER = {"1", "2", "3a", "3c", "4", "17", "18a", "18b", "18c", "18d", "19", "25", "26", "27c"}


@pytest.fixture(scope="module")
def card(inputs):
    return {e["item"]: e for e in model_card(inputs)}


@needs_checklist
def test_one_entry_per_checklist_row_in_order(inputs):
    with CHECKLIST.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    entries = model_card(inputs)
    assert len(rows) == 52
    assert [e["item"] for e in entries] == [r["item"] for r in rows]
    assert [e["text"] for e in entries] == [r["checklist_item"] for r in rows]
    for e in entries:
        assert set(e) == {"item", "section", "topic", "text", "answer", "status"}
        assert e["status"] in (ANSWERED, FOR_DEPLOYER) and e["answer"]


@needs_checklist
def test_manual_narrative_items_are_for_the_deployer(card):
    with CHECKLIST.open(newline="", encoding="utf-8") as fh:
        manual = {r["item"] for r in csv.DictReader(fh) if r["platform_artifact_suggestion"] == "(manual narrative)"}
    assert NEVER_ANSWER.issubset(manual)
    for item in NEVER_ANSWER:
        assert card[item]["status"] == FOR_DEPLOYER, item
        assert card[item]["answer"].startswith("To be written by the deployer")


def test_data_derivable_items_are_answered(card):
    assert {i for i in MUST_ANSWER if card[i]["status"] == ANSWERED} == MUST_ANSWER


def test_answers_carry_the_inputs_numbers(card, inputs, cohort):
    ev = inputs.evaluation
    assert f"n = {ev['n']:,}" in card["10"]["answer"] and f"{ev['n_events']:,} events" in card["10"]["answer"]
    assert "Events per candidate predictor (training): 175.0" in card["10"]["answer"]  # 1050 events / 6
    assert "mmol/L" in card["9b"]["answer"] and "years" in card["9b"]["answer"]
    assert "num_leaves=31" in card["12c"]["answer"] and "lightgbm" in card["12c"]["answer"]
    assert "isotonic" in card["12f"]["answer"]
    assert "git:abc1234" in card["18f"]["answer"] and "sha256:9f2c1e" in card["12g"]["answer"]
    auroc = ev["discrimination"]["auroc"]
    assert f"AUROC {auroc['value']:.3f} ({auroc['low']:.3f}-{auroc['high']:.3f})" in card["23a"]["answer"]
    for sg in ev["subgroups"]:
        assert f"Flagged: {', '.join(sg['flagged']) or 'none'}." in card["14"]["answer"]
    assert "site-B (2023)" in card["23b"]["answer"]
    lactate_missing = 100 * cohort.X["lactate"].isna().mean()
    assert f"{SCRIPT_LABEL} {lactate_missing:.1f}%" in card["11"]["answer"]


def _with_kind(inputs, kind):
    return dataclasses.replace(inputs, model={**inputs.model, "model_kind": kind}, external=[])


def test_missing_data_handling_follows_the_model_kind(inputs):
    # the kinds of the one table (medml.models.factory), whose classes declare their missing-data handling
    gbm = {e["item"]: e for e in model_card(_with_kind(inputs, "lgbm"))}
    lr = {e["item"]: e for e in model_card(_with_kind(inputs, "logistic"))}
    assert "natively by LightGBM" in gbm["11"]["answer"] and "imput" not in gbm["11"]["answer"].split(";")[0]
    assert "imputed" in lr["11"]["answer"] and "LightGBM" not in lr["11"]["answer"]
    assert lr["23b"]["status"] == FOR_DEPLOYER  # no external sites supplied


def test_unknown_facts_fall_to_the_deployer(inputs):
    bare = dataclasses.replace(inputs, model={}, dataset={}, features=[], external=[])
    card = {e["item"]: e for e in model_card(bare)}
    for item in ("3b", "5a", "8a", "9b", "12c", "18f", "22"):
        assert card[item]["status"] == FOR_DEPLOYER, item
    assert card["10"]["status"] == ANSWERED  # n and events come from the evaluation itself


def test_embedded_outline_when_the_checklist_file_is_absent(inputs, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDML_DATA", str(tmp_path))
    checklist = load_checklist()
    assert checklist.embedded and "not found" in checklist.source
    entries = model_card(inputs)
    assert len(entries) == 52 and entries[0]["item"] == "1" and entries[-1]["item"] == "27c"
    assert "item wording not available" in entries[0]["text"]
    assert next(e for e in entries if e["item"] == "10")["status"] == ANSWERED
    assert "not found" in render_report(inputs)  # the report says so


def test_report_separates_answered_items_from_the_deployers_list(inputs, card):
    page = render_report(inputs)
    section = page[page.index('id="model-card"') :]
    answered = section[section.index('class="card-answered"') : section.index("To-do list for the deployer")]
    todo = section[section.index('class="card-todo"') :]
    n_done = sum(e["status"] == ANSWERED for e in card.values())
    assert answered.count("<tr>") == n_done + 1 and todo.count("<tr>") == 52 - n_done + 1
    assert f"{n_done} answered" in section and f"{52 - n_done} for the deployer" in section
    assert todo.count("☐") == 52 - n_done


def test_markdown_card(inputs, card):
    md = model_card_markdown(inputs)
    assert md.startswith("# Model card: sepsis-risk@1.2.0\n")
    for heading in ("## Intended use", "## Model", "## Data", "## Performance", "## TRIPOD+AI checklist"):
        assert f"\n{heading}\n" in md
    todo = [e for e in card.values() if e["status"] == FOR_DEPLOYER]
    assert md.count("- [ ] **") == len(todo)
    assert "- [ ] **17 Ethical approval**" in md
    assert "<script>" in md  # plain text: the CLI prints it as is; escaping is for HTML
