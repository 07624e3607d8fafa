"""The model card: each TRIPOD+AI item answered from what the platform recorded, or left to the deployer."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from medml.models.factory import find_model_kind
from medml.report import comparators
from medml.report._facts import (
    IMBALANCE_PARAMS,
    NO_RECALIBRATION,
    calibration_method,
    evaluated_on,
    headline,
    interval_method,
    missing_handling,
    missingness,
    model_kind,
    params_text,
    split_sizes,
    subgroup_summary,
)
from medml.report._format import count, num, value_of
from medml.report.checklist import load_checklist
from medml.report.inputs import ReportInputs
from medml.report.validation import sample_size_lines, summary_lines

ANSWERED = "answered"
FOR_DEPLOYER = "for the deployer"


# --- one function per answerable item; None leaves the item to the deployer -----------------------

Answer = Callable[[ReportInputs], str | None]


def _intended_use(i: ReportInputs) -> str | None:
    use = i.model.get("intended_use")
    if not use:
        return None
    pop = f" Target population: {i.dataset['population']}." if i.dataset.get("population") else ""
    return f"{str(use).rstrip('.')}.{pop} Decision support for clinicians, not a diagnosis."


def _sources(i: ReportInputs) -> str | None:
    if not i.dataset.get("provenance"):
        return None
    text = f"Development data '{i.dataset.get('key', '')}': {i.dataset['provenance']}."
    if i.external:
        text += " External evaluation: " + "; ".join(str(e.get("dataset") or "?") for e in i.external) + "."
    return text


def _dates(i: ReportInputs) -> str | None:
    dates = i.dataset.get("date_range")
    return f"Participant data from {dates}." if dates else None


def _eligibility(i: ReportInputs) -> str | None:
    pop = i.dataset.get("population") or i.evaluation.get("population")
    return f"Population as defined by task '{i.dataset.get('task', '')}': {pop}." if pop else None


def _preparation(i: ReportInputs) -> str | None:
    parts = []
    if i.model.get("preprocessing"):
        parts.append(f"Preprocessing: {i.model['preprocessing']}.")
    excluded = i.dataset.get("excluded") or {}
    if excluded:
        parts.append("Columns left out: " + "; ".join(f"{k} ({v})" for k, v in excluded.items()) + ".")
    missing = missing_handling(i)
    if missing:
        parts.append(f"Missing inputs are {missing}.")
    return " ".join(parts) or None


def _outcome(i: ReportInputs) -> str | None:
    if not i.dataset.get("target"):
        return None
    task = f" (task '{i.dataset['task']}')" if i.dataset.get("task") else ""
    return f"Outcome: {i.dataset['target']}{task}, a binary outcome."


def _predictors(i: ReportInputs) -> str | None:
    if not i.features:
        return None
    desc = []
    for f in i.features:
        unit = f", {f['unit']}" if f.get("unit") else ""
        label = f.get("label") or f.get("name")
        desc.append(f"{label} [{f.get('name')}] ({f.get('kind')}{unit})")
    return f"{len(i.features)} predictors: " + "; ".join(desc) + "."


def _sample_size(i: ReportInputs) -> str:
    text = f"Evaluation set {evaluated_on(i.evaluation)}."
    splits = split_sizes(i)
    if splits:
        text += " Development splits: " + ", ".join(splits) + "."
    train = (i.model.get("split_sizes") or {}).get("train")
    if isinstance(train, Mapping) and i.features:
        events = value_of(train.get("n_events", train.get("events")))
        if events is not None:
            text += f" Events per candidate predictor (training): {events / len(i.features):.1f}."
    if i.model.get("sample_size"):
        text += " " + " ".join(sample_size_lines(i.model["sample_size"]))
    return text


def _missing(i: ReportInputs) -> str | None:
    handling = missing_handling(i)
    text = f"Missing inputs are {handling}." if handling else ""
    text = " ".join(t for t in (text, missingness(i)) if t)
    excluded = i.dataset.get("excluded") or {}
    if excluded:
        text += " Omitted columns: " + "; ".join(f"{k}: {v}" for k, v in excluded.items()) + "."
    return text or None


def _partition(i: ReportInputs) -> str | None:
    if i.model.get("internal_validation"):
        return " ".join(
            summary_lines(i.model["internal_validation"])[:1] + summary_lines(i.model["internal_validation"])[-1:]
        )
    splits = split_sizes(i)
    if not splits:
        return None
    seed = f", random seed {i.model['seed']}" if i.model.get("seed") is not None else ""
    return (
        f"Data split by patient (no patient in more than one split){seed}: "
        + ", ".join(splits)
        + f". Performance is reported on the {i.evaluation.get('split') or 'held-out'} split."
    )


def _predictor_handling(i: ReportInputs) -> str | None:
    if i.model.get("preprocessing"):
        return str(i.model["preprocessing"])
    kind = find_model_kind(model_kind(i))
    return kind.preprocessing if kind is not None else None


def _model_type(i: ReportInputs) -> str | None:
    if not model_kind(i):
        return None
    text = f"Model type: {model_kind(i)}."
    if params_text(i):
        text += f" Parameters: {params_text(i)}."
    if i.model.get("tuning"):
        text += f" Tuning: {i.model['tuning']}."
    if i.model.get("seed") is not None:
        text += f" Seed {i.model['seed']}."
    return text


def _measures(i: ReportInputs) -> str:
    return (
        "Discrimination (AUROC, AUPRC with ROC and precision-recall curves), calibration (Brier and scaled "
        "Brier score, calibration slope and intercept, integrated calibration index, binned and loess-"
        "smoothed calibration plot), clinical utility (decision curve: net benefit against treat-all and "
        "treat-none), operating thresholds (sensitivity, specificity, PPV, NPV, fraction flagged) and "
        f"performance by subgroup. {interval_method(i.evaluation)}"
    )


def _updating(i: ReportInputs) -> str | None:
    method = calibration_method(i)
    if method is None:
        return None
    if method.strip().lower() in NO_RECALIBRATION:
        return "No recalibration: the model's raw probabilities are reported."
    return f"Probabilities recalibrated ({method}) on data not used to fit the model."


def _prediction_code(i: ReportInputs) -> str | None:
    if not (i.model.get("name") or i.evaluation.get("model")):
        return None
    code = f", code version {i.model['code_version']}" if i.model.get("code_version") else ""
    data = f", training data hash {i.model['data_hash']}" if i.model.get("data_hash") else ""
    return f"Predictions computed by the registered model bundle {i.model_id}{code}{data}."


def _imbalance(i: ReportInputs) -> str | None:
    params = i.model.get("params") or {}
    used = {k: params[k] for k in IMBALANCE_PARAMS if params.get(k) not in (None, False, "", 1, 1.0)}
    if used:
        return "Class imbalance handled with " + ", ".join(f"{k}={v}" for k, v in used.items()) + "."
    if not model_kind(i):
        return None
    recal = _updating(i) or ""
    return f"No resampling or class weighting in the model parameters. {recal}".strip()


def _fairness(i: ReportInputs) -> str | None:
    lines = subgroup_summary(i.evaluation)
    if not lines:
        return None
    return (
        "Performance computed separately per group of each sensitive attribute (kept beside, not inside, "
        "the features); a gap is flagged when large and its bootstrap interval excludes 0. " + " ".join(lines)
    )


def _output(i: ReportInputs) -> str:
    text = f"A calibrated probability of {i.target}."
    ts = [num(t.get("threshold")) for t in i.evaluation.get("thresholds") or []]
    if ts:
        text += (
            f" Operating thresholds reported: {', '.join(ts)}; the deployer chooses one and states why "
            "(see the thresholds table and decision curve)."
        )
    return text


def _code(i: ReportInputs) -> str | None:
    v = i.model.get("code_version")
    return f"Analytical code: medml, code version {v}." if v else None


def _flow(i: ReportInputs) -> str:
    n, events = value_of(i.evaluation.get("n")) or 0, value_of(i.evaluation.get("n_events")) or 0
    text = f"Evaluation set: {count(n)} participants, {count(events)} with and {count(n - events)} without the outcome."
    splits = split_sizes(i)
    return text + (" Splits: " + ", ".join(splits) + "." if splits else "")


def _characteristics(i: ReportInputs) -> str | None:
    if not i.table_one:
        return None
    k = len(i.table_one.get("variables", []))
    return f"Table 1 of the report: {k} predictors overall and by outcome, with missing data."


def _per_analysis(i: ReportInputs) -> str:
    parts = [f"Evaluation {evaluated_on(i.evaluation)}"]
    parts += [f"external {evaluated_on(e)}" for e in i.external]
    splits = split_sizes(i)
    if splits:
        parts.append("development splits " + ", ".join(splits))
    return "; ".join(parts) + "."


def _specification(i: ReportInputs) -> str | None:
    if not model_kind(i):
        return None
    parts = [f"{i.model_id}: {model_kind(i)}"]
    for key, label in (("code_version", "code version"), ("data_hash", "training data hash"), ("created", "created")):
        if i.model.get(key):
            parts.append(f"{label} {i.model[key]}")
    return ", ".join(parts) + ". Stored as a registry bundle with its feature schema and metadata."


def _performance(i: ReportInputs) -> str:
    text = f"{headline(i.evaluation)}. {interval_method(i.evaluation)}"
    if i.model.get("internal_validation"):
        text += " " + " ".join(summary_lines(i.model["internal_validation"])[1:-1])
    if comparators.has_comparators(i):
        text += " " + comparators.summary_line(i)
    lines = subgroup_summary(i.evaluation)
    return text + (" By subgroup: " + " ".join(lines) if lines else "")


def _per_site(i: ReportInputs) -> str | None:
    if not i.external:
        return None
    return " ".join(f"{e.get('dataset') or 'site'}: {headline(e)}." for e in i.external)


def _updated(i: ReportInputs) -> str | None:
    method = calibration_method(i)
    if method is None or method.strip().lower() in NO_RECALIBRATION:
        return None
    return f"All performance in this report is of the recalibrated ({method}) model."


ANSWERS: dict[str, Answer] = {
    "3b": _intended_use,
    "5a": _sources,
    "5b": _dates,
    "6b": _eligibility,
    "7": _preparation,
    "8a": _outcome,
    "9b": _predictors,
    "10": _sample_size,
    "11": _missing,
    "12a": _partition,
    "12b": _predictor_handling,
    "12c": _model_type,
    "12e": _measures,
    "12f": _updating,
    "12g": _prediction_code,
    "13": _imbalance,
    "14": _fairness,
    "15": _output,
    "18f": _code,
    "20a": _flow,
    "20b": _characteristics,
    "21": _per_analysis,
    "22": _specification,
    "23a": _performance,
    "23b": _per_site,
    "24": _updated,
}

_HINTS = {
    "1": "a title naming the model's development or evaluation, the target population and the outcome",
    "2": "the abstract (TRIPOD+AI for Abstracts)",
    "3a": "the clinical context and rationale, with references to existing models",
    "3b": "the target population, intended purpose in the care pathway and intended users",
    "3c": "known health inequalities between sociodemographic groups",
    "4": "the study objectives (development, validation or both)",
    "5a": "the data sources, why they were used and how representative they are",
    "5b": "start and end dates of participant accrual and of follow-up",
    "6a": "the setting (primary or secondary care) and the number and location of centres",
    "6b": "the eligibility criteria",
    "6c": "treatments received and how they were handled",
    "8b": "the qualifications and demographics of outcome assessors, if assessment is subjective",
    "8c": "any blinding of outcome assessment",
    "9a": "how the initial predictors were chosen and any pre-selection before modelling",
    "9c": "the qualifications and demographics of predictor assessors, if measurement is subjective",
    "12d": "how heterogeneity across clusters (hospitals, countries) was handled",
    "16": "differences between development and evaluation data in setting, eligibility, outcome, predictors",
    "17": "the ethics committee and the consent or waiver",
    "18a": "the funding sources and the funders' role",
    "18b": "the authors' conflicts of interest and financial disclosures",
    "18c": "where the protocol can be read, or that there was none",
    "18d": "the registry and registration number, or that the study was not registered",
    "18e": "where and on what terms the data are available",
    "19": "how patients and the public were involved, or that they were not",
    "20c": "a comparison of predictor distributions between development and evaluation data",
    "25": "an overall interpretation of the results, fairness included, against the objectives and earlier studies",
    "26": "the limitations (sample, size, overfitting, missing data) and their effect on bias and generalisability",
    "27a": "how poor-quality or unavailable inputs are detected and handled in use",
    "27b": "what users must do with the inputs or the model, and the expertise they need",
    "27c": "next steps for research on applicability and generalisability",
}


def model_card(inputs: ReportInputs) -> list[dict[str, str]]:
    """One entry per TRIPOD+AI checklist row: ``{"item", "section", "topic", "text", "answer", "status"}``,
    status ``"answered"`` when the platform's records answer it, else ``"for the deployer"`` with what to write."""
    checklist = load_checklist()
    entries = []
    for it in checklist.items:
        fn = ANSWERS.get(it.item)
        answer = fn(inputs) if fn else None
        if answer:
            status = ANSWERED
        else:
            status = FOR_DEPLOYER
            answer = f"To be written by the deployer: {_HINTS.get(it.item, (it.text or it.topic).rstrip('.'))}."
        text = it.text or f"{it.topic} (item wording not available: {checklist.source})"
        entries.append(
            {
                "item": it.item,
                "section": it.section,
                "topic": it.topic,
                "text": text,
                "answer": answer,
                "status": status,
            }
        )
    return entries


