"""Exports of a published recommendation table for serving systems.

Each export reads the version the date's pointer names (never a half-published one),
writes next to its final place and is renamed in, so a consumer polling the export
folder never sees a partial file either:

    <exports>/<table>/dt=<date>/csv/        part files: user_id,item_id,score,rank,source,model,run_id (header)
    <exports>/<table>/dt=<date>/jsonl/      part files: {"user_id", "source", "model", "run_id", "items": [{"item_id", "score"}...]}
    <exports>/<table>/dt=<date>/<table>.sqlite   table <table>(user_id, rank, item_id, score, source, model, run_id)

`source` is "model" or "fallback" (cold-start users); tables published before it existed
export it as "model".
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recbatch.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

SQLITE_BATCH = 50_000


def with_source(recommendations: DataFrame) -> DataFrame:
    """The table with a `source` column (tables published before it existed hold model rows only)."""
    from pyspark.sql import functions as F

    if "source" in recommendations.columns:
        return recommendations
    return recommendations.withColumn("source", F.lit("model"))


def per_user_lists(recommendations: DataFrame) -> DataFrame:
    """One row per user with its items in rank order (the shape key-value stores serve)."""
    from pyspark.sql import functions as F

    return (
        with_source(recommendations)
        .groupBy("user_id", "source", "model", "run_id")
        .agg(F.sort_array(F.collect_list(F.struct("rank", "item_id", "score"))).alias("ranked"))
        .select(
            "user_id",
            "source",
            "model",
            "run_id",
            F.transform(
                "ranked", lambda r: F.struct(r["item_id"].alias("item_id"), r["score"].alias("score"))
            ).alias("items"),
        )
        .orderBy("user_id")
    )


def _replace_dir(staging: Path, final: Path) -> None:
    """Move a finished staging folder into place; the old export is removed only after."""
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.rename(final, old)
    os.rename(staging, final)
    shutil.rmtree(old, ignore_errors=True)


def _export_csv(recommendations: DataFrame, target: Path) -> None:
    staging = target.with_name(f".{target.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    (
        with_source(recommendations)
        .orderBy("user_id", "rank")
        .select("user_id", "item_id", "score", "rank", "source", "model", "run_id")
        .write.option("header", True)
        .csv(str(staging))
    )
    _replace_dir(staging, target)


def _export_jsonl(recommendations: DataFrame, target: Path) -> None:
    staging = target.with_name(f".{target.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    per_user_lists(recommendations).write.json(str(staging))
    _replace_dir(staging, target)


def _export_sqlite(recommendations: DataFrame, target: Path, table: str) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    rows = (
        with_source(recommendations)
        .orderBy("user_id", "rank")
        .select("user_id", "rank", "item_id", "score", "source", "model", "run_id")
        .toLocalIterator()
    )
    with sqlite3.connect(tmp) as db:
        db.execute(
            f'CREATE TABLE "{table}" (user_id TEXT NOT NULL, rank INTEGER NOT NULL, item_id TEXT NOT NULL, '
            "score REAL NOT NULL, source TEXT NOT NULL, model TEXT NOT NULL, run_id TEXT NOT NULL, "
            "PRIMARY KEY (user_id, rank))"
        )
        batch: list[tuple[Any, ...]] = []
        for row in rows:
            batch.append(tuple(row))
            if len(batch) >= SQLITE_BATCH:
                db.executemany(f'INSERT INTO "{table}" VALUES (?, ?, ?, ?, ?, ?, ?)', batch)
                batch.clear()
        db.executemany(f'INSERT INTO "{table}" VALUES (?, ?, ?, ?, ?, ?, ?)', batch)
    os.replace(tmp, target)


def export_table(
    recommendations: DataFrame, formats: list[str], out_dir: Path, table: str, date: str
) -> dict[str, str]:
    """Write each requested format for one date; returns {format: path}."""
    folder = Path(out_dir) / table / f"dt={date}"
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    for fmt in formats:
        if fmt == "csv":
            target = folder / "csv"
            _export_csv(recommendations, target)
        elif fmt == "jsonl":
            target = folder / "jsonl"
            _export_jsonl(recommendations, target)
        elif fmt == "sqlite":
            target = folder / f"{table}.sqlite"
            _export_sqlite(recommendations, target, table)
        else:
            raise ConfigError(f"export.formats: unknown format {fmt!r}; choose from csv, jsonl, sqlite")
        written[fmt] = str(target)
    return written
