"""Settings from the environment: where stores, the registry and reports live."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from medml.errors import ConfigError


@dataclass(frozen=True)
class Settings:
    """Paths under ``MEDML_HOME`` (default ``./.medml``) and the location of the shared real data."""

    home: Path
    data_root: Path

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def fhir_store(self) -> Path:
        return self.home / "fhir.duckdb"

    @property
    def monitor_store(self) -> Path:
        """The monitoring store: every scored patient's inputs and score, and the outcomes loaded later."""
        return self.home / "monitor.duckdb"

    @property
    def monitor_retention_days(self) -> int:
        """How long the monitoring store keeps a prediction (``MEDML_MONITOR_RETENTION_DAYS``, default 365)."""
        text = os.environ.get("MEDML_MONITOR_RETENTION_DAYS", "365")
        if not text.strip().isdigit() or int(text) < 1:
            raise ConfigError(
                f"MEDML_MONITOR_RETENTION_DAYS is {text!r}, not a whole number of days", "set it to e.g. 365"
            )
        return int(text)

    @property
    def mlflow_uri(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.home / "mlartifacts"

    def ensure_home(self) -> Path:
        """``home``, created owner-only (0700); an existing one that others can enter is made owner-only too.

        Everything under MEDML_HOME can hold PHI (FHIR store, caches, reports, logs, models): the folder's mode is
        what keeps other users of the machine out, whatever the modes of the files inside.
        """
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.home.stat().st_mode & 0o077:
            self.home.chmod(0o700)
        return self.home


def _default_data_root() -> Path:
    """``../shared/data`` beside the checkout, found from the working directory or this file."""
    candidates = [Path.cwd() / ".." / "shared" / "data"]
    candidates += [p / "shared" / "data" for p in Path(__file__).resolve().parents]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    return candidates[0]


#: the umask of medml's command and service processes: every file they create is owner-only (0600, folders 0700)
PRIVATE_UMASK = 0o077


def private_files() -> None:
    """Make every file this process creates from now on owner-only (the CLI and the service call this at start)."""
    os.umask(PRIVATE_UMASK)


def get_settings() -> Settings:
    """Read the settings now (not at import), so tests and the CLI can point ``MEDML_HOME`` elsewhere."""
    home = Path(os.environ.get("MEDML_HOME", ".medml"))
    data = os.environ.get("MEDML_DATA")
    return Settings(home=home, data_root=Path(data) if data else _default_data_root())
