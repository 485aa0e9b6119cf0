"""Throwaway PostgreSQL and Redis servers on 127.0.0.1, for the export benchmark and the tests.

Both come from Debian's packages (`postgresql`, `redis-server`; `make services` installs
them) and listen on a free loopback port only. PostgreSQL refuses to run as root, so under
root the cluster is created and run as the `postgres` user the Debian package adds. Each
server lives in its own temporary folder and is removed by `stop()`.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from recbatch.errors import PipelineError

START_TIMEOUT_S = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def postgres_tool(name: str) -> str | None:
    """Path of a PostgreSQL server program (Debian keeps them in /usr/lib/postgresql/<v>/bin)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_version_key)
    return candidates[-1] if candidates else None


def _version_key(path: str) -> int:
    part = Path(path).parts[-3]
    return int(part) if part.isdigit() else 0


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    if shutil.which("runuser") is None:
        raise PipelineError("PostgreSQL cannot run as root and runuser is missing: run as a non-root user")
    return ["runuser", "-u", "postgres", "--", *cmd]


@dataclass
class PostgresServer:
    """A running throwaway PostgreSQL cluster."""

    root: Path
    port: int
    user: str
    password: str
    database: str

    @property
    def jdbc_url(self) -> str:
        return f"jdbc:postgresql://127.0.0.1:{self.port}/{self.database}"

    @property
    def conninfo(self) -> str:
        """A libpq connection string (psycopg), password included: for tests and the bench only."""
        return (
            f"host=127.0.0.1 port={self.port} dbname={self.database} "
            f"user={self.user} password={self.password}"
        )

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its folder."""
        pg_ctl = postgres_tool("pg_ctl")
        if pg_ctl and (self.root / "data" / "postmaster.pid").exists():
            subprocess.run(
                _as_server_user([pg_ctl, "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop"]),
                capture_output=True,
                check=False,
                timeout=60,
            )
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(password: str, user: str = "recbatch", database: str = "recbatch") -> PostgresServer:
    """initdb + pg_ctl start into a temporary folder; password authentication on 127.0.0.1 only.

    Durability is off (fsync, synchronous_commit): the data is thrown away, and the
    benchmark compares writers against the same server settings.
    """
    initdb, pg_ctl = postgres_tool("initdb"), postgres_tool("pg_ctl")
    if not initdb or not pg_ctl:
        raise PipelineError(
            "PostgreSQL server programs not found: install Debian's postgresql (make services)"
        )
    root = Path(tempfile.mkdtemp(prefix="recbatch-pg-"))
    (root / "pwfile").write_text(password + "\n", encoding="utf-8")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(root / "pwfile", "postgres")
    data, port = root / "data", free_port()
    init_cmd = [initdb, "-D", str(data), "-U", user, "--pwfile", str(root / "pwfile"), "--auth=scram-sha-256"]
    init = subprocess.run(
        _as_server_user([*init_cmd, "-E", "UTF8", "--no-sync"]),
        capture_output=True,
        text=True,
        check=False,
    )
    (root / "pwfile").unlink()
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise PipelineError(f"initdb failed: {init.stderr.strip().splitlines()[-1:]}")
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c synchronous_commit=off "
        "-c full_page_writes=off -c max_connections=50"
    )
    started = subprocess.run(
        _as_server_user(
            [
                pg_ctl,
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(root / "server.log"),
                "-w",
                "-t",
                "30",
                "start",
            ]
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    server = PostgresServer(root, port, user, password, database)
    if started.returncode != 0:
        log = (
            (root / "server.log").read_text(errors="replace")[-500:] if (root / "server.log").exists() else ""
        )
        server.stop()
        raise PipelineError(f"PostgreSQL did not start on 127.0.0.1:{port}: {log.strip()}")
    _createdb(root, port, user, password, database)
    return server


def _createdb(root: Path, port: int, user: str, password: str, database: str) -> None:
    createdb = postgres_tool("createdb")
    if createdb is None:
        raise PipelineError("createdb not found: install Debian's postgresql-client (make services)")
    made = subprocess.run(
        [createdb, "-h", "127.0.0.1", "-p", str(port), "-U", user, database],
        env={**os.environ, "PGPASSWORD": password},
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        raise PipelineError(f"createdb {database} failed: {made.stderr.strip()}")


@dataclass
class RedisServer:
    """A running throwaway redis-server (no persistence)."""

    process: subprocess.Popen
    port: int
    password: str | None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self):
        """A redis-py client of this server (the password included)."""
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password)

    def stop(self) -> None:
        """Stop the server."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_redis(password: str | None = None) -> RedisServer:
    """redis-server on a free loopback port, nothing saved to disk; waits until it answers PING."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise PipelineError("redis-server not found: install Debian's redis-server (make services)")
    port = free_port()
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    if password:
        cmd += ["--requirepass", password]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = RedisServer(process, port, password)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise PipelineError(f"redis-server exited with {process.returncode} on 127.0.0.1:{port}")
        try:
            if server.client().ping():
                return server
        except Exception:  # not listening yet
            time.sleep(0.05)
    server.stop()
    raise PipelineError(f"redis-server did not answer on 127.0.0.1:{port} within {START_TIMEOUT_S:.0f}s")
