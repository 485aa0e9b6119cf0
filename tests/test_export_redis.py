"""The Redis export against a real redis-server: versioned keys, the atomic pointer, expiry, failures.

The server is started by tests/services.py on 127.0.0.1 with a password and no persistence.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from recbatch.config import ExportConfig, PublishConfig
from recbatch.errors import PipelineError
from recbatch.io import redis_values
from recbatch.io.export_step import run_exports
from recbatch.io.publish import publish_table, published_manifest

# The session fixtures `postgres` and `redis_server`: one server each for the whole test run.
pytest_plugins = ["tests.services"]

DATE = "2026-01-02"
TABLE = "recommendations"
SCHEMA = "user_id string, item_id string, score float, rank int, source string, model string, run_id string"
PASSWORD_ENV = "RECBATCH_TEST_REDIS_PASSWORD"


def published_rows(run_id: str, users: int, k: int = 3) -> list[tuple]:
    return [
        (f"u{u:04d}", f"i{(u * 7 + r) % 50}", 1.0 - r / 10, r, "model", "mf", run_id)
        for u in range(users)
        for r in range(1, k + 1)
    ]


def publish(spark, root: Path, run_id: str, users: int) -> str:
    """Publish a table of `users` users; returns its version (the key space the export writes)."""
    rows = spark.createDataFrame(published_rows(run_id, users), SCHEMA)
    publish_table(rows, PublishConfig(), root, DATE, run_id, 3)
    return published_manifest(root, TABLE, DATE)["version"]


def redis_config(server, prefix: str, **settings) -> ExportConfig:
    return ExportConfig.model_validate(
        {
            "formats": ["redis"],
            "redis": {"url": server.url, "prefix": prefix, "password_env": PASSWORD_ENV, **settings},
        }
    )


def export(spark, tmp_path: Path, config: ExportConfig) -> dict:
    return run_exports(spark, config, tmp_path / "pub", TABLE, DATE, ["redis"], tmp_path / "exports")["redis"]


def version_keys(client, prefix: str, version: str) -> list[bytes]:
    return sorted(client.scan_iter(match=f"{prefix}:{version}:*", count=1000))


@pytest.fixture()
def password(monkeypatch, redis_server):
    monkeypatch.setenv(PASSWORD_ENV, redis_server.password)


def rows_table(rows: list[tuple]) -> pa.Table:
    users, items, scores, ranks = zip(*rows, strict=True)
    return pa.table(
        {
            "user_id": pa.array(users),
            "item_id": pa.array(items),
            "score": pa.array(scores, pa.float32()),
            "rank": pa.array(ranks, pa.int32()),
        }
    )


def test_values_are_json_pairs_in_rank_order_with_exact_float32_scores():
    odd = ['quote"d', "back\\slash", "ünï", "comma,]", "tab\tand\nnewline"]
    scores = [0.9132, 1e-5, -2.5, 3.0, 1e10]
    rows = [("u1", item, s, r) for r, (item, s) in enumerate(zip(odd, scores, strict=True), 1)]
    rows += [("u0", "i9", 0.5, 2), ("u0", "i8", 0.75, 1)]

    keys, values = (a.to_pylist() for a in redis_values.encode_users(rows_table(rows[::-1]), "p:v1:"))

    assert keys == ["p:v1:u0", "p:v1:u1"]
    assert json.loads(values[0]) == [["i8", 0.75], ["i9", 0.5]]
    decoded = json.loads(values[1])
    assert [item for item, _ in decoded] == odd
    assert [np.float32(score) for _, score in decoded] == [np.float32(s) for s in scores]
    # Already in (user, rank) order, as published files are, and escapes without control characters:
    # the encoder's fast paths give the same values.
    plain = [r for r in rows if "\t" not in r[1]]
    ordered = sorted(plain, key=lambda r: (r[0], r[3]))
    got = [json.loads(v) for v in redis_values.encode_users(rows_table(ordered), "p:v1:")[1].to_pylist()]
    want = [[[i, np.float32(sc)] for u, i, sc, _ in ordered if u == user] for user in ("u0", "u1")]
    assert [[[i, np.float32(sc)] for i, sc in v] for v in got] == want


def test_a_task_writes_its_inner_users_and_hands_back_the_first_and_last(redis_server):
    """Users split across Arrow batches are written whole; the task's boundary users go back to the driver."""
    rows = [(f"u{u}", f"i{r}", 1.0 - r / 10, r) for u in range(1, 6) for r in (1, 2, 3)]
    table = rows_table(rows)
    batches = [b for start in (0, 4, 8, 12) for b in table.slice(start, 4).to_batches()]
    write = redis_values.partition_writer(redis_server.url, redis_server.password, "task:v1:", batch_size=2)

    out = pa.Table.from_batches(list(write(iter(batches))))

    client = redis_server.client()
    written = out.filter(pc.is_valid(out.column("written"))).column("written").to_pylist()
    assert written == [3]
    assert sorted(client.scan_iter(match="task:v1:*")) == [b"task:v1:u2", b"task:v1:u3", b"task:v1:u4"]
    assert json.loads(client.get("task:v1:u3")) == [["i1", 0.9], ["i2", 0.8], ["i3", 0.7]]
    held = out.filter(pc.is_null(out.column("written")))
    assert sorted(zip(held.column("user_id").to_pylist(), held.column("rank").to_pylist(), strict=True)) == [
        ("u1", 1),
        ("u1", 2),
        ("u1", 3),
        ("u5", 1),
        ("u5", 2),
        ("u5", 3),
    ]


