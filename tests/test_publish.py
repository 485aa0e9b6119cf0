"""Atomic publishing: staging, validation gate, pointer swap, pruning, byte-identical reruns."""

from __future__ import annotations

import hashlib
import json
import os
import time

import pytest

from recbatch.config import PublishConfig
from recbatch.errors import DataError, PipelineError
from recbatch.io.publish import LATEST, MANIFEST, publish_table, published_manifest, read_published

pytestmark = pytest.mark.spark

DATE = "2026-01-02"
SCHEMA = "user_id string, item_id string, score float, rank int, model string, run_id string"


def _recs(spark, users: int = 6, k: int = 3, run: str = "r", shift: int = 0, extra=()):
    rows = [
        (f"u{u}", f"i{(u + r + shift) % 10}", 1.0 - r / 10, r, "mf", run)
        for u in range(users)
        for r in range(1, k + 1)
    ]
    return spark.createDataFrame(rows + list(extra), SCHEMA)


def _rows(df):
    return sorted(tuple(r) for r in df.select("user_id", "item_id", "score", "rank").collect())


def _publish(spark, root, run_id, df, keep=3, **kw):
    kw.setdefault("k", 3)
    return publish_table(
        df, PublishConfig(keep_versions=keep), root, DATE, run_id, manifest_extra={"model": "mf"}, **kw
    )


def test_publish_then_rerun_replaces_the_date(spark, tmp_path):
    first = _recs(spark, run="r1")
    manifest = _publish(spark, tmp_path, "r1", first)
    table = tmp_path / "recommendations"
    pointer = table / f"dt={DATE}"
    version = table / ".versions" / f"dt={DATE}" / manifest["version"]
    assert os.readlink(pointer) == f".versions/dt={DATE}/{manifest['version']}"
    assert manifest["version"].startswith("r1-") and manifest["path"] == str(version)
    (commit,) = (table / "_commits" / f"dt={DATE}").iterdir()
    assert commit.name == "00000001.json" and json.loads(commit.read_text())["version"] == manifest["version"]
    assert os.readlink(table / LATEST) == f"dt={DATE}"
    assert manifest["rows"] == 18 and manifest["users"] == 6 and manifest["k"] == 3
    assert manifest["model"] == "mf" and manifest["run_id"] == "r1" and manifest["date"] == DATE
    assert manifest["columns"] == ["user_id", "item_id", "score", "rank", "model", "run_id"]
    files = sorted(p.name for p in (table / ".versions" / f"dt={DATE}" / manifest["version"]).glob("part-*"))
    assert files == sorted(f["path"] for f in manifest["files"]) and all(
        f.endswith(f"-{manifest['version']}.snappy.parquet") for f in files
    )
    assert _rows(spark.read.parquet(str(pointer))) == _rows(first)
    assert published_manifest(tmp_path, "recommendations") == manifest

    second = _recs(spark, users=4, run="r2", shift=5)
    _publish(spark, tmp_path, "r2", second)
    assert _rows(spark.read.parquet(str(pointer))) == _rows(second)
    assert _rows(read_published(spark, tmp_path, "recommendations", DATE)) == _rows(second)
    # The table root reads as a table partitioned by dt; versions and _latest stay hidden.
    whole = spark.read.parquet(str(table))
    assert whole.count() == 12
    assert sorted({str(r.dt) for r in whole.select("dt").distinct().collect()}) == [DATE]


def _bad(spark, kind):
    base = _recs(spark, run="bad")
    if kind == "nan_score":
        return base.filter("NOT (user_id = 'u2' AND rank = 3)").unionByName(
            spark.createDataFrame([("u2", "i9", float("nan"), 3, "mf", "bad")], SCHEMA)
        )
    if kind == "duplicate_items":
        return base.filter("NOT (user_id = 'u1' AND rank = 3)").unionByName(
            spark.createDataFrame([("u1", "i2", 0.1, 3, "mf", "bad")], SCHEMA)
        )
    if kind == "too_many_rows":
        return base.unionByName(spark.createDataFrame([("u3", "i0", 0.1, 4, "mf", "bad")], SCHEMA))
    if kind == "ranks_not_contiguous":
        return base.filter("NOT (user_id = 'u0' AND rank = 2)")
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["nan_score", "duplicate_items", "too_many_rows", "ranks_not_contiguous"])
def test_validation_failure_keeps_the_published_version(spark, tmp_path, kind):
    good = _recs(spark, run="r1")
    before = _publish(spark, tmp_path, "r1", good)
    with pytest.raises(PipelineError, match="refused") as err:
        _publish(spark, tmp_path, "r2", _bad(spark, kind))
    check = "bad_values" if kind == "nan_score" else kind
    assert f"check {check} failed" in str(err.value) and "e.g. {" in str(err.value)
    versions = tmp_path / "recommendations" / ".versions" / f"dt={DATE}"
    assert sorted(p.name for p in versions.iterdir()) == [before["version"]]  # staging removed
    assert published_manifest(tmp_path, "recommendations", DATE) == before
    assert _rows(read_published(spark, tmp_path, "recommendations", DATE)) == _rows(good)


