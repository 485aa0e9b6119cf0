"""Shared fixtures: one local[2] SparkSession for the whole test run, data paths, and test tiers.

Tiers: a test that uses the `spark` fixture is marked `spark` here, so `-m "not spark"`
(`make test-fast`) never starts a JVM; a test that starts Spark some other way without
the marker fails, so the tier cannot rot.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ML100K = Path(os.environ.get("RECBATCH_ML100K", REPO.parent / "shared" / "data" / "ml-100k"))

# Keep TensorFlow quiet and single-threaded per process, as the session factory does for workers.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses the session's SparkSession as `spark`."""
    for item in items:
        if "spark" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.spark)


def _active_spark_context() -> object | None:
    if "pyspark" not in sys.modules:
        return None
    from pyspark import SparkContext

    return SparkContext._active_spark_context


@pytest.fixture(autouse=True)
def _spark_only_where_marked(request: pytest.FixtureRequest):
    """Fail a test that starts a SparkContext in this process without the `spark` marker."""
    before = _active_spark_context()
    yield
    marked = request.node.get_closest_marker("spark") or request.node.get_closest_marker("e2e")
    if not marked and before is None and _active_spark_context() is not None:
        pytest.fail(f"{request.node.nodeid} started Spark without the spark marker (add pytestmark)")


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory):
    """A real local[2] SparkSession built by recbatch's own factory.

    It has the Hive catalog on an embedded Derby metastore in a temp folder (catalog
    tables are a static setting, so the one session needs it from the start). The metastore
    boots at the first catalog call: tests that never touch the catalog pay nothing for it
    (session start measured the same with and without; the first catalog call costs 5-10 s).
    """
    from recbatch.config import SparkConfig
    from recbatch.session import build_session

    session = build_session(
        SparkConfig(
            master="local[2]",
            shuffle_partitions=2,
            driver_memory="1g",
            app_name="recbatch-tests",
            jvm="short-run",  # small data all session long
            conf={"spark.ui.enabled": "false"},
        ),
        str(tmp_path_factory.mktemp("catalog")),
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
