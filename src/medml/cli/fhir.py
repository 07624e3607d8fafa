"""`medml fhir ...`: ingest FHIR into the store, inspect it, run SQL-on-FHIR views, run the conformance suite."""

from __future__ import annotations

import ipaddress
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from medml.cli._console import err, out
from medml.config import get_settings
from medml.errors import ConfigError, InputFileError

fhir_app = typer.Typer(no_args_is_help=True, help="FHIR R4 data: a DuckDB store and SQL-on-FHIR v2 views.")
view_app = typer.Typer(no_args_is_help=True, help="SQL-on-FHIR v2 ViewDefinitions.")
fhir_app.add_typer(view_app, name="view")


StoreOption = Annotated[
    Path | None, typer.Option("--store", help="DuckDB store file [default: MEDML_HOME/fhir.duckdb]")
]


class OnErrorChoice(StrEnum):
    abort = "abort"
    skip = "skip"


class EngineChoice(StrEnum):
    duckdb = "duckdb"
    spark = "spark"


EngineOption = Annotated[
    EngineChoice, typer.Option("--engine", help="duckdb: the store on this machine; spark: Apache Spark (medml[spark])")
]
MasterOption = Annotated[
    str, typer.Option("--master", help="the Spark master (--engine spark): local[N], spark://HOST:PORT, yarn")
]


def _spark(master: str) -> Any:
    from medml.scale import spark_session

    return spark_session(master)


def _store_path(store: Path | None) -> Path:
    return store if store is not None else get_settings().fhir_store


@fhir_app.command("ingest")
def ingest_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Bundles (.json), Bulk Data NDJSON (.ndjson), .gz, directories")],
    store: StoreOption = None,
    on_error: Annotated[
        OnErrorChoice,
        typer.Option(help="abort: write nothing on the first bad line; skip: write the rest and list what was skipped"),
    ] = OnErrorChoice.abort,
    engine: EngineOption = EngineChoice.duckdb,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="--engine spark: a new folder for Parquet, one folder per type")
    ] = None,
    master: MasterOption = "local[2]",
) -> None:
    """Read FHIR files and upsert their resources (by type and id) into the store, in one transaction.

    With --engine spark: NDJSON (files, folders, .gz) to Parquet partitioned by resource type in --out.
    """
    if engine is EngineChoice.spark:
        _ingest_spark(paths, out_dir, master)
        return
    from medml.fhir.ingest import ingest
    from medml.fhir.store import FhirStore

    with FhirStore(_store_path(store)) as fs:
        report = ingest(fs, paths, on_error=on_error.value)
        total = sum(fs.counts().values())
    out.print(
        f"ingested {report.resources:,} resources from {report.files} files in {report.seconds:.1f} s "
        f"({report.rate:,.0f}/s); the store {_store_path(store)} holds {total:,}"
    )
    for rtype, n in report.by_type.most_common():
        out.print(f"  {rtype:<24} {n:>9,}")
    if report.skipped:
        err.print(f"skipped {len(report.skipped)}:")
        for problem in report.skipped[:20]:
            err.print(f"  {problem}", highlight=False)
        if len(report.skipped) > 20:
            err.print(f"  ... and {len(report.skipped) - 20} more")


def _ingest_spark(paths: list[Path], out_dir: Path | None, master: str) -> None:
    from medml.scale._output import check_new_folder
    from medml.scale.ingest import ingest_ndjson, ndjson_files

    if out_dir is None:
        raise ConfigError("--engine spark writes Parquet, not the store", "give a new folder: --out FOLDER")
    check_new_folder(out_dir)
    ndjson_files(paths)  # bad paths are refused before Spark starts
    report = ingest_ndjson(_spark(master), paths, out_dir)
    out.print(
        f"wrote {report.resources:,} resources from {report.files} files in {report.seconds:.1f} s "
        f"({report.rate:,.0f}/s) to {out_dir}"
    )
    for rtype, n in sorted(report.by_type.items(), key=lambda kv: -kv[1]):
        out.print(f"  {rtype:<24} {n:>9,}")


@fhir_app.command("stats")
def stats_cmd(store: StoreOption = None) -> None:
    """Resources per type, patients, and references that point to nothing in the store."""
    from medml.fhir.store import FhirStore

    with FhirStore(_store_path(store), read_only=True) as fs:
        counts = fs.counts()
        n_missing, examples = fs.dangling_references()
    table = Table("resource type", "count", title=f"FHIR store {_store_path(store)}")
    for rtype, n in counts.items():
        table.add_row(rtype, f"{n:,}")
    table.add_row("[bold]total", f"[bold]{sum(counts.values()):,}")
    out.print(table)
    if n_missing:
        out.print(f"{n_missing} referenced resources are not in the store, e.g. {', '.join(examples[:5])}")
    else:
        out.print("every literal reference resolves to a stored resource")


