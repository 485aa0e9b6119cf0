"""Session fixtures: a real PostgreSQL and a real Redis on 127.0.0.1, started and stopped by the tests.

Both come from Debian's packages, installed by `make services` (a prerequisite of `make test`).
Where a server program is missing, the tests that need it skip on a developer's machine and
fail under CI (CI set), so CI cannot pass without them; a server that is installed but does
not start fails its tests loudly. Test modules load the fixtures with

    pytest_plugins = ["tests.services"]
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from recbatch.bench.servers import PostgresServer, RedisServer, postgres_tool, start_postgres, start_redis
from recbatch.errors import PipelineError
from recbatch.io.export_jdbc import DEBIAN_POSTGRES_JAR

# Distinctive, so that a test can grep every output for them (server.password).
PG_PASSWORD = "pg-Secret-4711-xq"
REDIS_PASSWORD = "redis-Secret-0815-zv"
INSTALL = "run `make services` (as root: apt-get install postgresql libpostgresql-jdbc-java redis-server)"


def require(present: bool, what: str) -> None:
    """Skip (developer machine) or fail (CI) when a server program the test needs is not installed."""
    if present:
        return
    message = f"{what} is not installed: {INSTALL}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster on a free loopback port, password-authenticated."""
    require(bool(postgres_tool("initdb") and postgres_tool("pg_ctl")), "PostgreSQL (postgresql)")
    require(Path(DEBIAN_POSTGRES_JAR).is_file(), f"PostgreSQL's JDBC driver {DEBIAN_POSTGRES_JAR}")
    try:
        server = start_postgres(PG_PASSWORD)
    except PipelineError as exc:
        pytest.fail(f"PostgreSQL is installed but did not start: {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A throwaway redis-server on a free loopback port, with a password and no persistence."""
    require(shutil.which("redis-server") is not None, "Redis (redis-server)")
    try:
        server = start_redis(REDIS_PASSWORD)
    except PipelineError as exc:
        pytest.fail(f"redis-server is installed but did not start: {exc}")
    yield server
    server.stop()
