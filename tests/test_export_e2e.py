"""`recbatch run` with conf/demo-export.toml into a real PostgreSQL and a real Redis, then a re-export.

The example config is used as shipped; only the servers' addresses, the work directory and a
smaller synthetic log are overridden, the way a user points it at their own servers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recbatch.cli import app
from tests.conftest import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
# The session fixtures `postgres` and `redis_server`: one server each for the whole test run.
pytest_plugins = ["tests.services"]

DATE = "2026-01-02"
runner = CliRunner()


def overrides(tmp: Path, postgres, redis_server) -> list[str]:
    settings = {
        "paths.workdir": f'"{tmp / "work"}"',
        "synth.out": f'"{tmp / "events.csv"}"',
        "input.path": f'"{tmp / "events.csv"}"',
        "synth.users": "150",
        "synth.items": "80",
        "synth.events": "4000",
        "train.epochs": "2",
        "evaluate.baselines": '["popularity"]',
        "export.jdbc.url": f'"{postgres.jdbc_url}"',
        "export.jdbc.table": '"e2e_recs"',
        "export.redis.url": f'"{redis_server.url}"',
        "export.redis.password_env": '"RECBATCH_REDIS_PASSWORD"',
    }
    return [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]


def files_containing(root: Path, secret: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_run_exports_to_postgres_and_redis_and_export_re_exports_the_date(
    spark, tmp_path, postgres, redis_server, monkeypatch
):
    import psycopg

    monkeypatch.setenv("RECBATCH_PG_PASSWORD", postgres.password)
    monkeypatch.setenv("RECBATCH_REDIS_PASSWORD", redis_server.password)
    config = [
        "--config",
        str(REPO / "conf" / "demo-export.toml"),
        *overrides(tmp_path, postgres, redis_server),
    ]
    assert runner.invoke(app, ["synth", *config]).exit_code == 0

    run = runner.invoke(app, ["run", *config, "--date", DATE])

    assert run.exit_code == 0, run.output
    table = tmp_path / "work" / "published" / "recommendations" / f"dt={DATE}"
    manifest = json.loads(next(table.parent.rglob("_manifest.json")).read_text())
    for fmt in ("jsonl", "jdbc", "redis"):
        assert f"exported {fmt:<6} {manifest['rows']:>10,} rows for {manifest['users']:,} users" in run.output
    assert "export " in run.output.split("stage times:")[1], "export has its own stage time"
    with psycopg.connect(postgres.conninfo) as db:
        counts = db.execute("SELECT COUNT(*), COUNT(DISTINCT user_id), MIN(run_id) FROM e2e_recs").fetchone()
    assert counts == (manifest["rows"], manifest["users"], manifest["run_id"])
    client = redis_server.client()
    version = client.get("recbatch:demo:current").decode()
    assert version == manifest["version"]
    assert len(list(client.scan_iter(match=f"recbatch:demo:{version}:*", count=1000))) == manifest["users"]

    again = runner.invoke(app, ["export", *config, "--date", DATE, "--format", "jdbc", "--format", "redis"])

    assert again.exit_code == 0, again.output
    assert f"exported jdbc   {manifest['rows']:>10,} rows" in again.output
    with psycopg.connect(postgres.conninfo) as db:
        assert db.execute("SELECT COUNT(*) FROM e2e_recs").fetchone() == (manifest["rows"],)
        assert db.execute("SELECT COUNT(*) FROM e2e_recs__previous").fetchone() == (manifest["rows"],)
    for secret in (postgres.password, redis_server.password):
        assert secret not in run.output + again.output
        assert files_containing(tmp_path, secret) == []
