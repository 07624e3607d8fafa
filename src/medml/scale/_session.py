"""A SparkSession for medml: checked before it starts, so a missing Java or an unreachable master is one clear line.

PySpark starts a JVM and, against a cluster, waits for the master; left alone, a missing ``java`` is a Java gateway
traceback and a wrong ``spark://`` address a retry loop. Both are checked here first.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from medml.errors import ConfigError

INSTALL_HINT = "install the Spark extra: pip install 'medml[spark]'"
#: seconds to wait for a spark:// master to accept a connection before saying it cannot be reached
CONNECT_TIMEOUT = 5.0
#: the JVM's log: errors only, to stderr (Spark's default prints its start-up chatter and warnings on every command)
LOG4J2 = """status = error
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n%ex
rootLogger.level = error
rootLogger.appenderRef.stdout.ref = console
"""
#: Spark's own default is 200 shuffle partitions; a local run of a few thousand resources wants a handful
LOCAL_SHUFFLE_PARTITIONS = 4


def require_pyspark() -> Any:
    """The pyspark module, or a ConfigError saying how to install it."""
    try:
        import pyspark
    except ImportError:
        raise ConfigError("the Spark engine needs PySpark, which is not installed", INSTALL_HINT) from None
    return pyspark


def java_executable() -> Path:
    """The ``java`` Spark will start (``$JAVA_HOME/bin/java``, else the first on PATH), checked to run."""
    home = os.environ.get("JAVA_HOME")
    java = Path(home) / "bin" / "java" if home else None
    if java is None or not java.exists():
        found = shutil.which("java")
        where = f"JAVA_HOME={home} has no bin/java and " if home else ""
        if found is None:
            raise ConfigError(
                f"the Spark engine needs Java 17 or later: {where}no java is on PATH",
                "install a JDK 17+ (apt-get install openjdk-17-jre-headless) and set JAVA_HOME, or use --engine duckdb",
            )
        java = Path(found)
    try:
        subprocess.run([str(java), "-version"], capture_output=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ConfigError(
            f"the Java at {java} does not run ({exc})", "install a working JDK 17+ and point JAVA_HOME at it"
        ) from None
    return java


def check_master(master: str) -> None:
    """Refuse a master URL Spark does not know, and a ``spark://`` master nothing answers at."""
    kind = master.split("[", 1)[0].split(":", 1)[0]
    if kind in ("local", "yarn"):
        return
    if kind not in ("spark", "k8s", "mesos"):
        raise ConfigError(
            f"--master {master!r} is not a Spark master URL",
            "use local[N], spark://HOST:PORT, yarn or k8s://https://HOST:PORT",
        )
    if kind != "spark":
        return
    for hostport in master.removeprefix("spark://").split(","):  # standby masters are listed after commas
        parts = urlsplit("spark://" + hostport)
        try:
            port = parts.port or 7077
        except ValueError:
            raise ConfigError(f"--master {master!r} has no valid port", "use spark://HOST:7077") from None
        try:
            with socket.create_connection((parts.hostname or "", port), timeout=CONNECT_TIMEOUT):
                return
        except OSError:
            continue
    raise ConfigError(
        f"the Spark master {master} cannot be reached (nothing accepted a connection in {CONNECT_TIMEOUT:g} s)",
        "start the master, check the host and port (the master's web UI shows its URL), or use --master local[2]",
    )


def spark_session(
    master: str = "local[2]", *, shuffle_partitions: int | None = None, app_name: str = "medml", **conf: str
) -> Any:
    """A SparkSession on ``master`` with UTC as its time zone (as DuckDB's sessions here), or a ConfigError.

    ``shuffle_partitions`` defaults to a handful in local mode and to Spark's own setting elsewhere. Further Spark
    settings go in ``conf`` (``spark.executor.memory="8g"``). An active session is reused as it is.
    """
    require_pyspark()
    check_master(master)
    java_executable()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    log_config = Path(tempfile.gettempdir()) / "medml-spark-log4j2.properties"
    if not log_config.exists() or log_config.read_text() != LOG4J2:
        log_config.write_text(LOG4J2)
    if shuffle_partitions is None and master.startswith("local"):
        shuffle_partitions = LOCAL_SHUFFLE_PARTITIONS
    builder = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile=file:{log_config}")
    )
    if shuffle_partitions is not None:
        builder = builder.config("spark.sql.shuffle.partitions", str(shuffle_partitions))
    for key, value in conf.items():
        builder = builder.config(key, value)
    try:
        with pandas_interop():
            session = builder.getOrCreate()
    except Exception as exc:  # a JVM that would not start: say so in one line, whatever PySpark raised
        raise ConfigError(
            f"Spark did not start on {master}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
            "check JAVA_HOME (Java 17+) and the master URL",
        ) from None
    session.sparkContext.setLogLevel("ERROR")
    return session


@contextmanager
def pandas_interop() -> Iterator[None]:
    """Around PySpark's pandas conversions: PySpark 4.3 warns that it does not fully support pandas 3 on every call.

    What medml converts (numbers, strings, timestamps, through Arrow) is checked against DuckDB's results in
    tests/scale, so the warning says nothing about these calls.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
        yield
