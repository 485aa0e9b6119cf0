"""Spark failures become one line naming the root cause and the file, not Py4J's call name."""

from __future__ import annotations

from recbatch.errors import describe_spark_failure

TASK_FAILED = (
    "An error occurred while calling o123.parquet.\n"
    ": org.apache.spark.SparkException: Job aborted due to stage failure: Task 0 in stage 4.0 failed 2 times, "
    "most recent failure: Lost task 0.1 in stage 4.0 (TID 9) (192.0.2.2 executor driver): "
)


def test_disk_full_names_the_place():
    text = TASK_FAILED + (
        "java.io.IOException: No space left on device\n\tat java.base/java.io.FileOutputStream.writeBytes\n"
        "Caused by: org.apache.hadoop.fs.FSError: java.io.IOException: No space left on device "
        "file:/srv/work/published/recommendations/.versions/dt=2026-01-03/v1/part-00000.parquet"
    )
    line = describe_spark_failure(text)
    assert line.startswith(
        "a Spark task failed 2 times: no space left on device at file:/srv/work/published/"
    )
    assert "\n" not in line


def test_an_unreadable_footer_names_the_file():
    text = (
        "An error occurred while calling o77.count.\n: org.apache.spark.SparkException: ... "
        "Caused by: java.lang.RuntimeException: file:/data/x/part-00001.snappy.parquet is not a Parquet file. "
        "Expected magic number at tail, but found [1, 2, 3, 4]"
    )
    assert describe_spark_failure(text) == (
        "Spark failed: unreadable Parquet file at file:/data/x/part-00001.snappy.parquet: the file is truncated "
        "or not Parquet; rebuild it (rerun the stage that wrote it) or remove it"
    )


def test_an_unknown_cause_falls_back_to_the_deepest_caused_by():
    text = "An error occurred while calling o1.x.\nCaused by: java.lang.A: outer\nCaused by: java.lang.B: the root"
    assert (
        describe_spark_failure(text)
        == "Spark failed: java.lang.B: the root (rerun with --verbose for details)"
    )
