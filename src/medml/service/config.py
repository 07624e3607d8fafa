"""How the CDS Hooks service runs: its public URL, whom it trusts, its limits and where it writes.

Read from ``MEDML_HOME/service/service.yaml`` when present (``medml serve --config FILE`` names another), else the
embedded defaults. Every path defaults to a place under ``MEDML_HOME/service``.

```yaml
base_url: https://cds.hospital.example/      # the URL the EHR calls; a JWT's aud must be base_url + the service path
issuers:                                     # the EHRs allowed to call, each with its keys
  - iss: https://fhir-ehr.example.com/
    jwks: keys/ehr-jwks.json                 # a JWK Set file, or an https URL
    jku: [https://fhir-ehr.example.com/jwk_uri]   # jku header values accepted for this issuer
    fhir_servers: [https://fhir-ehr.example.com/r4]  # fhirServer values this EHR's calls may name (else none)
check_expiry: true
max_token_lifetime_s: 300                    # a JWT whose exp is further ahead is refused
max_body_bytes: 1000000
max_in_flight: 16                            # hook bodies a worker holds parsed at once; later calls wait unread
max_dicom_bytes: 64000000                    # a DICOM file POSTed to /imaging/{id}
rate_per_minute: 600                         # per client (the JWT's iss, else the peer address)
fhir_store: /data/fhir.duckdb                # patients for the web pages (default MEDML_HOME/fhir.duckdb)
pages: false                                 # the web pages; default: on only when base_url is loopback
cors_origins: ["https://ehr.hospital.example"]   # browser callers (CORS); default "*" (bearer tokens, no cookies)
pgx_services: true                           # pgx-order-select/-sign, offered once MEDML_HOME/service/pgx holds results
news2_service: true                          # the NEWS2 (RCP 2017) patient-view card, id news2 (default off)
monitor: true                                # record each score's inputs in the monitoring store (medml monitor)
monitor_store: /data/monitor.duckdb          # default MEDML_HOME/monitor.duckdb
monitor_retention_days: 365                  # older predictions are deleted (default MEDML_MONITOR_RETENTION_DAYS)
access: auto                                 # pages, monitoring and /audit: a bearer JWT with SMART scopes (below)
role_claim: medml_role                       # optional: a token claim naming the caller's role(s)
access_token_lifetime_s: 3600                # an access token whose exp is further ahead is refused
```

Access by role (issue 18, :mod:`medml.service.access`): with ``access: auto`` (the default) the web pages, the
monitoring pages and ``GET /audit`` need ``Authorization: Bearer <JWT>`` whenever the service is not loopback-only:
when ``base_url`` is not a loopback URL, or when the request comes from an address other than loopback (the safe
reading of both: a loopback-only service is one that says so and is reached so). ``access: required`` asks for the
token on loopback too. The token is signed by an ``issuers:`` entry, names ``base_url`` as ``aud`` and carries SMART
App Launch 2.0 scopes; each route's scopes and roles are in ``medml.service.access.RULES``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medml.config import Settings
from medml.errors import ConfigError, InputFileError

DEFAULT_PORT = 8800


@dataclass(frozen=True)
class TrustedIssuer:
    """An EHR allowed to call: its ``iss``, its JWK Set (a file path or an https URL) and the ``jku`` it may name."""

    iss: str
    jwks: str
    jku: tuple[str, ...] = ()
    #: the FHIR servers (base URLs) the service may fetch from for this EHR, when a call names one in fhirServer
    fhir_servers: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServiceConfig:
    """Settings of one running service; ``home`` is ``MEDML_HOME/service``."""

    home: Path
    base_url: str = f"http://127.0.0.1:{DEFAULT_PORT}"
    issuers: tuple[TrustedIssuer, ...] = ()
    #: "jwt" verifies every hook call (CDS Hooks 2.0); "off" is for a loopback demo only and is stated on every card
    auth: str = "jwt"
    check_expiry: bool = True
    #: seconds of clock skew accepted on exp and iat
    leeway_s: float = 30.0
    #: the longest a JWT may still be valid for (exp - now): its jti is remembered until then
    max_token_lifetime_s: float = 300.0
    max_body_bytes: int = 1_000_000
    #: hook calls one worker reads and answers at once: the rest wait with their bodies unread (in the socket), so
    #: a burst does not hold a parsed prefetch (about 1 MB of Python objects each) per waiting call in memory
    max_in_flight: int = 16
    #: the largest DICOM file accepted by ``POST /imaging/{id}`` (hook bodies keep ``max_body_bytes``)
    max_dicom_bytes: int = 64_000_000
    rate_per_minute: int = 600
    fhir_timeout_s: float = 10.0
    #: the FHIR store the web pages list patients from (default MEDML_HOME/fhir.duckdb)
    fhir_store: Path | None = None
    #: the EHR-like web pages at / (patient list, cards, model cards); None: on when base_url is loopback only
    pages: bool | None = None
    #: origins allowed to call from a browser (CORS); "*" suits bearer-token calls, which carry no cookies
    cors_origins: tuple[str, ...] = ("*",)
    #: the PGx drug-order services (pgx-order-select, pgx-order-sign); offered once ``pgx_results_dir`` exists
    pgx_services: bool = True
    #: the NEWS2 patient-view service (id ``news2``, :mod:`medml.service.news2_service`): needs no model
    news2_service: bool = False
    #: record each score (its inputs, score, model@version, patient and encounter) in the monitoring store
    monitor: bool = True
    #: the monitoring store (default MEDML_HOME/monitor.duckdb)
    monitor_store: Path | None = None
    #: days a prediction stays in the monitoring store (None: MEDML_MONITOR_RETENTION_DAYS, default 365)
    monitor_retention_days: int | None = None
    #: "auto": the pages, monitoring and /audit need a bearer JWT off loopback; "required": everywhere
    access: str = "auto"
    #: a claim naming the caller's role(s) (clinician, data-scientist, auditor); None: the scopes alone decide
    role_claim: str | None = None
    #: the longest an access token (pages, /audit, medml fhir serve) may still be valid for (exp - now)
    access_token_lifetime_s: float = 3600.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.auth not in ("jwt", "off"):
            raise ConfigError(f"auth must be 'jwt' or 'off', got {self.auth!r}", "set auth: jwt in service.yaml")
        if self.access not in ("auto", "required"):
            raise ConfigError(
                f"access must be 'auto' or 'required', got {self.access!r}",
                "set access: auto (a bearer JWT off loopback) or access: required (everywhere) in service.yaml",
            )
        if self.role_claim is not None and (not isinstance(self.role_claim, str) or not self.role_claim):
            raise ConfigError(
                f"role_claim must be a claim name, got {self.role_claim!r}", "set e.g. role_claim: medml_role"
            )
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"base_url {self.base_url!r} is not an http(s) URL",
                "set base_url to the URL the EHR calls, e.g. https://cds.hospital.example",
            )
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        if self.monitor_retention_days is not None and (
            isinstance(self.monitor_retention_days, bool)
            or not isinstance(self.monitor_retention_days, int)
            or self.monitor_retention_days < 1
        ):
            raise ConfigError(
                f"monitor_retention_days must be a whole number of days, got {self.monitor_retention_days!r}",
                "set e.g. monitor_retention_days: 365",
            )
        for name in (
            "max_body_bytes",
            "max_in_flight",
            "max_dicom_bytes",
            "rate_per_minute",
            "access_token_lifetime_s",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 1:
                raise ConfigError(f"{name} must be a number at least 1, got {value!r}", f"fix {name}")

    @property
    def audit_path(self) -> Path:
        """The append-only, hash-chained audit log."""
        return self.home / "audit.jsonl"

    @property
    def predictions_path(self) -> Path:
        """PredictionRecords for monitoring, one JSON line each."""
        return self.home / "predictions.jsonl"

    @property
    def feedback_path(self) -> Path:
        return self.home / "feedback.jsonl"

    @property
    def deployments_path(self) -> Path:
        return self.home / "deployments.json"

    @property
    def pgx_results_dir(self) -> Path:
        """Each patient's PGx results, ``<patientId>.json`` as `medml pgx call --patient` saves them."""
        return self.home / "pgx"

    @property
    def pages_on(self) -> bool:
        """Whether to serve the web pages: they show patient data without an EHR's token, so only on loopback
        unless ``pages: true`` says otherwise."""
        if self.pages is not None:
            return self.pages
        return self.loopback_only

    @property
    def loopback_only(self) -> bool:
        """Whether ``base_url`` is a loopback URL (the service says it is reached from this machine only)."""
        host = self.base_url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
        return host in ("127.0.0.1", "localhost", "::1")

    def service_url(self, service_id: str) -> str:
        """The URL of one service, which is what a caller's JWT must carry as ``aud``."""
        return f"{self.base_url}/cds-services/{service_id}"

    def imaging_url(self, service_id: str) -> str:
        """The URL of one image service (``POST`` a DICOM file there): a caller's JWT ``aud``."""
        return f"{self.base_url}/imaging/{service_id}"