@fhir_app.command("get")
def get_cmd(
    reference: Annotated[str, typer.Argument(help="Type/id, e.g. Patient/123")], store: StoreOption = None
) -> None:
    """Print one stored resource as JSON."""
    from medml.fhir.store import FhirStore

    with FhirStore(_store_path(store), read_only=True) as fs:
        resource = fs.resolve(reference)
    sys.stdout.write(orjson.dumps(resource, option=orjson.OPT_INDENT_2).decode() + "\n")


def read_view_file(path: Path) -> dict[str, Any]:
    """A ViewDefinition from a JSON file, or a clear error."""
    try:
        view = orjson.loads(path.read_bytes())
    except FileNotFoundError as exc:
        raise InputFileError(f"{path} does not exist", "give the path of a ViewDefinition JSON file") from exc
    except orjson.JSONDecodeError as exc:
        raise InputFileError(f"{path} is not valid JSON ({exc})", "a ViewDefinition is one JSON object") from exc
    if not isinstance(view, dict):
        raise ConfigError(f"{path} is not a ViewDefinition (a JSON object)", "see the SQL on FHIR v2 specification")
    return view


@view_app.command("run")
def view_run_cmd(
    view: Annotated[str, typer.Argument(help="a ViewDefinition JSON file, or the name of a built-in view")],
    output: Annotated[Path | None, typer.Option("--out", help="write rows to a .csv or .parquet file")] = None,
    store: StoreOption = None,
    limit: Annotated[int, typer.Option(help="rows to print when there is no --out")] = 20,
    engine: EngineOption = EngineChoice.duckdb,
    inputs: Annotated[
        list[Path] | None,
        typer.Option("--input", help="--engine spark: a Parquet folder from `ingest --engine spark`, or NDJSON"),
    ] = None,
    master: MasterOption = "local[2]",
) -> None:
    """Run a ViewDefinition over the store: print the first rows, or write them all to a file.

    With --engine spark: over --input, written as a Parquet folder to --out.
    """
    from medml.fhir.store import FhirStore
    from medml.fhir.view import run_view
    from medml.fhir.views import get_view, view_names

    if view in view_names():
        definition = get_view(view)
    else:
        path = Path(view)
        if not path.exists() and path.suffix != ".json":
            raise ConfigError(
                f"{view!r} is neither a ViewDefinition file nor a built-in view",
                f"built-in views: {', '.join(view_names())}",
            )
        definition = read_view_file(path)
    if engine is EngineChoice.spark:
        _view_run_spark(definition, inputs, output, master)
        return
    if output is not None and output.suffix.lower() not in (".csv", ".parquet"):
        raise ConfigError(
            f"cannot write {output.suffix or 'a file without suffix'}", "use --out rows.csv or rows.parquet"
        )
    with FhirStore(_store_path(store), read_only=True) as fs:
        table = run_view(fs.con, definition)
    if output is None:
        frame = table.slice(0, limit).to_pandas()
        out.print(frame.to_string(index=False, max_colwidth=40), highlight=False)
        out.print(
            f"{table.num_rows:,} rows" + (f" (first {limit} shown; --out writes all)" if table.num_rows > limit else "")
        )
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".partial")
    if output.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, tmp)
    else:
        import pyarrow.csv as pcsv

        pcsv.write_csv(_csv_safe(table), tmp)
    tmp.replace(output)
    out.print(f"wrote {table.num_rows:,} rows x {table.num_columns} columns to {output}")


def _view_run_spark(definition: dict[str, Any], inputs: list[Path] | None, output: Path | None, master: str) -> None:
    from medml.fhir.view import compile_view, validate_view
    from medml.scale._output import check_new_folder
    from medml.scale.ingest import load_resources
    from medml.scale.views import write_view

    if not inputs or output is None:
        raise ConfigError(
            "--engine spark reads --input and writes a Parquet folder to --out",
            "e.g. medml fhir view run observations --engine spark --input parquet/ --out rows/",
        )
    check_new_folder(output)
    validate_view(definition)
    compile_view(definition, dialect="spark")  # a view the Spark dialect cannot express is refused before Spark
    spark = _spark(master)
    rows, columns = write_view(spark, definition, load_resources(spark, inputs), output)
    out.print(f"wrote {rows:,} rows x {len(columns)} columns to {output} (Parquet, Spark {spark.version})")


