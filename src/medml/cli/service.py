"""`medml serve`, `medml deploy`, `medml undeploy` and `medml deployments`: models as CDS Hooks services."""

from __future__ import annotations

import ipaddress
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from medml.cli._console import err, out
from medml.errors import ConfigError, quote

# Wide enough for the tables when the output is a file or a pipe (rich would assume 80 columns).

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _thresholds(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    parts = text.split(",")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise ConfigError(
            f"--thresholds {quote(text)} is not two numbers", "pass WARNING,CRITICAL, e.g. 0.15,0.40"
        ) from None
    return low, high


def deploy(
    model: Annotated[str, typer.Argument(help="registered model, NAME or NAME@VERSION (default: the latest)")],
    service_id: Annotated[str | None, typer.Option("--id", help="service id (default: the model name)")] = None,
    thresholds: Annotated[
        str | None,
        typer.Option(help="WARNING,CRITICAL risks for the card indicator (default: from the test-set event rate)"),
    ] = None,
    title: Annotated[str | None, typer.Option(help="service title shown in the EHR")] = None,
    risk_assessment: Annotated[
        str, typer.Option(help="offer the FHIR RiskAssessment as a 'suggestion', a 'system-action', or 'none'")
    ] = "suggestion",
    config: Annotated[Path | None, typer.Option(help="service.yaml (default MEDML_HOME/service/service.yaml)")] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="replace a deployment of this id that alerts differently")
    ] = False,
    shadow: Annotated[
        bool,
        typer.Option(
            "--shadow",
            help="score MODEL silently beside the model the service --id serves (no card), for the comparison",
        ),
    ] = False,
) -> None:
    """Make a registered model a patient-view CDS service, or an image model an image service at
    /imaging/ID (a running `medml serve` picks it up). With --shadow, a challenger scored beside the champion."""
    from medml.config import get_settings
    from medml.registry.store import parse_ref
    from medml.service.config import load_config
    from medml.service.deploy import changed
    from medml.service.deploy import deploy as run_deploy
    from medml.service.deploy import deployments as current

    settings = get_settings()
    cfg = load_config(settings, config)
    if shadow:
        _deploy_shadow(settings, cfg, model, service_id, _thresholds(thresholds), title, risk_assessment, replace)
        return
    before = current(cfg).get(service_id or parse_ref(model)[0])
    dep = run_deploy(
        settings,
        cfg,
        model,
        service_id=service_id,
        thresholds=_thresholds(thresholds),
        title=title,
        risk_assessment=risk_assessment,
        replace_existing=replace,
    )
    if before is not None and (before.model != dep.model or changed(before, dep)):
        what = "; ".join(changed(before, dep)) or f"its model from {before.model} to {dep.model}"
        out.print(f"replaced the deployment '{dep.service_id}': {what}", highlight=False)
    if not dep.is_hook:
        size = " x ".join(str(v) for v in dep.spec["image_size"])
        out.print(f"deployed {dep.model} as image service '{dep.service_id}' (not a CDS hook)")
        out.print(f"  endpoint   POST {cfg.imaging_url(dep.service_id)}  (Content-Type: application/dicom)")
        out.print(f"  input      one DICOM image, resized to {size} with {dep.spec['in_channels']} channel(s)")
        return
    out.print(f"deployed {dep.model} as CDS service '{dep.service_id}' ({dep.hook})")
    out.print(f"  endpoint   {cfg.service_url(dep.service_id)}")
    out.print(
        f"  indicator  warning from {dep.thresholds[0]:.0%}, critical from {dep.thresholds[1]:.0%}: "
        f"{dep.thresholds_note}"
    )
    out.print(
        f"  prefetch   {', '.join(dep.serving.definition.codes()[:6])}, ... "
        f"({len(dep.serving.definition.codes())} codes)"
    )


def _deploy_shadow(
    settings: Any,
    cfg: Any,
    model: str,
    service_id: str | None,
    thresholds: tuple[float, float] | None,
    title: str | None,
    risk_assessment: str,
    replace: bool,
) -> None:
    from medml.service.deploy import deploy_shadow

    if title is not None or risk_assessment != "suggestion" or replace:
        raise ConfigError(
            "--title, --risk-assessment and --replace do not apply to a shadow: it shows no card",
            "leave them out (a shadow over an earlier one replaces it)",
        )
    dep = deploy_shadow(settings, cfg, model, service_id=service_id, thresholds=thresholds)
    assert dep.shadow is not None
    out.print(
        f"{dep.shadow.model} is scored silently beside {dep.model} on every call of '{dep.service_id}' "
        "(no card); its scores are recorded as shadow ones in the monitoring store",
        highlight=False,
    )


def undeploy(
    service_id: Annotated[str, typer.Argument(help="the service id (`medml deployments`)")],
    config: Annotated[Path | None, typer.Option(help="service.yaml")] = None,
    shadow: Annotated[bool, typer.Option("--shadow", help="remove only the service's shadow (challenger)")] = False,
) -> None:
    """Remove a CDS service; the model stays in the registry."""
    from medml.config import get_settings
    from medml.service.config import load_config
    from medml.service.deploy import undeploy as run_undeploy
    from medml.service.deploy import undeploy_shadow

    cfg = load_config(get_settings(), config)
    if shadow:
        challenger = undeploy_shadow(cfg, service_id)
        out.print(f"'{service_id}' no longer scores its shadow {challenger.model}; the model stays registered")
        return
    gone = run_undeploy(cfg, service_id)
    out.print(f"undeployed '{service_id}' ({gone.model}); the model stays registered")