def service_home(settings: Settings) -> Path:
    return settings.home / "service"


def load_config(settings: Settings, path: Path | None = None, **overrides: Any) -> ServiceConfig:
    """The service settings: ``path`` (or ``MEDML_HOME/service/service.yaml`` if it exists), then ``overrides``."""
    home = service_home(settings)
    raw: dict[str, Any] = {}
    source = path if path is not None else home / "service.yaml"
    if path is not None and not path.is_file():
        raise InputFileError(f"service config {path} does not exist", "pass the path of a service.yaml")
    if source.is_file():
        try:
            loaded = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise ConfigError(f"{source} is not valid YAML: {e}", "fix the file") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{source} must be a mapping of settings", "see `medml serve --help`")
        raw = loaded
    known = {
        "base_url",
        "issuers",
        "auth",
        "check_expiry",
        "leeway_s",
        "max_token_lifetime_s",
        "max_body_bytes",
        "max_in_flight",
        "max_dicom_bytes",
        "rate_per_minute",
        "fhir_timeout_s",
        "fhir_store",
        "pages",
        "cors_origins",
        "pgx_services",
        "news2_service",
        "monitor",
        "monitor_store",
        "monitor_retention_days",
        "access",
        "role_claim",
        "access_token_lifetime_s",
    }
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown settings {unknown}", f"use only {sorted(known)}")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    issuers = []
    for i, item in enumerate(raw.pop("issuers", None) or []):
        if not isinstance(item, dict) or not isinstance(item.get("iss"), str) or not isinstance(item.get("jwks"), str):
            raise ConfigError(
                f"{source}: issuers[{i}] needs 'iss' and 'jwks' (text)",
                "give each trusted EHR its iss and its JWK Set file or URL",
            )
        jwks = item["jwks"]
        if not jwks.startswith(("http://", "https://")) and not Path(jwks).is_absolute():
            jwks = str((source.parent / jwks).resolve())
        jku = item.get("jku") or ()
        servers = item.get("fhir_servers") or ()
        issuers.append(
            TrustedIssuer(
                iss=item["iss"],
                jwks=jwks,
                jku=tuple([jku] if isinstance(jku, str) else jku),
                fhir_servers=tuple([servers] if isinstance(servers, str) else servers),
            )
        )
    store = raw.pop("fhir_store", None)
    if raw.get("monitor_store") is not None:
        raw["monitor_store"] = Path(raw["monitor_store"])
    if "cors_origins" in raw:
        origins = raw["cors_origins"]
        raw["cors_origins"] = tuple([origins] if isinstance(origins, str) else origins or ())
    try:
        return ServiceConfig(
            home=home, issuers=tuple(issuers), fhir_store=Path(store) if store else settings.fhir_store, **raw
        )
    except TypeError as e:
        raise ConfigError(f"{source}: {e}", "fix the setting's type") from None
