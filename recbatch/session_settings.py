"""The settings a SparkSession is built with, and which source wins (pure: no Spark, no I/O).

Precedence, from strongest to weakest (conf/spark-defaults.conf and the README say the same):

1. `REQUIRED`: settings recbatch's results depend on. Always applied; where spark-submit gave
   another value, it is overridden and the override is reported.
2. Under spark-submit, everything spark-submit was given (`--master`, `--driver-memory`,
   `--conf`, `--properties-file`, its spark-defaults.conf): it wins over `[spark]` and over
   recbatch's own defaults. `[spark]` keys a config sets that lose are reported, once.
3. `[spark]` keys and `[spark].conf` (the only source in embedded runs, where they also win
   over a spark-defaults.conf in SPARK_HOME).
4. recbatch's defaults (`recbatch_defaults`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from recbatch.config import SparkConfig

# ISO timestamps without an offset are parsed in the session time zone: UTC keeps a run's
# days and last_ts the same on a laptop and on a cluster in another zone.
REQUIRED = {"spark.sql.session.timeZone": "UTC"}
# Any of these names the metastore already; recbatch then places no embedded Derby.
METASTORE_KEYS = (
    "spark.hadoop.hive.metastore.uris",
    "spark.hive.metastore.uris",
    "spark.hadoop.javax.jdo.option.ConnectionURL",
)
SPARK_DEFAULT_DRIVER_MEMORY = "1g"
# Inputs up to this size are a short run for the driver JVM (about 8M CSV events).
SHORT_RUN_MAX_INPUT_BYTES = 256 << 20
# C1 compiles at once and the serial collector needs no threads: a short run on a few cores
# spends less on the JIT and GC than it gains from C2's faster code (measured: a session
# starts in 7 s instead of 11, small jobs run twice as fast); big inputs keep the defaults.
SHORT_RUN_JVM_OPTIONS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
# A class-data archive the JVM cannot use (another Java, classpath or Spark) is skipped quietly.
CLASS_ARCHIVE_QUIET = ("-Xshare:auto", "-Xlog:cds=off", "-Xlog:cds+dynamic=off")
DRIVER_JAVA_OPTIONS = "spark.driver.extraJavaOptions"


def jvm_profile(setting: str, master: str, input_bytes: int | None) -> str:
    """'short-run' or 'long-run': `[spark] jvm` as set, or for 'auto' by the master and input size.

    `input_bytes` is None where the input's size is unknown (remote storage): a long run then.
    """
    if setting != "auto":
        return setting
    small = input_bytes is not None and input_bytes <= SHORT_RUN_MAX_INPUT_BYTES
    return "short-run" if master.strip().startswith("local") and small else "long-run"


def driver_java_options(
    profile: str, archive: str | None, dump_to: str | None, given: str | None
) -> str | None:
    """spark.driver.extraJavaOptions for an embedded driver: the profile's flags, the class-data
    archive to start from (or to write at exit, `dump_to`), then the user's own options, which
    come last so that theirs win where both set a flag."""
    options = list(SHORT_RUN_JVM_OPTIONS) if profile == "short-run" else []
    if dump_to is not None:
        options.append(f"-XX:ArchiveClassesAtExit={dump_to}")
    elif archive is not None:
        options += [f"-XX:SharedArchiveFile={archive}", *CLASS_ARCHIVE_QUIET]
    if given:
        options.append(given)
    return " ".join(options) or None


def thread_env(threads: int) -> dict[str, str]:
    """Environment that caps TensorFlow/BLAS threads in a Python worker."""
    n = str(threads)
    return {
        "OMP_NUM_THREADS": n,
        "OPENBLAS_NUM_THREADS": n,
        "MKL_NUM_THREADS": n,
        "TF_NUM_INTRAOP_THREADS": n,
        "TF_NUM_INTEROP_THREADS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }


def recbatch_defaults(config: SparkConfig) -> dict[str, str]:
    """What recbatch sets when nothing stronger does: `[spark]` keys, then `[spark].conf` on top."""
    settings = {
        "spark.app.name": config.app_name,
        **{f"spark.executorEnv.{key}": value for key, value in thread_env(config.threads_per_task).items()},
        "spark.sql.shuffle.partitions": str(config.shuffle_partitions),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        # Parquet part files get deterministic bytes when output is deterministic.
        "spark.sql.parquet.compression.codec": "snappy",
    }
    return {**settings, **config.conf}


def hive_settings(derby_home: str | None, given: Mapping[str, str]) -> dict[str, str]:
    """The Hive catalog, with an embedded Derby metastore and warehouse under `derby_home`.

    `given` is what the user and spark-submit set; a metastore named there is used as is.
    Derby's log file is a JVM system property, placed by the session builder.
    """
    settings = {"spark.sql.catalogImplementation": "hive"}
    if derby_home is None or any(key in given for key in METASTORE_KEYS):
        return settings
    settings["spark.hadoop.javax.jdo.option.ConnectionURL"] = (
        f"jdbc:derby:;databaseName={derby_home}/metastore_db;create=true"
    )
    if "spark.sql.warehouse.dir" not in given:
        settings["spark.sql.warehouse.dir"] = f"{derby_home}/warehouse"
    return settings


def by_precedence(
    wanted: Mapping[str, str], required: Mapping[str, str], running: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """(settings to apply, required settings that override spark-submit: key -> (its value, ours)).

    Keys already in the `running` SparkConf keep spark-submit's value; required ones never do.
    """
    apply = {key: value for key, value in wanted.items() if key not in running}
    apply.update(required)
    forced = {
        key: (running[key], value) for key, value in required.items() if running.get(key, value) != value
    }
    return apply, forced


def overridden_keys(config: SparkConfig, running: Mapping[str, str]) -> list[str]:
    """The `[spark]` keys this config sets that lose to spark-submit, each with both values.

    Only keys the config names count (a default losing is no surprise), and only where the
    values differ. The driver's memory is always spark-submit's: its JVM is already running.
    """
    named = config.model_fields_set
    pairs = [
        ("master", "spark.master", config.master, None),
        ("driver_memory", "spark.driver.memory", config.driver_memory, SPARK_DEFAULT_DRIVER_MEMORY),
        ("app_name", "spark.app.name", config.app_name, None),
        ("shuffle_partitions", "spark.sql.shuffle.partitions", str(config.shuffle_partitions), None),
        (
            "threads_per_task",
            "spark.executorEnv.OMP_NUM_THREADS",
            str(config.threads_per_task),
            None,
        ),
    ]
    lost = []
    for field, key, ours, fallback in pairs:
        theirs = running.get(key, fallback)
        if field in named and theirs is not None and theirs != ours:
            lost.append(f"{field} = {ours!r} (spark-submit: {theirs!r})")
    for key, ours in config.conf.items():
        if key in running and running[key] != ours:
            lost.append(f"conf.{key!r} = {ours!r} (spark-submit: {running[key]!r})")
    return lost


def override_message(lost: list[str], forced: Mapping[str, tuple[str, str]]) -> str | None:
    """One warning line naming every setting that lost or was overridden, or None."""
    parts = []
    if lost:
        parts.append(
            "[spark] keys overridden by spark-submit, whose values are used: "
            + ", ".join(lost)
            + "; pass them to spark-submit (--driver-memory, --conf) to change them"
        )
    if forced:
        parts.append(
            "recbatch overrides spark-submit's "
            + ", ".join(f"{key}={theirs!r} with {ours!r}" for key, (theirs, ours) in forced.items())
            + " (its results depend on it)"
        )
    return "; ".join(parts) or None
