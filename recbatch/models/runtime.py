"""The TensorFlow runtime for a process that trains: quiet logs, CPU threads and deterministic ops.

One call, `prepare_tensorflow()`, before the first model is built, wherever training
happens (`recbatch train`, `recbatch tune`, extra models fitted for evaluation), so the same
seed gives the same model in every entry point.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading


def quiet_tensorflow() -> None:
    """Keep TensorFlow's C++ start-up chatter out of batch logs, unless the user set a level.

    On a machine without an NVIDIA driver TF logs a CUDA init failure at error level on
    every start, which reads like a fault in a cron log; there, level 3 hides it. Where a
    driver exists, real errors stay visible.
    """
    no_gpu_driver = not os.path.exists("/proc/driver/nvidia")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3" if no_gpu_driver else "2")


def import_in_background() -> threading.Thread:
    """Start importing Keras and TensorFlow in a daemon thread; returns the thread.

    The import takes 5-7 s of the driver's Python. `recbatch run` starts it before prepare,
    whose Python mostly waits on the JVM, so training finds the modules loaded. A failed
    import here is left for the training stage to raise with its own message.
    """
    quiet_tensorflow()

    def load() -> None:
        with contextlib.suppress(Exception):  # the stage's own import reports a failure
            importlib.import_module("keras")

    thread = threading.Thread(target=load, name="recbatch-import-keras", daemon=True)
    thread.start()
    return thread


def configure_tf_threads() -> None:
    """Let TensorFlow use the CPUs this process may run on, unless the user already chose.

    TensorFlow sizes its pools by the host's cores, which oversubscribes a container or a
    `taskset`; TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS (set by the user or by
    recbatch's Spark executor environment) win, as does an earlier explicit setting.
    """
    import tensorflow as tf

    if "TF_NUM_INTRAOP_THREADS" in os.environ or "TF_NUM_INTEROP_THREADS" in os.environ:
        return
    threading = tf.config.threading
    if threading.get_intra_op_parallelism_threads() or threading.get_inter_op_parallelism_threads():
        return
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        threading.set_intra_op_parallelism_threads(cpus)
        threading.set_inter_op_parallelism_threads(min(2, cpus))
    except RuntimeError:
        pass  # the TF runtime is already initialised in this process; its pools stay as they are


def prepare_tensorflow() -> None:
    """Quiet logs, size thread pools, and turn on op determinism (same seed, same model)."""
    quiet_tensorflow()
    configure_tf_threads()
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