def model_card_markdown(inputs: ReportInputs) -> str:
    """The model card as Markdown text, for the CLI and the registry."""
    ev, m, d = inputs.evaluation, inputs.model, inputs.dataset
    lines = [
        f"# Model card: {inputs.model_id}",
        "",
        "Decision support, not a diagnosis: a clinician interprets every prediction.",
        "",
    ]
    if m.get("intended_use"):
        lines += ["## Intended use", "", str(m["intended_use"]), ""]
    lines += ["## Model", ""]
    for key, label in (
        ("model_kind", "Kind"),
        ("calibration", "Calibration"),
        ("created", "Created"),
        ("code_version", "Code version"),
        ("data_hash", "Training data hash"),
        ("seed", "Seed"),
    ):
        if m.get(key) not in (None, ""):
            lines.append(f"- {label}: {m[key]}")
    if params_text(inputs):
        lines.append(f"- Parameters: {params_text(inputs)}")
    lines += ["", "## Data", ""]
    for key, label in (
        ("key", "Dataset"),
        ("task", "Task"),
        ("target", "Outcome"),
        ("population", "Population"),
        ("provenance", "Provenance"),
    ):
        if d.get(key):
            lines.append(f"- {label}: {d[key]}")
    if split_sizes(inputs):
        lines.append(f"- Splits: {', '.join(split_sizes(inputs))}")
    for col, why in (d.get("excluded") or {}).items():
        lines.append(f"- Excluded column {col}: {why}")
    lines += ["", "## Performance", "", f"- {evaluated_on(ev)}", f"- {headline(ev)}", f"- {interval_method(ev)}"]
    lines += [f"- Subgroup {s}" for s in subgroup_summary(ev)]
    lines += [f"- External {evaluated_on(e)}: {headline(e)}" for e in inputs.external]
    card = model_card(inputs)
    done = [e for e in card if e["status"] == ANSWERED]
    todo = [e for e in card if e["status"] != ANSWERED]
    lines += ["", "## TRIPOD+AI checklist", "", f"### Answered by the platform ({len(done)} of {len(card)})", ""]
    lines += [f"- **{e['item']} {e['topic']}**: {e['answer']}" for e in done]
    lines += ["", f"### For the deployer to complete ({len(todo)})", ""]
    lines += [
        f"- [ ] **{e['item']} {e['topic']}**: {e['answer'].removeprefix('To be written by the deployer: ')}"
        for e in todo
    ]
    return "\n".join(lines) + "\n"
