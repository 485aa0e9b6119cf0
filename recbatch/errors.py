"""Error types that the CLI maps to documented exit codes.

Every error carries a one-line message that says what went wrong, where, and how to
fix it; the CLI prints that line and exits with the code, without a traceback unless
`--verbose` is given.
"""

from __future__ import annotations


class RecbatchError(Exception):
    """Base class: a failure with a user-facing message and an exit code."""

    exit_code = 4


class ConfigError(RecbatchError):
    """Bad command line or configuration (exit 2). Raised before Spark starts."""

    exit_code = 2


class DataError(RecbatchError):
    """Input data is missing, unreadable or unusable (exit 3)."""

    exit_code = 3


class PipelineError(RecbatchError):
    """A stage failed at run time, e.g. a validation gate or a broken artifact (exit 4)."""

    exit_code = 4


class LockHeldError(RecbatchError):
    """Another run holds the lock for this work directory (exit 5); cron can retry later."""

    exit_code = 5


# Exceptions Spark raises into Python (by class name: importing pyspark here would be heavy);
# they are runtime failures, exit 4.
SPARK_ERROR_NAMES = frozenset(
    {"AnalysisException", "Py4JJavaError", "PythonException", "SparkRuntimeException"}
)

EXIT_CODES = {
    0: "success",
    1: "unexpected internal error (a bug: please report it with --verbose output)",
    2: "usage or configuration error (bad flag, unknown key, invalid value, unreadable config)",
    3: "data error (input missing, unreadable, empty after cleaning, wrong format)",
    4: "runtime error (a stage or a validation gate failed)",
    5: "another run holds the lock for this work directory",
}


_PATH = r"((?:file|hdfs|viewfs|s3a?|s3n|gs|abfss?|wasbs?):/{1,3}[^\s,;'\"\]]+|/[^\s,;'\"\]:]+)"
# (pattern in the failure's text, message); the first that matches names the root cause.
_ROOT_CAUSES = (
    (
        r"No space left on device",
        "no space left on device{where}: free space there (or point spark.local.dir "
        "and paths.workdir at a larger disk) and rerun",
    ),
    (
        r"(?:is not a Parquet file|expected magic number|Can not read value at|corrupt footer|Could not read footer)",
        "unreadable Parquet file{where}: the file is truncated or not Parquet; rebuild it (rerun the stage that "
        "wrote it) or remove it",
    ),
    (
        r"(?:FileNotFoundException|PATH_NOT_FOUND|Path does not exist)",
        "file not found{where}: it was removed or never written; rerun the stage that writes it",
    ),
    (
        r"(?:AccessDeniedException|Permission denied)",
        "permission denied{where}: check the user's rights there",
    ),
    (
        r"(?:OutOfMemoryError|Java heap space)",
        "a Spark JVM ran out of memory: raise spark.driver.memory / spark.executor.memory, or score with smaller "
        "score.user_block",
    ),
)


def describe_spark_failure(text: str) -> str:
    """One line naming the root cause of a Spark failure from its full text (Java stack traces included).

    Known causes (disk full, unreadable Parquet, missing file, permissions, memory) are named
    with the file where one is given; a task that failed repeatedly says how often and its
    last cause; anything else falls back to the deepest "Caused by" line.
    """
    import re

    failed = re.search(r"Task \S+ in stage \S+ failed (\d+) times", text)
    prefix = f"a Spark task failed {failed.group(1)} times: " if failed else "Spark failed: "
    for pattern, message in _ROOT_CAUSES:
        hit = re.search(pattern, text)
        if hit:
            around = text[max(0, hit.start() - 400) : hit.end() + 400]
            path = re.search(_PATH, around[400:]) or re.search(_PATH, around)
            where = f" at {path.group(1)}" if path else ""
            return prefix + message.format(where=where)
    causes = re.findall(r"Caused by: ([^\n]+)", text)
    first = causes[-1] if causes else text.strip().splitlines()[0] if text.strip() else "unknown error"
    return prefix + first.strip()[:400] + " (rerun with --verbose for details)"