def test_expected_rows_per_user(spark, tmp_path):
    # u5 has only 2 unseen items (catalogue exhausted): 2 rows are right for it, not for u4.
    df = _recs(spark, run="r1").filter("NOT (user_id IN ('u4', 'u5') AND rank = 3)")
    expected = spark.createDataFrame(
        [(f"u{u}", 2 if u == 5 else 9) for u in range(6)], "user_id string, expected long"
    )
    with pytest.raises(PipelineError, match=r"check wrong_row_count failed for 1 user\(s\).*'u4'"):
        _publish(spark, tmp_path, "r1", df, expected_rows_per_user=expected)
    fixed = expected.selectExpr("user_id", "IF(user_id = 'u4', 2L, expected) AS expected")
    assert _publish(spark, tmp_path, "r2", df, expected_rows_per_user=fixed)["rows"] == 16
    missing = fixed.unionByName(spark.createDataFrame([("u9", 4)], "user_id string, expected long"))
    with pytest.raises(PipelineError, match="wrong_row_count.*'u9'"):
        _publish(spark, tmp_path, "r3", df, expected_rows_per_user=missing)


def test_keep_versions_prunes_older_versions(spark, tmp_path):
    df = _recs(spark, users=2, run="x")
    published = [
        _publish(spark, tmp_path, run, df, keep=2, files=1)["version"] for run in ("r1", "r2", "r3", "r4")
    ]
    versions = tmp_path / "recommendations" / ".versions" / f"dt={DATE}"
    assert sorted(p.name for p in versions.iterdir()) == published[2:]
    assert os.readlink(tmp_path / "recommendations" / f"dt={DATE}").endswith(f"/{published[3]}")
    # Republishing the same (deterministic) run id gets a fresh version; the old one stays readable until the swap.
    again = _publish(spark, tmp_path, "r4", df, keep=2, files=1)["version"]
    assert again != published[3] and again.startswith("r4-")
    assert sorted(p.name for p in versions.iterdir()) == [published[3], again]


def test_same_dataframe_gives_byte_identical_files(spark, tmp_path):
    df = _recs(spark, users=40, run="same").repartition(3)
    a = _publish(spark, tmp_path, "r1", df, files=2)
    b = _publish(spark, tmp_path, "r2", df.repartition(5), files=2)
    assert len(a["files"]) == 2
    assert [(f["sha256"], f["bytes"]) for f in a["files"]] == [(f["sha256"], f["bytes"]) for f in b["files"]]
    version = tmp_path / "recommendations" / ".versions" / f"dt={DATE}" / a["version"]
    assert (version / MANIFEST).is_file() and not list(version.glob(".*.crc"))


def test_reading_an_unpublished_table_is_a_data_error(spark, tmp_path):
    with pytest.raises(DataError, match="run `recbatch score` first"):
        read_published(spark, tmp_path, "recommendations")


def test_publishing_removes_staging_left_by_killed_runs(spark, tmp_path):
    """A publish killed mid-write leaves `<version>.staging`; the next publish (under the lock) removes it."""
    debris = tmp_path / "recommendations" / ".versions" / "dt=2026-01-01" / "r0-20260101T000000.staging"
    debris.mkdir(parents=True)
    (debris / "part-00000.snappy.parquet").write_bytes(b"half a file")
    old = time.time() - 3600
    os.utime(debris, (old, old))
    manifest = _publish(spark, tmp_path, "r1", _recs(spark, users=2, run="r1"), files=1)
    assert not debris.exists()
    assert (tmp_path / "recommendations" / ".versions" / f"dt={DATE}" / manifest["version"]).is_dir()


def test_content_checksum_covers_the_pages_not_the_footer(spark, tmp_path):
    from recbatch.core.files import parquet_content_sha256

    manifest = _publish(spark, tmp_path, "r1", _recs(spark, users=4, run="r1"), files=1)
    part = (
        tmp_path
        / "recommendations"
        / ".versions"
        / f"dt={DATE}"
        / manifest["version"]
        / manifest["files"][0]["path"]
    )
    data = part.read_bytes()
    footer = int.from_bytes(data[-8:-4], "little")
    assert (
        manifest["files"][0]["content_sha256"] == hashlib.sha256(data[: len(data) - 8 - footer]).hexdigest()
    )
    assert (
        manifest["content_sha256"]
        == hashlib.sha256(manifest["files"][0]["content_sha256"].encode()).hexdigest()
    )
    # A different footer with the same pages keeps the content checksum; different pages do not.
    copy = tmp_path / "copy.parquet"
    copy.write_bytes(data[: len(data) - 8 - footer] + data[len(data) - 8 - footer :].replace(b"mf", b"xx", 1))
    assert parquet_content_sha256(copy) == manifest["files"][0]["content_sha256"]
    copy.write_bytes(b"X" + data[1:])
    assert parquet_content_sha256(copy) != manifest["files"][0]["content_sha256"]
    (tmp_path / "short").write_bytes(b"PAR1")
    with pytest.raises(ValueError, match="Parquet footer"):
        parquet_content_sha256(tmp_path / "short")
