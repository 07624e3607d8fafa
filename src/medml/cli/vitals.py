"""`medml vitals ...`: NEWS2 and qSOFA for observation sets, and a streaming early-warning monitor of FHIR vitals."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import IO, Annotated, Any

import orjson
import typer
from rich.table import Table

from medml.cli._console import err, out
from medml.cli.vitals_audit_options import AuditLogOption, NoAuditOption, open_audit_log
from medml.errors import ConfigError, InputFileError

vitals_app = typer.Typer(
    no_args_is_help=True,
    help="Vital signs: NEWS2 (RCP 2017) and qSOFA (Sepsis-3) early warning scores, one-off or on a live stream.",
)
INTENDED_USE = "Decision support, not a diagnosis: NEWS2 (RCP 2017) and qSOFA (Sepsis-3) by medml; a clinician decides."
_POLL_SECONDS = 0.2
WATCH_HELP = (
    "Score NEWS2 per patient on every new vital-sign Observation; write an alert (a JSON line) when a patient's "
    "band rises (low < low-medium < medium < high), at most once per band within --repeat-minutes.\n\n"
    "Measurements (LOINC): respiratory rate 9279-1; SpO2 59408-5 or 2708-6; systolic BP 8480-6, or its component "
    "in a BP panel 85354-9; heart rate 8867-4; temperature 8310-5 (degC; degF converted); ACVPU 67775-7, or GCS "
    "9269-2 as a proxy (< 15: not alert); supplemental oxygen: O2 flow 3151-8 (> 0 L/min) or FiO2 3150-0 "
    "(> 21 %).\n\n"
    "Bad lines are reported on stderr and counted; a summary of the counts ends the run, on stderr. Each alert is "
    "also written to the hash-chained audit log (the service's, unless --audit-log or --no-audit)."
)
SCORE_HELP = (
    "NEWS2 and qSOFA for each row of a CSV, or for each patient of FHIR input (a Bundle or NDJSON; their latest "
    "values).\n\n"
    "CSV columns (a header row, any order): patient, respiratory_rate (/min), spo2 (%), supplemental_oxygen "
    "(air/oxygen), systolic_bp (mmHg), heart_rate (/min), temperature (degC), consciousness (A, C, V, P or U); "
    "optional: time, spo2_scale (1, or 2 for a prescribed target of 88-92 %), gcs (3-15, used where consciousness "
    "is empty). An empty cell is a missing value: named, never scored as normal."
)

ValidityOption = Annotated[
    float, typer.Option("--validity-hours", help="a parameter older than this is stale: named, not scored")
]
Scale2Option = Annotated[
    list[str] | None,
    typer.Option(
        "--spo2-scale-2",
        help="a patient (as in subject.reference, e.g. Patient/123) with a prescribed SpO2 target of 88-92 %: "
        "scored on SpO2 Scale 2; repeat for more",
    ),
]


class ScoreFormat(StrEnum):
    table = "table"
    jsonl = "jsonl"


def _hours(value: float, option: str) -> timedelta:
    if not value >= 0:
        raise ConfigError(f"{option} {value} is negative", f"give {option} as zero or more")
    return timedelta(hours=value)


def _warn(message: str) -> None:
    err.print(f"warning: {message}", highlight=False, markup=False, soft_wrap=True)


def _lines(handle: IO[bytes], follow: bool, idle_exit: float | None) -> Iterator[bytes]:
    """The lines of ``handle``; with ``follow``, wait for more at its end (a growing file) until ``idle_exit`` s
    pass without any. A last line without its newline is held back while following (it may still be written)."""
    pending = b""
    idle = 0.0
    while True:
        chunk = handle.readline()
        if chunk:
            idle = 0.0
            if chunk.endswith(b"\n") or not follow:
                yield pending + chunk
                pending = b""
            else:
                pending += chunk
            continue
        if not follow or (idle_exit is not None and idle >= idle_exit):
            if pending:
                yield pending
            return
        time.sleep(_POLL_SECONDS)
        idle += _POLL_SECONDS


def _open_source(source: str) -> IO[bytes]:
    if source == "-":
        return sys.stdin.buffer
    path = Path(source)
    if not path.exists():
        raise InputFileError(f"{path} does not exist", "give an NDJSON file of FHIR Observations, or - for stdin")
    if path.is_dir():
        raise InputFileError(f"{path} is a folder", "give an NDJSON file of FHIR Observations, or - for stdin")
    try:
        return path.open("rb")
    except OSError as e:
        raise InputFileError(f"cannot read {path}: {e.strerror}", "check its permissions") from None


def _summary(counts: dict[str, int], seconds: float) -> None:
    table = Table("medml vitals watch", "count", header_style="bold")
    for name, n in counts.items():
        if n or name in ("lines read", "observations used", "alerts raised"):
            table.add_row(name, f"{n:,}")
    err.print(table)
    err.print(f"{counts.get('lines read', 0):,} lines in {seconds:.1f} s. {INTENDED_USE}", highlight=False)


@vitals_app.command("watch", help=WATCH_HELP)
def watch_cmd(
    source: Annotated[str, typer.Argument(help="FHIR R4 Observations, one JSON per line (NDJSON); - for stdin")],
    output: Annotated[
        Path | None, typer.Option("--out", help="append the alert lines to this file [default: stdout]")
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="keep reading a growing file (stop with Ctrl-C or --idle-exit)")
    ] = False,
    idle_exit: Annotated[
        float | None, typer.Option("--idle-exit", help="with --follow: stop after this many seconds with no new line")
    ] = None,
    validity_hours: ValidityOption = 4.0,
    repeat_minutes: Annotated[
        float, typer.Option("--repeat-minutes", help="no second alert for the same band of a patient within this")
    ] = 60.0,
    future_minutes: Annotated[
        float, typer.Option("--future-minutes", help="an observation later than now plus this is refused")
    ] = 5.0,
    spo2_scale_2: Scale2Option = None,
    every_score: Annotated[
        bool, typer.Option("--every-score", help="write every score, not only alerts (type 'NEWS2 score')")
    ] = False,
    audit_log: AuditLogOption = None,
    no_audit: NoAuditOption = False,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="a learned early-warning model (NAME or NAME@VERSION, from `medml vitals train-ews`): its risk "
            "from the patient's window so far beside each NEWS2 line (about 0.3 s a line)",
        ),
    ] = None,
) -> None:
    """Score NEWS2 per patient on every new vital-sign Observation; write an alert line when a band rises."""
    import hashlib

    from medml.service.vitals_audit import cli_caller, news2_alert_entry
    from medml.vitals.stream import EarlyWarningStream, StreamConfig

    config = StreamConfig(
        validity=_hours(validity_hours, "--validity-hours"),
        repeat_after=_hours(repeat_minutes / 60, "--repeat-minutes"),
        future_tolerance=_hours(future_minutes / 60, "--future-minutes"),
        spo2_scale2=frozenset(spo2_scale_2 or ()),
        every_score=every_score,
    )
    if idle_exit is not None and not follow:
        raise ConfigError("--idle-exit applies only with --follow", "add --follow, or leave --idle-exit out")
    learned = None
    if model is not None:
        from medml.config import get_settings
        from medml.registry import load_bundle
        from medml.vitals.ews_stream import LearnedWatch

        learned = LearnedWatch(load_bundle(model, get_settings()))
    audit_sink = None if no_audit else open_audit_log(audit_log)
    caller = cli_caller("medml vitals watch")
    handle = _open_source(source)
    sink: IO[str]
    try:
        sink = sys.stdout if output is None else output.open("a", encoding="utf-8")
    except OSError as e:
        raise InputFileError(f"cannot write {output}: {e.strerror}", "give a writable --out path") from None
    stream = EarlyWarningStream(config, on_problem=_warn)
    start = time.perf_counter()
    number = 0
    try:
        for number, line in enumerate(_lines(handle, follow, idle_exit), start=1):
            if learned is not None:
                with contextlib.suppress(orjson.JSONDecodeError):  # the stream reports the line
                    learned.observe(orjson.loads(line))
            for assessment in stream.feed(line, number):
                record = assessment.to_dict()
                if learned is not None:
                    record["learned"] = learned.score(assessment.patient, assessment.time.timestamp())
                sink.write(orjson.dumps(record).decode() + "\n")
                sink.flush()
                if audit_sink is not None and assessment.alert:
                    digest = hashlib.sha256(line).hexdigest()
                    audit_sink.append(
                        news2_alert_entry(record, service="vitals-watch", caller=caller, input_sha256=digest)
                    )
    except KeyboardInterrupt:
        err.print(f"stopped at line {number}", highlight=False)
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()
        if sink is not sys.stdout:
            sink.close()
        if audit_sink is not None:
            audit_sink.close()
    counts = stream.counts()
    _summary(counts, time.perf_counter() - start)
    if audit_sink is not None:
        err.print(f"{counts['alerts raised']:,} alerts written to the audit log {audit_sink.path}", highlight=False)
    if counts["lines read"] and counts.get("not JSON", 0) == counts["lines read"]:
        raise InputFileError(
            f"no line of {source} is JSON", "give FHIR R4 Observations as NDJSON (one JSON resource per line)"
        )


def _sub_scores(n: Any) -> str:
    short = {
        "respiratory rate": "RR",
        "SpO2": "SpO2",
        "supplemental oxygen": "O2",
        "systolic blood pressure": "SBP",
        "pulse": "HR",
        "consciousness": "ACVPU",
        "temperature": "T",
    }
    return " ".join(f"{short[k]} {v}" for k, v in n.sub_scores.items())


def _print(rows: list[dict[str, Any]], fmt: ScoreFormat) -> None:
    if fmt is ScoreFormat.jsonl:
        for r in rows:
            sys.stdout.write(orjson.dumps(r["record"]).decode() + "\n")
        return
    table = Table("row/patient", "time", "NEWS2", "band", "sub-scores", "not scored", "qSOFA", header_style="bold")
    for r in rows:
        n, q = r["news2"], r["qsofa"]
        positive = {True: "positive", False: "negative", None: "undetermined"}[q.positive]
        table.add_row(
            r["label"],
            r["time"],
            str(n.total) + ("" if n.complete else " (partial)"),
            n.band,
            _sub_scores(n),
            ", ".join((*n.missing, *(f"{s} (stale)" for s in n.stale))) or "-",
            f"{q.total} {positive}",
        )
    out.print(table)
    shown = []
    for r in rows:
        n = r["news2"]
        if n.band not in shown:
            shown.append(n.band)
    from medml.vitals.news2 import response

    for band in shown:
        action, monitoring = response(band, 1)
        out.print(f"{band}: {action}; monitoring at least {monitoring}", highlight=False)
    out.print(INTENDED_USE, highlight=False)


def _record(label: dict[str, Any], n: Any, q: Any, extra: dict[str, Any]) -> dict[str, Any]:
    return {**label, "news2": n.to_dict(), "qsofa": q.to_dict(), **extra}


def _score_csv(path: Path) -> list[dict[str, Any]]:
    from medml.vitals.news2 import news2
    from medml.vitals.qsofa import qsofa
    from medml.vitals.table import read_observation_sets

    rows = []
    for s in read_observation_sets(path):
        for p in s.problems:
            _warn(f"row {s.row}: {p}")
        if not s.usable:
            continue
        n, q = news2(s.vitals, spo2_scale=s.spo2_scale), qsofa(s.vitals)
        label = {"row": s.row, "patient": s.patient, "time": s.time}
        rows.append(
            {
                "label": f"{s.row}: {s.patient}",
                "time": s.time or "-",
                "news2": n,
                "qsofa": q,
                "record": _record(label, n, q, {"problems": list(s.problems)}),
            }
        )
    return rows


def _score_fhir(path: Path, text: bytes, validity: timedelta, scale2: frozenset[str]) -> list[dict[str, Any]]:
    from medml.vitals.stream import EarlyWarningStream, StreamConfig

    stream = EarlyWarningStream(StreamConfig(validity=validity, spo2_scale2=scale2), on_problem=_warn)
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError:
        document = None
    if isinstance(document, dict):
        stream.feed(text, 1)
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            stream.feed(line, number)
    counts = stream.counts()
    if counts["lines read"] and counts.get("not JSON", 0) == counts["lines read"]:
        raise InputFileError(f"no line of {path} is JSON", "give a CSV, a FHIR Bundle or FHIR NDJSON")
    rows = []
    for patient in stream.patients():
        a = stream.current(patient)
        time_text = a.to_dict()["time"]
        extra = {"parameters": a.to_dict()["parameters"]}
        rows.append(
            {
                "label": patient,
                "time": time_text,
                "news2": a.news2,
                "qsofa": a.qsofa,
                "record": _record({"patient": patient, "time": time_text}, a.news2, a.qsofa, extra),
            }
        )
    used = counts["observations used"]
    skipped = sum(v for k, v in counts.items() if k not in ("lines read", "observations used", "alerts raised"))
    err.print(f"{used:,} observations used, {skipped:,} not used (see the warnings above)", highlight=False)
    return rows


@vitals_app.command("score", help=SCORE_HELP)
def score_cmd(
    path: Annotated[Path, typer.Argument(help="a CSV of observation sets, a FHIR Bundle (.json) or FHIR NDJSON")],
    fmt: Annotated[ScoreFormat, typer.Option("--format", help="table, or jsonl (one JSON per row)")] = (
        ScoreFormat.table
    ),
    validity_hours: ValidityOption = 4.0,
    spo2_scale_2: Scale2Option = None,
) -> None:
    """NEWS2 and qSOFA for each row of a CSV, or each patient of FHIR input (their latest values)."""
    if not path.exists():
        raise InputFileError(f"{path} does not exist", "give a CSV, a FHIR Bundle or FHIR NDJSON file")
    if path.is_dir():
        raise InputFileError(f"{path} is a folder", "give a CSV, a FHIR Bundle or FHIR NDJSON file")
    try:
        text = path.read_bytes()
    except OSError as e:
        raise InputFileError(f"cannot read {path}: {e.strerror}", "check its permissions") from None
    validity = _hours(validity_hours, "--validity-hours")
    if path.suffix.lower() != ".csv" and text.lstrip()[:1] == b"{":
        rows = _score_fhir(path, text, validity, frozenset(spo2_scale_2 or ()))
    else:
        if spo2_scale_2:
            raise ConfigError("--spo2-scale-2 applies to FHIR input", "give the scale in the CSV column spo2_scale")
        rows = _score_csv(path)
    if not rows:
        err.print(f"nothing to score in {path}", highlight=False)
    _print(rows, fmt)


from medml.cli.vitals_ews import TRAIN_EWS_HELP, train_ews_cmd  # noqa: E402  (the learned early-warning model)

vitals_app.command("train-ews", help=TRAIN_EWS_HELP)(train_ews_cmd)

from medml.cli.wearable import wearable_app  # noqa: E402  (the wearable commands are a group of their own module)

vitals_app.add_typer(wearable_app, name="wearable")


from medml.cli.ecg import ecg_app  # noqa: E402  (the ECG commands are a group of their own module)

vitals_app.add_typer(ecg_app, name="ecg")
