"""The one place a SparkSession is built.

Embedded runs get a local master from config; under `spark-submit` the master and
resources spark-submit chose are kept, and only recbatch's SQL settings are applied.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from recbatch.config import SparkConfig

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def launched_by_spark_submit() -> bool:
    """True when this Python process was started by spark-submit (the JVM came first)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


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


def build_session(config: SparkConfig) -> SparkSession:
    """Build (or reuse) the SparkSession for this process."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(config.app_name)
    submitted = launched_by_spark_submit()
    master = os.environ.get("MASTER") if submitted else config.master
    local = (master or "").startswith("local") or not submitted
    if not submitted:
        builder = builder.master(config.master).config("spark.driver.memory", config.driver_memory)
    if local:
        # Workers must run this interpreter: another python may lack pyarrow, and pandas UDFs
        # then fail to import it.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        builder = builder.config("spark.pyspark.python", os.environ["PYSPARK_PYTHON"])
        builder = builder.config("spark.ui.showConsoleProgress", "false")
    for key, value in thread_env(config.threads_per_task).items():
        builder = builder.config(f"spark.executorEnv.{key}", value)
    builder = (
        builder.config("spark.sql.shuffle.partitions", str(config.shuffle_partitions))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
        # Parquet part files get deterministic names when output is deterministic.
        .config("spark.sql.parquet.compression.codec", "snappy")
    )
    for key, value in config.conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(config.log_level)
    return spark