def _csv_safe(table: Any) -> Any:
    """Collection columns (lists) as JSON text, since CSV has no lists."""
    import pyarrow as pa

    columns = []
    for col in table.columns:
        if pa.types.is_list(col.type) or pa.types.is_struct(col.type):
            col = pa.array([None if v is None else orjson.dumps(v).decode() for v in col.to_pylist()], pa.string())
        columns.append(col)
    return pa.table(columns, names=table.column_names)


@view_app.command("list")
def view_list_cmd() -> None:
    """The built-in ViewDefinitions for machine learning."""
    from medml.fhir.view import compile_view
    from medml.fhir.views import get_view, view_names

    table = Table("name", "resource", "columns", "description")
    for name in view_names():
        v = get_view(name)
        cols = [c.name for c in compile_view(v).columns]
        table.add_row(name, v["resource"], ", ".join(cols), v.get("description", ""))
    out.print(table)


@fhir_app.command("convert")
def convert_cmd(
    source: Annotated[str, typer.Argument(help="what to convert: physionet-2012")],
    out_dir: Annotated[Path, typer.Argument(help="folder for the Bulk Data NDJSON files")],
    data: Annotated[Path | None, typer.Option(help="the PhysioNet 2012 folder [default: the shared data's]")] = None,
    limit: Annotated[int | None, typer.Option(help="convert only the first N stays")] = None,
    gzip: Annotated[bool, typer.Option("--gzip/--no-gzip", help="write .ndjson.gz")] = True,
) -> None:
    """Convert a dataset to FHIR R4 Bulk Data NDJSON (then: medml fhir ingest OUT_DIR)."""
    from medml.data.datasets import physionet2012
    from medml.fhir.convert.physionet2012 import write_ndjson

    if source != "physionet-2012":
        raise ConfigError(f"cannot convert {source!r}", "the converter available is physionet-2012")
    src = data if data is not None else (get_settings().data_root / physionet2012.SOURCE).parent
    counts = write_ndjson(src, out_dir, limit=limit, compress=gzip)
    out.print(
        f"wrote {', '.join(f'{n:,} {t}' for t, n in counts.items())} to {out_dir}; next: medml fhir ingest {out_dir}"
    )


@fhir_app.command("conformance")
def conformance_cmd(
    paths: Annotated[list[Path], typer.Argument(help="SQL-on-FHIR test files or directories of them")],
    engine: EngineOption = EngineChoice.duckdb,
    master: MasterOption = "local[2]",
) -> None:
    """Run the SQL-on-FHIR v2 conformance tests; print `N passed, M failed` and each failure."""
    from medml.fhir.conformance import run_conformance

    if engine is EngineChoice.spark:
        from medml.scale.views import SparkEngine

        result = run_conformance(paths, SparkEngine(_spark(master)))
    else:
        result = run_conformance(paths)
    for case in result.failures:
        out.print(f"[red]FAIL[/] {case.file}: {case.title}: {case.reason}", highlight=False, soft_wrap=True)
    out.print(result.summary())
    if result.failures:
        raise typer.Exit(1)


TOKEN_ENV = "MEDML_FHIR_TOKEN"
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any address


def read_token(token_file: Path | None) -> str | None:
    """The bearer token from ``token_file``, else from MEDML_FHIR_TOKEN, else None; never from the command line."""
    if token_file is None:
        token = os.environ.get(TOKEN_ENV)
        if token is not None and not token.strip():
            raise ConfigError(f"{TOKEN_ENV} is set but empty", f"put the token in it, or unset {TOKEN_ENV}")
        return token.strip() if token is not None else None
    try:
        token = token_file.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"cannot read the token file {token_file}: {exc}", "give a readable text file") from exc
    if not token:
        raise ConfigError(f"the token file {token_file} is empty", "write the token into it")
    if token_file.stat().st_mode & 0o077:
        err.print(f"[yellow]warning:[/] other users can read {token_file}; chmod 600 it", highlight=False)
    return token


def _access(config: Path | None, base_url: str) -> tuple[Any, Any]:
    """The access check of ``--config`` (its issuers' JWTs, SMART scopes per type; None without it) and the record
    of every read it does not audit itself (the shared token's; all of them on an open loopback or
    --trusted-network server): both write to one audit log, ``--config``'s service's, else MEDML_HOME's, so every
    read of the store leaves a record with its caller or its client's address and how it got in."""
    from medml.service.access import fhir_guard, fhir_read_entry
    from medml.service.audit import Caller, JsonlAuditLog
    from medml.service.auth import JwtVerifier
    from medml.service.config import load_config

    cfg = load_config(get_settings(), config)
    if config is not None and not cfg.issuers:
        raise ConfigError(
            f"{config} lists no issuers, so no bearer JWT could be accepted",
            "add the authorization servers under issuers: (iss and jwks), or drop --config",
        )
    cfg.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    sink = JsonlAuditLog(cfg.audit_path)
    guard = fhir_guard(JwtVerifier(cfg), sink, (base_url, base_url.rstrip("/"))) if config is not None else None

    def record(request: Any, status: int, patient: str | None, error: str | None, duration_ms: float) -> None:
        how = "shared token" if request.scope.get("medml.shared_token") else "no token (open server)"
        caller = Caller(sub=how, address=request.client.host if request.client else None)
        sink.append(fhir_read_entry(request, caller, status, patient, error, duration_ms))

    return guard, record


