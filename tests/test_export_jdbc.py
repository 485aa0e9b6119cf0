"""The JDBC export against a real PostgreSQL: staging, validation, the one-transaction swap, failures.

The server is started by tests/services.py on 127.0.0.1; readers use psycopg, the export
Spark's JDBC writer and PostgreSQL's driver from Debian's libpostgresql-jdbc-java.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from recbatch.config import ExportConfig, PublishConfig, load_config
from recbatch.errors import ConfigError, PipelineError
from recbatch.io import export_jdbc
from recbatch.io.export_step import run_exports
from recbatch.io.publish import publish_table
from tests.builders import run_cli

# The session fixtures `postgres` and `redis_server`: one server each for the whole test run.
pytest_plugins = ["tests.services"]

DATE = "2026-01-02"
TABLE = "recommendations"
SCHEMA = "user_id string, item_id string, score float, rank int, source string, model string, run_id string"
PASSWORD_ENV = "RECBATCH_TEST_PG_PASSWORD"


def files_containing(root: Path, secret: str) -> list[str]:
    """Every file under `root` whose bytes contain `secret`."""
    return [str(p) for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def published_rows(run_id: str, users: int, k: int = 3, extra_user: str | None = None) -> list[tuple]:
    """`users` users × `k` ranked distinct items; `extra_user` adds one more user of that id."""
    ids = [f"u{u:04d}" for u in range(users)] + ([extra_user] if extra_user else [])
    return [
        (user, f"i{(n * 7 + r) % 50}", round(1.0 - r / 10, 2), r, "model", "mf", run_id)
        for n, user in enumerate(ids)
        for r in range(1, k + 1)
    ]


def publish(spark, root: Path, rows: list[tuple], run_id: str) -> None:
    publish_table(spark.createDataFrame(rows, SCHEMA), PublishConfig(), root, DATE, run_id, 3)


def jdbc_config(server, table: str, **settings) -> ExportConfig:
    return ExportConfig.model_validate(
        {
            "formats": ["jdbc"],
            "jdbc": {
                "url": server.jdbc_url,
                "user": server.user,
                "password_env": PASSWORD_ENV,
                "table": table,
                **settings,
            },
        }
    )


def export(spark, tmp_path: Path, config: ExportConfig) -> dict:
    return run_exports(spark, config, tmp_path / "pub", TABLE, DATE, ["jdbc"], tmp_path / "exports")["jdbc"]


def query(server, sql: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(server.conninfo, autocommit=True) as db:
        return db.execute(sql).fetchall()


def version_counts(server, table: str) -> dict[str, int]:
    return dict(query(server, f"SELECT run_id, COUNT(*) FROM {table} GROUP BY run_id"))


def staging_tables(server, table: str) -> list[str]:
    return [
        r[0]
        for r in query(server, f"SELECT tablename FROM pg_tables WHERE tablename LIKE '{table}__staging%'")
    ]


@pytest.fixture()
def password(monkeypatch, postgres):
    monkeypatch.setenv(PASSWORD_ENV, postgres.password)


# ── unit tier: no Spark, no server ──


def test_swap_is_one_transaction_of_renames_keeping_or_dropping_the_old_table():
    keep = ExportConfig.model_validate({"jdbc": {"url": "jdbc:postgresql://h/db", "table": "app.recs"}}).jdbc
    assert export_jdbc.swap_statements(keep, "app.recs__staging_r1", live_exists=True) == [
        "DROP TABLE IF EXISTS app.recs__previous",
        "ALTER TABLE app.recs RENAME TO recs__previous",
        "ALTER TABLE app.recs__staging_r1 RENAME TO recs",
    ]
    drop = keep.model_copy(update={"keep_previous": False})
    assert export_jdbc.swap_statements(drop, "s", live_exists=True) == [
        "DROP TABLE app.recs",
        "ALTER TABLE s RENAME TO recs",
    ]
    assert export_jdbc.swap_statements(keep, "s", live_exists=False) == ["ALTER TABLE s RENAME TO recs"]
    assert export_jdbc.staging_name("recs", "20260102-428b50ee9c") == "recs__staging_20260102_428b50ee9c"


def test_the_password_never_comes_from_or_goes_into_the_config(tmp_path):
    for override in (
        'export.jdbc.url="jdbc:postgresql://h/db?user=a&password=hunter2"',
        'export.jdbc.properties={password="hunter2"}',
        'export.redis.url="redis://:hunter2@h:6379/0"',
    ):
        with pytest.raises(ConfigError) as caught:
            load_config(None, [override])
        assert "hunter2" not in str(caught.value) and "password_env" in str(caught.value)
    with pytest.raises(ConfigError, match="export.jdbc.url is empty"):
        load_config(None, ['export.formats=["jdbc"]'])
    with pytest.raises(ConfigError, match="lower-case letters"):
        load_config(None, ['export.jdbc.table="Recs; DROP TABLE x"'])


def test_the_driver_jar_joins_spark_jars_only_for_a_jdbc_export(tmp_path):
    jar = tmp_path / "driver.jar"
    jar.write_bytes(b"PK")
    export = ExportConfig.model_validate(
        {
            "formats": ["jdbc"],
            "jdbc": {"url": "jdbc:h2:mem:x", "driver": "org.h2.Driver", "driver_jar": str(jar)},
        }
    )
    assert export_jdbc.with_driver_jar({"spark.jars": "/a.jar"}, export) == {"spark.jars": f"/a.jar,{jar}"}
    assert export_jdbc.with_driver_jar({}, export.model_copy(update={"formats": ["csv"]})) == {}
    missing = export.model_copy(update={"jdbc": export.jdbc.model_copy(update={"driver_jar": "/nope.jar"})})
    with pytest.raises(ConfigError, match="/nope.jar does not exist"):
        export_jdbc.with_driver_jar({}, missing)


def test_counts_that_differ_from_the_manifest_are_refused():
    export_jdbc.check_counts(30, 10, {"rows": 30, "users": 10})
    with pytest.raises(PipelineError, match="holds 29 rows for 10 users"):
        export_jdbc.check_counts(29, 10, {"rows": 30, "users": 10})


# ── against the server ──


def test_readers_see_only_whole_versions_while_the_export_swaps(spark, tmp_path, postgres, password):
    import psycopg

    table = "swap_readers"
    publish(spark, tmp_path / "pub", published_rows("run1", 200), "run1")
    export(spark, tmp_path, jdbc_config(postgres, table))
    publish(spark, tmp_path / "pub", published_rows("run2", 300), "run2")

    seen, errors, stop = [], [], threading.Event()

    def read() -> None:
        with psycopg.connect(postgres.conninfo, autocommit=True) as db:
            while not stop.is_set():
                try:
                    counts = dict(
                        db.execute(f"SELECT run_id, COUNT(*) FROM {table} GROUP BY run_id").fetchall()
                    )
                    staging = db.execute(
                        f"SELECT COUNT(*) FROM pg_tables WHERE tablename LIKE '{table}__staging%'"
                    ).fetchone()[0]
                    seen.append((counts, staging))
                    stop.wait(0.002)  # leave the GIL to the export's driver thread
                except psycopg.Error as exc:
                    errors.append(str(exc))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        # Small batches on one connection: the staging table fills over many round trips.
        done = export(spark, tmp_path, jdbc_config(postgres, table, batch_size=25, connections=1))
    finally:
        stop.set()
        reader.join()

    assert not errors, errors[:3]
    assert {tuple(sorted(c.items())) for c, _ in seen} <= {(("run1", 600),), (("run2", 900),)}
    assert any(c == {"run1": 600} and staging for c, staging in seen), "no read overlapped the write"
    assert version_counts(postgres, table) == {"run2": 900}
    assert version_counts(postgres, f"{table}__previous") == {"run1": 600}
    assert (done["rows"], done["users"]) == (900, 300)
    index = query(postgres, f"SELECT indexdef FROM pg_indexes WHERE tablename = '{table}'")
    assert index and "UNIQUE" in index[0][0] and "(user_id, rank)" in index[0][0]
    assert staging_tables(postgres, table) == []


def test_a_write_failing_midway_leaves_the_live_table_and_drops_staging(spark, tmp_path, postgres, password):
    table = "fail_write"
    publish(spark, tmp_path / "pub", published_rows("run1", 100), "run1")
    export(spark, tmp_path, jdbc_config(postgres, table))
    # The last user's id is too long for the column: the server refuses its batch after the
    # batches before it went in.
    publish(spark, tmp_path / "pub", published_rows("run2", 100, extra_user="uz-far-too-long"), "run2")
    narrow = jdbc_config(postgres, table, column_types="user_id VARCHAR(5)", batch_size=30, connections=1)

    with pytest.raises(PipelineError) as caught:
        export(spark, tmp_path, narrow)

    message = str(caught.value)
    assert "step 'write'" in message and "the live table is untouched" in message
    assert "\n" not in message and postgres.password not in message
    assert version_counts(postgres, table) == {"run1": 300}
    assert staging_tables(postgres, table) == []


def test_rerunning_an_export_gives_the_same_live_table(spark, tmp_path, postgres, password):
    table = "rerun"
    rows = published_rows("run1", 50)
    publish(spark, tmp_path / "pub", rows, "run1")
    expected = sorted((u, i, pytest.approx(s), r, src, m, run) for u, i, s, r, src, m, run in rows)
    columns = "user_id, item_id, score, rank, source, model, run_id"
    for _ in range(2):
        export(spark, tmp_path, jdbc_config(postgres, table, keep_previous=False))
        assert sorted(query(postgres, f"SELECT {columns} FROM {table}")) == expected
        assert {str(d) for (d,) in query(postgres, f"SELECT DISTINCT dt FROM {table}")} == {DATE}
    assert staging_tables(postgres, table) == []
    assert query(postgres, f"SELECT COUNT(*) FROM pg_tables WHERE tablename = '{table}__previous'") == [(0,)]


def test_bad_credentials_exit_4_with_one_line_that_never_shows_a_password(
    spark, tmp_path, postgres, password, monkeypatch
):
    """A new process, as cron runs it: spark.jars is set when its session starts."""
    table = "bad_login"
    workdir = tmp_path / "work"
    publish(spark, workdir / "published", published_rows("run1", 20), "run1")
    run_exports(spark, jdbc_config(postgres, table), workdir / "published", TABLE, DATE, ["jdbc"], tmp_path)
    config = tmp_path / "export.toml"
    config.write_text(
        f'[paths]\nworkdir = "{workdir}"\n\n[export.jdbc]\nurl = "{postgres.jdbc_url}"\n'
        f'user = "{postgres.user}"\ntable = "{table}"\npassword_env = "{PASSWORD_ENV}"\n'
    )
    wrong = "not-the-Pa55word-93"
    monkeypatch.setenv(PASSWORD_ENV, wrong)

    proc = run_cli("export", "--config", str(config), "--date", DATE, "--format", "jdbc")

    assert proc.returncode == 4, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("recbatch: error:")]
    assert len(errors) == 1 and "export jdbc" in errors[0] and "step 'connect'" in errors[0], proc.stderr[
        -2000:
    ]
    assert "password authentication failed" in errors[0]
    assert "not on spark.jars" not in proc.stderr, "the session was started without the driver jar"
    for secret in (wrong, postgres.password):
        assert secret not in proc.stdout + proc.stderr
        assert files_containing(tmp_path, secret) == []
    assert version_counts(postgres, table) == {"run1": 60}