def deployments(config: Annotated[Path | None, typer.Option(help="service.yaml")] = None) -> None:
    """List the deployed CDS services."""
    from medml.config import get_settings
    from medml.service.config import load_config
    from medml.service.deploy import deployments as current

    cfg = load_config(get_settings(), config)
    deps = current(cfg)
    if not deps:
        out.print("no CDS services deployed; `medml deploy MODEL` deploys one")
        return
    t = Table(title="deployed CDS services", header_style="bold")
    for col in ("id", "kind", "hook", "model", "warning", "critical", "RiskAssessment", "deployed"):
        t.add_column(col)
    for sid, d in deps.items():
        if d.is_hook:
            t.add_row(
                sid,
                d.kind,
                d.hook,
                d.model + (f" (shadow: {d.shadow.model})" if d.shadow is not None else ""),
                f"{d.thresholds[0]:.0%}",
                f"{d.thresholds[1]:.0%}",
                d.risk_assessment,
                d.deployed,
            )
        else:
            t.add_row(sid, d.kind, "-", d.model, "-", "-", "-", d.deployed)
    out.print(t)


def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8800,
    workers: Annotated[int, typer.Option(help="worker processes (one per core)")] = 1,
    config: Annotated[Path | None, typer.Option(help="service.yaml (default MEDML_HOME/service/service.yaml)")] = None,
    base_url: Annotated[str | None, typer.Option(help="the URL EHRs call (JWT aud); default http://HOST:PORT")] = None,
    insecure_no_auth: Annotated[
        bool, typer.Option("--insecure-no-auth", help="accept hook calls without a JWT (loopback only; cards say so)")
    ] = False,
    ssl_certfile: Annotated[Path | None, typer.Option(help="TLS certificate (PEM) for HTTPS")] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(help="TLS private key (PEM) for HTTPS")] = None,
) -> None:
    """Run the CDS Hooks service (discovery at /cds-services, the web pages at /) under uvicorn.

    CDS Hooks requires HTTPS: off loopback, give --ssl-certfile and --ssl-keyfile, or run behind a proxy that
    terminates TLS and pass its https --base-url."""
    from medml.config import get_settings
    from medml.service.config import load_config

    if insecure_no_auth and not _is_loopback(host):
        raise ConfigError(
            f"--insecure-no-auth on {host}: hook calls from the network would need no token",
            "listen on loopback (127.0.0.1), or configure the EHR's issuer in service.yaml",
        )
    if not 1 <= port <= 65535 or workers < 1:
        raise ConfigError(f"port {port} or workers {workers} out of range", "use a port 1-65535 and 1+ workers")
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise ConfigError("HTTPS needs both --ssl-certfile and --ssl-keyfile", "give the certificate and its key")
    for f in (ssl_certfile, ssl_keyfile):
        if f is not None and not f.is_file():
            raise ConfigError(f"TLS file {f} does not exist", "give the PEM files of the service's certificate")
    tls = ssl_certfile is not None
    url = base_url or f"{'https' if tls else 'http'}://{host}:{port}"
    if not tls and not _is_loopback(host) and not url.startswith("https://"):
        raise ConfigError(
            f"serving plain HTTP on {host}: CDS Hooks requires HTTPS off loopback",
            "give --ssl-certfile and --ssl-keyfile, or --base-url https://... behind a TLS proxy",
        )
    cfg = load_config(get_settings(), config, base_url=url, auth="off" if insecure_no_auth else None)
    if cfg.auth == "jwt" and not cfg.issuers:
        err.print(
            "[yellow]warning:[/] no trusted EHR issuers in service.yaml: every hook call will be refused "
            "with 401 (the web pages still work). Add issuers, or use --insecure-no-auth on loopback."
        )
    os.environ["MEDML_SERVICE_BASE_URL"] = cfg.base_url
    os.environ["MEDML_SERVICE_AUTH"] = cfg.auth
    if config is not None:
        os.environ["MEDML_SERVICE_CONFIG"] = str(config.resolve())
    out.print(
        f"medml CDS Hooks service on {cfg.base_url}  (discovery: {cfg.base_url}/cds-services, "
        f"patients: {cfg.base_url}/)"
    )
    _exec_uvicorn(host, port, workers, ssl_certfile, ssl_keyfile)


#: the program `medml serve` becomes: the ``uvicorn.run`` call it made itself before, in a fresh interpreter (the
#: app by import string: each worker builds its own from the MEDML_SERVICE_* variables)
UVICORN = (
    "import json, sys, uvicorn; uvicorn.run('medml.service.app:app_from_env', factory=True, **json.loads(sys.argv[1]))"
)


def _exec_uvicorn(host: str, port: int, workers: int, ssl_certfile: Path | None, ssl_keyfile: Path | None) -> None:
    """Replace this process by uvicorn (the same pid, so signals and process managers see no difference).

    Run here, uvicorn's supervising process (``--workers`` > 1) would keep the CLI's modules (typer, rich, the
    configuration) resident for the life of the service: 54 MiB RSS, against 26 MiB for a fresh interpreter that
    imports only uvicorn; with one worker, the one process is that much smaller too."""
    options = {
        "host": host,
        "port": port,
        "workers": workers,
        "log_level": "warning",
        "access_log": False,
        "server_header": False,
        "ssl_certfile": str(ssl_certfile) if ssl_certfile else None,
        "ssl_keyfile": str(ssl_keyfile) if ssl_keyfile else None,
    }
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-c", UVICORN, json.dumps(options)])


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
