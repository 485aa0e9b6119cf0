"""The storage seam, the workdir lock and the publish commit log on local paths, file:// and a real S3 API.

The S3 side runs against moto's S3-compatible server on 127.0.0.1 (pyarrow's own S3 client
talks to it over HTTP), so the commit and lock protocols are exercised where there is no
rename, no symlink and no file lock at all.
"""

from __future__ import annotations

import fcntl
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from recbatch.config import load_config
from recbatch.errors import ConfigError, DataError, LockHeldError, PipelineError
from recbatch.io import versions
from recbatch.ops.lock import workdir_lock
from recbatch.storage import count_rows, location, parquet_files

DATE = "2026-01-02"


@pytest.fixture(scope="module")
def s3_root():
    """A bucket on moto's S3 server on loopback, reached through the standard AWS environment variables."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
        }
    )
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    from recbatch.storage import _filesystem

    _filesystem.cache_clear()
    import pyarrow.fs as pafs

    pafs.S3FileSystem(endpoint_override=f"http://{host}:{port}", allow_bucket_creation=True).create_dir(
        "bucket"
    )
    try:
        yield location("s3a://bucket/recbatch")
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _filesystem.cache_clear()


@pytest.fixture(params=["plain", "file", "s3"])
def root(request, tmp_path):
    if request.param == "plain":
        return location(tmp_path)
    if request.param == "file":
        return location(f"file://{tmp_path}")
    return request.getfixturevalue("s3_root") / request.node.name.replace("[", "_").rstrip("]")


@pytest.fixture(params=["file", "s3"])
def portable_root(request, tmp_path):
    """Storage reached through the portable protocol only (no symlink view)."""
    if request.param == "file":
        return location(f"file://{tmp_path}")
    return request.getfixturevalue("s3_root") / request.node.name.replace("[", "_").rstrip("]")


@pytest.fixture
def no_posix_tricks(monkeypatch):
    """Fail any symlink, Python-level rename or file lock: the portable protocols must not need them."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("a POSIX-only call on the portable path")

    for module, name in (
        (os, "symlink"),
        (os, "rename"),
        (os, "replace"),
        (fcntl, "flock"),
        (fcntl, "lockf"),
    ):
        monkeypatch.setattr(module, name, refuse)


def test_location_names_and_qualifies_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert location("out/x").uri == f"{tmp_path}/out/x"
    assert location("file:///data//a/").uri == "file:///data/a"
    assert location("s3a://bucket/key/").uri == "s3a://bucket/key"
    hdfs = location("hdfs://nn:8020/x") / "runs" / "dt=1"
    assert hdfs.uri == "hdfs://nn:8020/x/runs/dt=1" and hdfs.name == "dt=1" and hdfs.parent.name == "runs"
    assert hdfs.fs_path == "/x/runs/dt=1" and location("s3a://b/k/p").fs_path == "b/k/p"
    assert pickle.loads(pickle.dumps(hdfs)) == hdfs
    with pytest.raises(ValueError, match="missing a slash: write hdfs://nn/x"):
        location("hdfs:/nn/x")
    with pytest.raises(ValueError, match="unknown storage scheme 'ftp'"):
        location("ftp://host/x")
    with pytest.raises(TypeError, match="not on the local disk"):
        os.fspath(hdfs)


def test_workdir_is_qualified_at_load_and_a_broken_uri_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_config(None, ["paths.workdir=rel/work"]).paths.workdir == f"{tmp_path}/rel/work"
    assert load_config(None, ["paths.workdir=s3a://b/w"]).paths.workdir == "s3a://b/w"
    with pytest.raises(ConfigError, match="missing a slash"):
        load_config(None, ["paths.workdir=hdfs:/nn:8020/x"])


def test_file_operations_on_every_storage(root):
    target = root / "a" / "b.json"
    target.write_text('{"x": 1}')
    assert target.is_file() and target.read_text() == '{"x": 1}' and target.size() == 8
    assert [p.name for p in (root / "a").iterdir()] == ["b.json"]  # no temporary left beside it
    assert not target.create_new(b"other") and target.read_text() == '{"x": 1}'
    (root / "a" / "c" / "d.txt").write_bytes(b"d")
    assert [p.name for p in root.glob("a/*")] == ["b.json", "c"]
    assert [f.uri[len(root.uri) :] for f in root.walk_files()] == ["/a/b.json", "/a/c/d.txt"]
    with pytest.raises(RuntimeError), target.atomic_output() as stream:
        stream.write(b"half")
        raise RuntimeError("writer died")
    assert target.read_text() == '{"x": 1}'  # a failed write leaves the old content
    (root / "a").delete()
    assert not target.exists() and not (root / "a").exists()
    with pytest.raises(FileNotFoundError, match="no file at"):
        target.read_bytes()


def test_parquet_listing_and_counts_skip_hidden_files(root):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = root / "t"
    for name, rows in (("part-0.parquet", 3), ("part-1.parquet", 2)):
        with (folder / name).atomic_output() as stream:
            pq.write_table(pa.table({"a": list(range(rows))}), stream)
    (folder / "_SUCCESS").write_bytes(b"")
    (folder / ".part-0.parquet.crc").write_bytes(b"x")
    assert [f.name for f in parquet_files(folder)] == ["part-0.parquet", "part-1.parquet"]
    assert count_rows(folder) == 5


