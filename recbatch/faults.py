"""Fault-injection points for the fault suite (tests/faults): inert unless an environment variable names them.

RECBATCH_PAUSE_AT=<point>        stop at that point of publish for RECBATCH_PAUSE_SECONDS (default 600),
                                 printing "recbatch: paused at <point>" so a test knows when to kill -9
RECBATCH_FAIL_TASK_ONCE=score    the first attempt of the first scoring task raises (Spark must retry it)
"""

from __future__ import annotations

import logging
import os
import time

log = logging.getLogger(__name__)


def pause_point(name: str) -> None:
    """Stop here for a while when RECBATCH_PAUSE_AT names this point."""
    if os.environ.get("RECBATCH_PAUSE_AT") == name:
        log.warning("paused at %s (RECBATCH_PAUSE_AT)", name)
        print(f"recbatch: paused at {name}", flush=True)
        time.sleep(float(os.environ.get("RECBATCH_PAUSE_SECONDS", "600")))


def fail_task_once(stage: str) -> bool:
    """Whether the driver was asked to make `stage`'s first task fail once (read when the job is built)."""
    return os.environ.get("RECBATCH_FAIL_TASK_ONCE") == stage


def fail_first_attempt() -> None:
    """Inside a Spark task: raise on the first attempt of partition 0 (a transient worker failure)."""
    from pyspark import TaskContext

    context = TaskContext.get()
    if context is not None and context.partitionId() == 0 and context.attemptNumber() == 0:
        raise RuntimeError("injected task failure (RECBATCH_FAIL_TASK_ONCE): Spark retries the task")
