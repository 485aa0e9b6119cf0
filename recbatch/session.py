"""The one place a SparkSession is built.

Embedded runs get a local master, the driver memory and every setting from `[spark]`. Under
`spark-submit` the master, the memory and whatever else spark-submit was given are kept:
`[spark]` keys a config sets that spark-submit overrides are named in one warning, never
dropped silently (the precedence is in recbatch.session_settings). The Hive catalog, when a
config uses it, gets an embedded Derby metastore under the work directory unless a metastore
is named (`[spark].conf`, spark-submit's conf, or a hive-site.xml on spark-submit's classpath).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import TYPE_CHECKING

from recbatch.config import SparkConfig
from recbatch.errors import ConfigError
from recbatch.ops.jvm_cache import DUMP_ENV, usable_archive
from recbatch.session_settings import (
    DRIVER_JAVA_OPTIONS,
    METASTORE_KEYS,
    REQUIRED,
    by_precedence,
    driver_java_options,
    hive_settings,
    jvm_profile,
    overridden_keys,
    override_message,
    recbatch_defaults,
    thread_env,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from recbatch.config import Config

__all__ = ["build_session", "catalog_dir", "launched_by_spark_submit", "thread_env"]

log = logging.getLogger(__name__)
_reported: set[str] = set()


def launched_by_spark_submit() -> bool:
    """True when this Python process was started by spark-submit (the JVM came first)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def catalog_dir(config: Config) -> str | None:
    """Where this config's Hive catalog keeps an embedded metastore (`<workdir>/catalog`), or None
    when the config uses the in-memory catalog."""
    hive = config.spark.catalog == "hive" or (
        config.spark.catalog == "auto" and config.publish.catalog_table is not None
    )
    return f"{config.paths.workdir.rstrip('/')}/catalog" if hive else None


def with_retries(master: str) -> str:
    """A local master that retries a failed task once (`local[N]` -> `local[N,2]`), as a cluster would.

    Spark's plain local masters run each task once, so one transient worker failure fails the
    run; `local[N,F]` masters are kept as given (`local[N,1]` turns retries off).
    """
    match = re.fullmatch(r"local(?:\[(\*|\d+)\])?", master.strip())
    return f"local[{match.group(1) or 1},2]" if match else master


def build_session(
    config: SparkConfig, catalog: str | None = None, input_bytes: int | None = None
) -> SparkSession:
    """Build (or reuse) the SparkSession for this process.

    `catalog` is the folder for an embedded Hive metastore (see `catalog_dir`); given, or with
    `config.catalog = "hive"`, the session uses the Hive catalog. `input_bytes` (the size of a
    local input, None when unknown) chooses an embedded driver JVM's tuning under `jvm = "auto"`.
    """
    from pyspark.sql import SparkSession

    submitted = launched_by_spark_submit()
    running = _running_conf() if submitted else {}
    master = running.get("spark.master", os.environ.get("MASTER", "")) if submitted else config.master
    wanted = recbatch_defaults(config)
    if not submitted or master.startswith("local"):
        # Workers must run this interpreter: another python may lack pyarrow, and pandas UDFs
        # then fail to import it.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        wanted |= {
            "spark.pyspark.python": os.environ["PYSPARK_PYTHON"],
            "spark.ui.showConsoleProgress": "false",
        }
        # Embedded runs are batch jobs nobody watches in a browser: without the UI, overlapping
        # runs print no "could not bind on port 4040" warnings ([spark].conf can turn it on).
        wanted.setdefault("spark.ui.enabled", "false")
    required = dict(REQUIRED)
    derby_home = None
    if catalog is not None or config.catalog == "hive":
        derby_home = _derby_home(catalog, {**config.conf, **running}, submitted)
        required |= hive_settings(derby_home, {**config.conf, **running})
    dump_to = os.environ.get(DUMP_ENV)
    if not submitted:
        wanted |= _driver_jvm(config, input_bytes, dump_to, wanted.get(DRIVER_JAVA_OPTIONS))
    settings, forced = by_precedence(wanted, required, running)
    builder = SparkSession.builder
    if not submitted:
        builder = builder.master(with_retries(config.master)).config(
            "spark.driver.memory", config.driver_memory
        )
    for key, value in settings.items():
        builder = builder.config(key, value)
    _report_once(override_message(overridden_keys(config, running) if submitted else [], forced))
    spark = builder.getOrCreate()
    if derby_home is not None:
        # Derby writes derby.log into the process's cwd unless told otherwise before it boots
        # (it boots lazily, at the first catalog call).
        spark._jvm.java.lang.System.setProperty("derby.stream.error.file", f"{derby_home}/derby.log")
    spark.sparkContext.setLogLevel(config.log_level)
    if dump_to is not None and not submitted:
        # The builder of the class archive waits for this JVM to exit (and finish writing it).
        pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
        with open(f"{dump_to}.pid", "w") as out:
            out.write(str(pid))
    return spark


def _driver_jvm(
    config: SparkConfig, input_bytes: int | None, dump_to: str | None, given: str | None
) -> dict[str, str]:
    """The embedded driver JVM's options: its tuning profile and the class archive to start from."""
    profile = jvm_profile(config.jvm, config.master, input_bytes)
    extra = config.conf.get("spark.driver.extraClassPath")
    archive = usable_archive(extra) if config.class_cache and dump_to is None else None
    log.debug("driver JVM: %s profile, class archive %s", profile, archive or "none")
    options = driver_java_options(profile, archive, dump_to, given)
    return {DRIVER_JAVA_OPTIONS: options} if options else {}


def _running_conf() -> dict[str, str]:
    """The SparkConf spark-submit started this driver with (its --conf, properties file, master…)."""
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()  # attaches to spark-submit's JVM; starts none
    return dict(SparkConf().getAll())


def _derby_home(catalog: str | None, given: dict[str, str], submitted: bool) -> str | None:
    """The local folder for an embedded Derby metastore, or None where a metastore is named.

    ConfigError when the work directory is not on the local disk and nothing names a
    metastore: a Derby database there would live and die with the driver's container.
    """
    if catalog is None or any(key in given for key in METASTORE_KEYS):
        return None
    if submitted and _hive_site_on_classpath():
        return None
    from recbatch.storage import location

    where = location(catalog)
    if not where.is_local:
        raise ConfigError(
            f"the Hive catalog needs a metastore readers can reach, and an embedded one cannot live "
            f"under {catalog}: set [spark].conf 'spark.hadoop.hive.metastore.uris' (or spark-submit "
            "--conf, or a hive-site.xml in SPARK_CONF_DIR) to the platform's metastore"
        )
    home = str(where.local_path)
    os.makedirs(home, exist_ok=True)
    return home


def _hive_site_on_classpath() -> bool:
    from pyspark import SparkContext

    loader = SparkContext._jvm.java.lang.Thread.currentThread().getContextClassLoader()
    return loader.getResource("hive-site.xml") is not None


def _report_once(message: str | None) -> None:
    """Warn about overridden settings once per process (a process may build its session twice)."""
    if message and message not in _reported:
        _reported.add(message)
        log.warning("spark settings: %s", message)