def test_the_pointer_moves_only_to_whole_versions_and_the_old_one_expires(
    spark, tmp_path, redis_server, password
):
    prefix, client = "swap", redis_server.client()
    first = publish(spark, tmp_path / "pub", "run1", 200)
    export(spark, tmp_path, redis_config(redis_server, prefix, ttl_seconds=600))
    second = publish(spark, tmp_path / "pub", "run2", 300)
    second_keys = [f"{prefix}:{second}:u{u:04d}" for u in range(300)]

    seen, stop = [], threading.Event()

    def read() -> None:
        reader = redis_server.client()
        while not stop.is_set():
            version = reader.get(f"{prefix}:current").decode()
            users = int(reader.hget(f"{prefix}:meta:{version}", "users"))
            found = reader.exists(*[f"{prefix}:{version}:u{u:04d}" for u in range(users)])
            seen.append((version, users, found, reader.exists(*second_keys)))
            stop.wait(0.002)  # leave the GIL to the export's driver thread

    thread = threading.Thread(target=read)
    thread.start()
    # Small Arrow batches: the tasks write the new version over many round trips.
    batch_rows = "spark.sql.execution.arrow.maxRecordsPerBatch"
    before = spark.conf.get(batch_rows)
    spark.conf.set(batch_rows, "12")
    try:
        # The executors' writer: its small batches make the write long enough to overlap the reads;
        # the pointer protocol around it is the same for the driver's writer.
        settings = {"ttl_seconds": 600, "batch_size": 2, "writer": "executors"}
        done = export(spark, tmp_path, redis_config(redis_server, prefix, **settings))
    finally:
        spark.conf.set(batch_rows, before)
        stop.set()
        thread.join()

    assert all(found == users for _, users, found, _ in seen), "a reader saw a version with missing keys"
    assert {(v, u) for v, u, _, _ in seen} <= {(first, 200), (second, 300)}
    assert any(v == first and new_keys for v, _, _, new_keys in seen), "no read overlapped the write"
    assert client.get(f"{prefix}:current").decode() == second
    assert (done["users"], done["replaced"], done["expiring"]) == (300, first, [first])
    assert 0 < client.ttl(f"{prefix}:{first}:u0000") <= 600
    assert 0 < client.ttl(f"{prefix}:meta:{first}") <= 600
    assert client.ttl(f"{prefix}:{second}:u0000") == -1, "the current version never expires"
    assert [v.decode() for v in client.zrange(f"{prefix}:versions", 0, -1)] == [second]
    assert json.loads(client.get(f"{prefix}:{second}:u0001")) == [["i8", 0.9], ["i9", 0.8], ["i10", 0.7]]


def test_re_exporting_the_same_version_keeps_pointer_keys_and_values(spark, tmp_path, redis_server, password):
    """Also: the driver's and the executors' writers write the same keys and values."""
    prefix, client = "rerun", redis_server.client()
    version = publish(spark, tmp_path / "pub", "run1", 40)
    first = export(spark, tmp_path, redis_config(redis_server, prefix, writer="executors"))
    before = {k: client.get(k) for k in version_keys(client, prefix, version)}

    again = export(spark, tmp_path, redis_config(redis_server, prefix))

    assert (first["writer"], again["writer"]) == ("executors", "driver")  # auto: a small table
    assert len(before) == 40 and again["expiring"] == []
    assert {k: client.get(k) for k in version_keys(client, prefix, version)} == before
    assert client.get(f"{prefix}:current").decode() == version
    assert client.ttl(f"{prefix}:{version}:u0000") == -1


@pytest.mark.parametrize("writer", ["executors", "driver"])
def test_a_write_refused_midway_leaves_the_pointer_and_removes_the_partial_version(
    spark, tmp_path, redis_server, password, writer
):
    prefix, client = f"oom-{writer}", redis_server.client()
    first = publish(spark, tmp_path / "pub", "run1", 30)
    export(spark, tmp_path, redis_config(redis_server, prefix))
    second = publish(spark, tmp_path / "pub", "run2", 3000)
    # The server refuses writes once it holds a little more than now: part of the new version
    # goes in, then MSET fails with Redis's OOM error.
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", str(used + 200_000))
    try:
        with pytest.raises(PipelineError) as caught:
            export(spark, tmp_path, redis_config(redis_server, prefix, batch_size=50, writer=writer))
    finally:
        client.config_set("maxmemory", "0")

    message = str(caught.value)
    assert "step 'write'" in message and f"{prefix}:current is unchanged" in message, message
    assert "\n" not in message and redis_server.password not in message
    assert client.get(f"{prefix}:current").decode() == first
    assert len(version_keys(client, prefix, first)) == 30 and client.ttl(f"{prefix}:{first}:u0000") == -1
    assert version_keys(client, prefix, second) == []
    assert [v.decode() for v in client.zrange(f"{prefix}:versions", 0, -1)] == [first]


def test_a_wrong_password_fails_with_one_line_that_never_shows_it(spark, tmp_path, redis_server, monkeypatch):
    publish(spark, tmp_path / "pub", "run1", 5)
    wrong = "not-the-Redis-pw-27"
    monkeypatch.setenv(PASSWORD_ENV, wrong)

    with pytest.raises(PipelineError) as caught:
        export(spark, tmp_path, redis_config(redis_server, "badpw"))

    message = str(caught.value)
    assert "step 'connect'" in message and "\n" not in message
    assert wrong not in message and redis_server.password not in message
    assert redis_server.client().get("badpw:current") is None
