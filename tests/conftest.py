"""Shared fixtures: one local[2] SparkSession for the whole test run, and data paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ML100K = Path(os.environ.get("RECBATCH_ML100K", REPO.parent / "shared" / "data" / "ml-100k"))

# Keep TensorFlow quiet and single-threaded per process, as the session factory does for workers.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def spark():
    """A real local[2] SparkSession built by recbatch's own factory."""
    from recbatch.config import SparkConfig
    from recbatch.session import build_session

    session = build_session(
        SparkConfig(
            master="local[2]",
            shuffle_partitions=2,
            driver_memory="1g",
            app_name="recbatch-tests",
            conf={"spark.ui.enabled": "false"},
        )
    )
    yield session
    session.stop()


@pytest.fixture(scope="session")
def ml100k() -> Path:
    """Path to MovieLens-100K beside the repo; tests using it skip when it is absent."""
    if not (ML100K / "u.data").is_file():
        pytest.skip(
            f"MovieLens-100K not found at {ML100K} (set RECBATCH_ML100K to its folder to run this test)"
        )
    return ML100K
