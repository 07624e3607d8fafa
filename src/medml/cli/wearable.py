"""`medml vitals wearable ...`: import a wearable's export into the FHIR store, and run the remote-monitoring rules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from medml.cli._console import err, out
from medml.cli.vitals_audit_options import AuditLogOption, NoAuditOption, open_audit_log
from medml.errors import InputFileError

wearable_app = typer.Typer(
    no_args_is_help=True,
    help="Wearables: an export (CSV or FHIR) into the FHIR store with its Device; resting heart rate and SpO2 alerts.",
)
IMPORT_HELP = (
    "Read a wearable's export and upsert it into the FHIR store as Observations (LOINC heart rate 8867-4, SpO2 "
    "59408-5, steps 55423-8, sleep duration 93832-4) that reference a Device.\n\n"
    "CSV: a header row with a time column (time, timestamp or datetime; ISO 8601, read in --timezone where it has "
    "no offset) and any of heart_rate (/min), spo2 (%), steps, sleep (min); a unit may follow in brackets: "
    "heart_rate[bpm], spo2[1] (fraction), sleep[h]. FHIR (.json Bundle or .ndjson): Observations that name a device, "
    "and the Devices.\n\nUnknown columns stop the import (exit 2, nothing written); a bad line (not parseable, a time "
    "in the future, a value outside its range in its unit) is counted, named and left out."
)
StoreOption = Annotated[Path | None, typer.Option("--store", help="the FHIR store (default MEDML_HOME/fhir.duckdb)")]


def _store_path(store: Path | None) -> Path:
    from medml.config import get_settings

    return store if store is not None else get_settings().fhir_store


@wearable_app.command("import", help=IMPORT_HELP)
def import_cmd(
    path: Annotated[Path, typer.Argument(help="the export: a CSV, a FHIR Bundle (.json) or FHIR NDJSON")],
    patient: Annotated[str | None, typer.Option(help="CSV: whose export, as Patient/<id>")] = None,
    manufacturer: Annotated[str, typer.Option(help="CSV: the device's manufacturer")] = "",
    model: Annotated[str, typer.Option(help="CSV: the device's model")] = "",
    serial: Annotated[str, typer.Option(help="CSV: the device's serial number")] = "",
    timezone: Annotated[str, typer.Option(help="CSV: the zone of times without an offset (IANA name)")] = "UTC",
    store: StoreOption = None,
) -> None:
    from medml.errors import ConfigError
    from medml.fhir.store import FhirStore
    from medml.vitals.wearables import Device, read_wearable_csv, read_wearable_fhir

    if not path.is_file():
        raise InputFileError(f"{path} is not a file", "give a wearable export: a CSV, a FHIR Bundle or NDJSON")
    if path.suffix.lower() == ".csv":
        if patient is None:
            raise ConfigError("a CSV export does not say whose it is", "add --patient Patient/<id>")
        got = read_wearable_csv(path, patient, Device(manufacturer, model, serial), timezone=timezone)
    else:
        got = read_wearable_fhir(path)
    for line, why in got.problems[:20]:
        err.print(f"warning: {path.name} line {line}: {why}", highlight=False, markup=False, soft_wrap=True)
    if len(got.problems) > 20:
        err.print(f"warning: ... and {len(got.problems) - 20} more lines left out", highlight=False)
    n = sum(got.measurements.values())
    left = ", ".join(f"{k} {v:,}" for k, v in got.counts.items())
    if n == 0:
        raise InputFileError(
            f"{path}: no usable measurement in {got.lines:,} lines ({left or 'none'})",
            "check the export's columns, units and times",
        )
    with FhirStore(_store_path(store)) as fs:
        fs.add(got.resources)
    kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(got.measurements.items()))
    out.print(
        f"imported {n:,} Observations ({kinds}) from {got.lines:,} lines into {_store_path(store)}", highlight=False
    )
    if left:
        err.print(f"left out: {left}", highlight=False, markup=False)


@wearable_app.command("check")
def check_cmd(
    patient: Annotated[str | None, typer.Option(help="one patient (Patient/<id>); default: every patient")] = None,
    store: StoreOption = None,
    rise_bpm: Annotated[float, typer.Option(help="resting heart rate rise over the baseline that alerts")] = 5.0,
    spo2_below: Annotated[float, typer.Option(help="SpO2 (%) below which a sustained run alerts")] = 92.0,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="print the alerts as JSON lines")] = False,
    audit_log: AuditLogOption = None,
    no_audit: NoAuditOption = False,
) -> None:
    """Run the resting-heart-rate and SpO2 rules over the wearable Observations in the store and print alerts; each
    alert not yet in the audit log is written there (once, however often the rules are run)."""
    from medml.errors import ConfigError
    from medml.fhir.store import FhirStore
    from medml.vitals.wearables import INTENDED_USE, RULES_NAME, Rules, check_patient, observations_by_patient

    if not 0 < rise_bpm < 100 or not 50 <= spo2_below <= 100:
        raise ConfigError("--rise-bpm must be 0-100 and --spo2-below 50-100", "e.g. --rise-bpm 5 --spo2-below 92")
    rules = Rules(rise_bpm=rise_bpm, spo2_below=spo2_below)
    audit_sink = None if no_audit else open_audit_log(audit_log)
    with FhirStore(_store_path(store), read_only=True) as fs:
        texts = fs.con.execute(
            "SELECT resource FROM resources WHERE resource_type = 'Observation' "
            "AND json_extract_string(resource, '$.device.reference') IS NOT NULL"
        ).fetchall()
    series = observations_by_patient(orjson.loads(t) for (t,) in texts)
    if patient is not None:
        if patient not in series:
            raise ConfigError(f"no wearable Observations for {patient} in the store", "import an export first")
        series = {patient: series[patient]}
    if not series:
        err.print("no wearable Observations in the store: import an export first", highlight=False)
        return
    for line in rules.describe():
        out.print(f"rule: {line}", highlight=False, soft_wrap=True)
    n_alerts = 0
    raised = []
    for who, readings in sorted(series.items()):
        alerts, summary = check_patient(who, readings, rules)
        n_alerts += len(alerts)
        raised += alerts
        if jsonl:
            for a in alerts:
                out.print(orjson.dumps(a.to_dict()).decode(), highlight=False, soft_wrap=True, markup=False)
            continue
        base = summary.get("rhr_baseline", "- (too few days)")
        out.print(
            f"{who}: resting HR days {summary['rhr_days']}, last 3-day mean {summary.get('rhr_recent', '-')}, "
            f"baseline {base}; lowest SpO2 {summary.get('spo2_lowest', '-')}",
            highlight=False,
            soft_wrap=True,
        )
        for a in alerts:
            out.print(f"  ALERT {a.rule} at {a.at}: {a.detail}", highlight=False, soft_wrap=True, markup=False)
    out.print(f"{n_alerts} alert(s) by {RULES_NAME}. {INTENDED_USE}", highlight=False, soft_wrap=True)
    if audit_sink is not None:
        new, known = _audit(audit_sink, [a.to_dict() for a in raised])
        err.print(
            f"{new} new alert(s) written to the audit log {audit_sink.path} ({known} already there)", highlight=False
        )


def _audit(sink: Any, alerts: list[dict[str, Any]]) -> tuple[int, int]:
    """Write each alert the audit log does not hold yet; (written, already there)."""
    from medml.service.vitals_audit import WEARABLE_EVENT, audited_digests, cli_caller, wearable_alert_entry

    caller = cli_caller("medml vitals wearable check")
    seen = audited_digests(sink.path, WEARABLE_EVENT)
    written = 0
    try:
        for alert in alerts:
            entry = wearable_alert_entry(alert, caller=caller)
            if entry.output_sha256 in seen:
                continue
            sink.append(entry)
            seen.add(str(entry.output_sha256))
            written += 1
    finally:
        sink.close()
    return written, len(alerts) - written
