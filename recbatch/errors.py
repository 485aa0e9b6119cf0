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


EXIT_CODES = {
    0: "success",
    1: "unexpected internal error (a bug: please report it with --verbose output)",
    2: "usage or configuration error (bad flag, unknown key, invalid value, unreadable config)",
    3: "data error (input missing, unreadable, empty after cleaning, wrong format)",
    4: "runtime error (a stage or a validation gate failed)",
    5: "another run holds the lock for this work directory",
}