def _version(table_dir, version, rows):
    """A finished version as publish leaves it: a part file, then the manifest."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = versions.version_dir(table_dir, DATE, version)
    with (folder / "part-00000.parquet").atomic_output() as stream:
        pq.write_table(pa.table({"user_id": [f"u{i}" for i in range(rows)]}), stream)
    (folder / versions.MANIFEST).write_text(json.dumps({"version": version, "created_at": version[-21:]}))
    return folder


def test_commit_log_makes_one_version_current(portable_root, no_posix_tricks):
    root = portable_root
    table = root / "published" / "recommendations"
    with pytest.raises(DataError, match="no published version"):
        versions.resolve(root / "published", "recommendations", DATE)
    first = versions.new_version("r1", datetime(2026, 1, 2, 1, tzinfo=UTC))
    second = versions.new_version("r2", datetime(2026, 1, 2, 2, tzinfo=UTC))
    _version(table, first, 3)
    versions.commit(table, DATE, first, "publish")
    assert versions.resolve(root / "published", "recommendations", DATE).name == first
    _version(table, second, 2)
    unfinished = versions.version_dir(
        table, DATE, versions.new_version("r3", datetime(2026, 1, 2, 3, tzinfo=UTC))
    )
    (unfinished / "part-00000.parquet").write_bytes(b"half a table")
    entry = versions.commit(table, DATE, second, "publish")
    assert entry["seq"] == 2 and entry["previous"] == first
    assert versions.resolve(root / "published", "recommendations", None).name == second
    with pytest.raises(PipelineError, match="incomplete"):
        versions.commit(table, DATE, unfinished.name, "publish")
    assert versions.remove_orphans(table, datetime(2026, 1, 2, 4, tzinfo=UTC)) == [
        f"dt={DATE}/{unfinished.name}"
    ]
    versions.commit(table, DATE, first, "rollback")  # an older version made current again
    assert versions.current_version(table, DATE) == first
    assert (
        versions.prune(table, DATE, keep=1) == []
    )  # the newest is kept, and the current one is never removed
    assert [c["action"] for c in versions.commits(table, DATE)] == ["publish", "publish", "rollback"]
    assert versions.published_dates(table) == [DATE]


def test_plain_paths_keep_a_symlink_view_of_the_commits(tmp_path):
    root = location(tmp_path)
    table = root / "recommendations"
    for n in (1, 2):
        version = versions.new_version(f"r{n}", datetime(2026, 1, 2, n, tzinfo=UTC))
        _version(table, version, n)
        versions.commit(table, DATE, version, "publish")
        assert os.readlink(tmp_path / "recommendations" / f"dt={DATE}") == f".versions/dt={DATE}/{version}"
    assert os.readlink(tmp_path / "recommendations" / "_latest") == f"dt={DATE}"


def test_lock_excludes_a_second_holder_on_every_storage(root):
    lock_dir = root / "locks" / "run"
    with workdir_lock(lock_dir, "first"):
        with pytest.raises(LockHeldError, match="first"), workdir_lock(lock_dir, "second"):
            pass
        (claim,) = lock_dir.iterdir()
        assert json.loads(claim.read_text())["what"] == "first"
    assert lock_dir.iterdir() == []
    with workdir_lock(lock_dir, "third"):
        pass


def test_lock_needs_no_fcntl_on_a_uri(tmp_path, no_posix_tricks):
    with workdir_lock(f"file://{tmp_path}/locks", "portable"):
        assert len(location(tmp_path / "locks").iterdir()) == 1


def _claim(lock_dir, host, pid, age_s):
    started = time.time() - age_s
    (lock_dir / f"{time.time_ns() - int(age_s * 1e9):020d}-{host}-{pid}-abcd1234.json").write_text(
        json.dumps({"pid": pid, "host": host, "what": "old run", "since": "then", "heartbeat": started})
    )


def test_dead_and_stale_holders_are_taken_over_but_live_ones_are_not(tmp_path, caplog):
    lock_dir = location(tmp_path / "locks")
    _claim(lock_dir, "other-host", 4242, age_s=5)  # alive somewhere else: respected
    with pytest.raises(LockHeldError, match="other-host"), workdir_lock(lock_dir, "me", stale_after=60):
        pass
    with workdir_lock(lock_dir, "me", stale_after=2):  # ... until it stops heartbeating past the limit
        pass
    assert "no heartbeat for" in caplog.text
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _claim(lock_dir, socket.gethostname(), dead.pid, age_s=1)  # its process on this host is gone
    with workdir_lock(lock_dir, "me", stale_after=3600):
        pass
    assert "its process on this host has exited" in caplog.text


def test_a_killed_holder_frees_the_lock_at_once_and_a_live_one_heartbeats(tmp_path):
    lock_dir = tmp_path / "locks"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from recbatch.ops.lock import workdir_lock\n"
            f"with workdir_lock({str(lock_dir)!r}, 'cron run', stale_after=5):\n"
            "    print('held', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        (claim,) = location(lock_dir).iterdir()
        first = json.loads(claim.read_text())["heartbeat"]
        time.sleep(1.5)  # heartbeats every stale_after / 10 (at least 0.5 s)
        assert json.loads(claim.read_text())["heartbeat"] > first
        with pytest.raises(LockHeldError, match="cron run"), workdir_lock(lock_dir, "second"):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with workdir_lock(lock_dir, "after the kill"):
        pass


def test_orphan_cutoff_uses_the_version_name_not_folder_times(tmp_path):
    table = location(tmp_path / "t")
    recent = versions.new_version("r", datetime.now(UTC) + timedelta(seconds=5))
    (versions.version_dir(table, DATE, recent) / "part-0").write_bytes(b"x")
    assert versions.remove_orphans(table, datetime.now(UTC)) == []  # a live writer's version is left alone
