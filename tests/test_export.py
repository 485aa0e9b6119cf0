"""Exports for serving systems, read back and compared with the published table."""

from __future__ import annotations

import json
import sqlite3

import pytest

from recbatch.config import PublishConfig
from recbatch.errors import ConfigError
from recbatch.io.export import export_table
from recbatch.io.publish import publish_table, read_published

DATE = "2026-01-02"
SCHEMA = "user_id string, item_id string, score float, rank int, source string, model string, run_id string"


@pytest.fixture()
def published(spark, tmp_path):
    rows = [
        (f"u{u}", f"i{(u + r) % 7}", 1.0 - r / 10, r, "fallback" if u == 4 else "model", "mf", "run1")
        for u in range(5)
        for r in (1, 2, 3)
    ]
    publish_table(spark.createDataFrame(rows, SCHEMA), PublishConfig(), tmp_path / "pub", DATE, "run1", 3)
    return read_published(spark, tmp_path / "pub", "recommendations", DATE), rows


def test_csv_jsonl_and_sqlite_hold_exactly_the_published_rows(spark, tmp_path, published):
    table, rows = published
    paths = export_table(table, ["csv", "jsonl", "sqlite"], tmp_path / "exports", "recommendations", DATE)

    csv = spark.read.option("header", True).schema(SCHEMA).csv(paths["csv"])
    assert sorted(tuple(r) for r in csv.collect()) == sorted(
        (u, i, pytest.approx(s), r, src, m, run) for u, i, s, r, src, m, run in rows
    )

    lines = [
        json.loads(line) for f in sorted((tmp_path / "exports").rglob("part-*.json")) for line in f.open()
    ]
    assert [line["user_id"] for line in lines] == [f"u{u}" for u in range(5)]
    for line in lines:
        expected = sorted((r for r in rows if r[0] == line["user_id"]), key=lambda r: r[3])
        assert [i["item_id"] for i in line["items"]] == [r[1] for r in expected]
        assert line["source"] == expected[0][4]

    with sqlite3.connect(paths["sqlite"]) as db:
        got = db.execute(
            "SELECT user_id, item_id, score, rank, source, model, run_id FROM recommendations"
        ).fetchall()
    assert sorted(got) == sorted((u, i, pytest.approx(s), r, src, m, run) for u, i, s, r, src, m, run in rows)


def test_tables_published_before_the_source_column_export_as_model_rows(spark, tmp_path, published):
    table, _ = published
    paths = export_table(table.drop("source"), ["csv"], tmp_path / "exports", "recommendations", DATE)
    csv = spark.read.option("header", True).schema(SCHEMA).csv(paths["csv"])
    assert {r.source for r in csv.collect()} == {"model"}


def test_re_export_replaces_the_previous_files_whole(spark, tmp_path, published):
    table, _ = published
    first = export_table(table, ["csv"], tmp_path / "exports", "recommendations", DATE)
    export_table(table.limit(3), ["csv"], tmp_path / "exports", "recommendations", DATE)
    assert spark.read.option("header", True).csv(first["csv"]).count() == 3
    assert not list((tmp_path / "exports").rglob(".*staging*"))


def test_unknown_format_is_a_config_error(tmp_path, published):
    table, _ = published
    with pytest.raises(ConfigError, match="unknown format 'xml'"):
        export_table(table, ["xml"], tmp_path / "exports", "recommendations", DATE)