@fhir_app.command("serve")
def serve_cmd(
    store: StoreOption = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8801,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help=f"a file holding the token every request must carry as Authorization: Bearer TOKEN "
            f"(default: the {TOKEN_ENV} environment variable)",
        ),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url",
            help="the URL clients reach this server at, which starts every link it writes (default: http://HOST:PORT/)",
        ),
    ] = None,
    trusted_network: Annotated[
        bool,
        typer.Option(
            "--trusted-network",
            help="serve a non-loopback address without a token: only where all who can reach it may read the store",
        ),
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="a service.yaml whose issuers: may sign bearer JWTs for this server (aud: its base URL) carrying "
            "SMART 2.0 scopes: patient/, user/ or system/<Type>.r to read, .s to search; patient/ scopes reach "
            "only the token's patient claim. Each read is written to that service's audit log",
        ),
    ] = None,
    token: Annotated[str | None, typer.Option("--token", hidden=True)] = None,
) -> None:
    """Serve the store as a read-only FHIR R4 server (read, search, metadata) for the CDS service and its demo.

    After an ingest into the store, the next request is answered from the new data.

    Who may read: on loopback, anyone (as before). Off loopback, give --config service.yaml (bearer JWTs from its
    trusted issuers, with SMART scopes per resource type, every read audited with the token's iss and sub),
    --token-file (one shared token for every reader), or --trusted-network. Every read and search is written to
    the service's audit log (--config's, else MEDML_HOME's): with the JWT's iss and sub, or as the shared token's or
    an open server's, with the client's address. With both --config and --token-file, a request carrying the shared
    token reads everything and any other needs a JWT.
    GET /metadata is open when JWTs are accepted, as a SMART server's CapabilityStatement is.
    """
    import uvicorn

    from medml.fhir.server import check_base_url, create_fhir_app

    if token is not None:
        raise ConfigError(
            "--token shows the token to every user of this machine (in the process list and the shell history)",
            f"put it in a file (--token-file PATH, mode 600) or in the {TOKEN_ENV} environment variable",
        )
    if not 0 < port < 65536:
        raise ConfigError(f"--port must be between 1 and 65535, got {port}", "choose a free port, e.g. 8801")
    secret = read_token(token_file)
    if secret is None and config is None and not _is_loopback(host) and not trusted_network:
        raise ConfigError(
            f"serving the FHIR store on {host or 'every address'} without a token would let anyone who can reach "
            f"port {port} read every record",
            "accept bearer JWTs from trusted issuers (--config service.yaml), give a shared token (--token-file "
            f"PATH or {TOKEN_ENV}), listen on 127.0.0.1, or pass --trusted-network if everyone on that network "
            "may read the store",
        )
    if base_url is None:
        if host in WILDCARD_HOSTS:
            raise ConfigError(
                f"--host {host!r} listens on every address, so the server cannot know the one clients use in its links",
                f"give --base-url, e.g. --base-url http://fhir.example.org:{port}/",
            )
        base_url = f"http://{f'[{host}]' if ':' in host else host}:{port}/"
    base_url = check_base_url(base_url)
    path = _store_path(store)
    guard, read_audit = _access(config, base_url)
    app = create_fhir_app(path, bearer_token=secret, base_url=base_url, guard=guard, read_audit=read_audit)
    index = app.state.fhir_index.current()
    out.print(f"FHIR store {path}: {sum(index.counts.values()):,} resources indexed in {index.build_seconds:.1f} s")
    if secret is None and guard is None and not _is_loopback(host):
        err.print(f"[yellow]warning:[/] serving on {host} without a token (--trusted-network)", highlight=False)
    needs = ", bearer JWT with SMART scopes required" if guard else ", bearer token required" if secret else ""
    out.print(f"serving http://{host}:{port}/ as {base_url} (metadata at {base_url}metadata{needs})", highlight=False)
    uvicorn.run(app, host=host, port=port, log_level="info")
