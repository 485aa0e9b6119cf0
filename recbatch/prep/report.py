"""The prepare report: per-file and per-degree statistics, row accounting that must add up,
report.json and the plain-text table logged at the end of the stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from recbatch.errors import DataError, PipelineError
from recbatch.io.lines import HEADER, REASON
from recbatch.io.readers import SOURCE_FILE
from recbatch.storage import Location, write_json

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

    from recbatch.layout import RunLayout


def file_counts(staging: DataFrame, files: list[str]) -> dict[str, dict[str, Any]]:
    """Per input file: lines, rows_read (lines less its header), quarantined and header_only."""
    from pyspark.sql import functions as F

    stats: dict[str, dict[str, int]] = {f: {} for f in files}
    for r in staging.groupBy(SOURCE_FILE, REASON).agg(F.count(F.lit(1)).alias("n")).collect():
        stats.setdefault(r[SOURCE_FILE], {})[r[REASON] or ""] = int(r["n"])
    out = {}
    for file, reasons in sorted(stats.items()):
        lines = sum(reasons.values())
        headers = reasons.get(HEADER, 0)
        read = lines - min(headers, 1)
        out[file] = {
            "lines": lines,
            "rows_read": read,
            "quarantined": read - reasons.get("", 0),
            "header_only": headers >= 1 and read == 0,
        }
    return out


def degree_quantiles(interactions: DataFrame, key: str) -> dict[str, float]:
    """Interactions per user (or item): min, p50, p90, p99, max."""
    from pyspark.sql import functions as F

    degrees = interactions.groupBy(key).agg(F.count(F.lit(1)).alias("n"))
    row = degrees.agg(
        F.min("n").alias("min"),
        F.percentile_approx("n", [0.5, 0.9, 0.99], 10_000).alias("q"),
        F.max("n").alias("max"),
    ).first()
    if row["q"] is None:
        return {}
    p50, p90, p99 = row["q"]
    return {"min": row["min"], "p50": p50, "p90": p90, "p99": p99, "max": row["max"]}


def written_counts(
    spark: SparkSession, layout: RunLayout, schemas: Mapping[str, StructType]
) -> dict[str, Any]:
    """Counts of the prepared Parquet as written: clean rows, pairs, split sizes, degree quantiles.

    Read back from the files rather than carried from the steps, so the accounting check
    compares independent counts; `schemas` (interactions, train, test) are those written.
    """
    from pyspark.sql import functions as F

    def read(name: str) -> DataFrame:
        return spark.read.schema(schemas[name]).parquet(str(getattr(layout, name)))

    inter = read("interactions")
    written = inter.agg(F.count(F.lit(1)).alias("n"), F.sum("count").alias("rows")).first()
    test = read("test").agg(F.count(F.lit(1)).alias("n"), F.countDistinct("user_idx").alias("users")).first()
    return {
        "rows_clean": int(written["rows"] or 0),
        "interactions": int(written["n"]),
        "train_rows": read("train").count(),
        "test_rows": int(test["n"]),
        "test_users": int(test["users"]),
        "per_user": degree_quantiles(inter, "user_idx"),
        "per_item": degree_quantiles(inter, "item_idx"),
    }


def check_accounting(report: dict[str, Any]) -> None:
    """Raise PipelineError unless every raw row read is accounted for exactly once.

    rows_read = rows_clean + rows_quarantined + duplicates_merged + rows_filtered, and
    the per-reason and per-filter counts add up to their totals.
    """
    parts = {
        "rows_clean": report["rows_clean"],
        "rows_quarantined": report["rows_quarantined"],
        "duplicates_merged": report["duplicates_merged"],
        "rows_filtered": report["rows_filtered"],
    }
    problems = []
    if sum(parts.values()) != report["rows_read"]:
        problems.append(
            f"rows_read {report['rows_read']} != {' + '.join(f'{k} {v}' for k, v in parts.items())}"
        )
    if sum(report["quarantine_by_reason"].values()) != report["rows_quarantined"]:
        problems.append(f"quarantine_by_reason does not sum to rows_quarantined {report['rows_quarantined']}")
    if sum(report["filtered"].values()) != report["rows_filtered"]:
        problems.append(f"filtered does not sum to rows_filtered {report['rows_filtered']}")
    files = report.get("files")
    if files is not None and sum(f["rows_read"] for f in files.values()) != report["rows_read"]:
        problems.append("rows read per file do not sum to rows_read")
    if files is not None and sum(f["quarantined"] for f in files.values()) != report["rows_quarantined"]:
        problems.append("quarantined rows per file do not sum to rows_quarantined")
    if report["train_rows"] + report["test_rows"] != report["interactions"]:
        problems.append(
            f"train_rows {report['train_rows']} + test_rows {report['test_rows']} "
            f"!= interactions {report['interactions']}"
        )
    if problems:
        raise PipelineError("prepare: row accounting does not add up: " + "; ".join(problems) + " (a bug)")


def nothing_clean_error(rows_read: int, by_reason: dict[str, int], quarantine_path: str) -> DataError:
    """The error for input where no row survives validation, pointing at the likely cause."""
    if rows_read == 0:
        return DataError("0 rows read from the input (is input.path an empty file or folder?)")
    top = max(by_reason.items(), key=lambda kv: (kv[1], kv[0]))[0] if by_reason else "none"
    quarantined = sum(by_reason.values())
    return DataError(
        f"0 clean rows: {quarantined} quarantined, top reason {top} — check "
        f"input.format/delimiter/columns (rejected rows are in {quarantine_path})"
    )


def density(users: int, items: int, interactions: int) -> float:
    """Share of the user x item matrix that holds an interaction."""
    return interactions / (users * items) if users and items else 0.0


def write_report(report: dict[str, Any], path: str | Location) -> None:
    """Write report.json atomically (a reader never sees half a file)."""
    write_json(path, report)


def format_table(report: dict[str, Any]) -> str:
    """The accounting as a plain-text table: per file, per reason, per filter, then the shape."""
    n = report["rows_read"]

    def line(label: str, value: int | float | str, indent: int = 0, share: bool = True) -> str:
        shown = f"{value:>14,}" if isinstance(value, int) else f"{value!s:>14}"
        share_text = f"  {value / n:7.3%}" if share and isinstance(value, int) and n else ""
        return f"{'  ' * indent}{label:<{40 - 2 * indent}}{shown}{share_text}"

    out = [line("rows read", n)]
    for file, counts in (report.get("files") or {}).items():
        out.append(line(file.rsplit("/", 1)[-1], counts["rows_read"], 1))
    out.append(line("quarantined", report["rows_quarantined"]))
    out += [line(k, v, 1) for k, v in report["quarantine_by_reason"].items()]
    out.append(line("duplicates merged", report["duplicates_merged"]))
    out.append(line("exact", report.get("duplicates_exact", report["duplicates_merged"]), 1))
    out.append(line("near duplicates", report.get("near_duplicates_merged", 0), 1))
    out.append(line("filtered", report["rows_filtered"]))
    out += [line(k, v, 1) for k, v in report["filtered"].items()]
    out.append(line("kept (clean)", report["rows_clean"]))
    out.append(line("users", report["users"], share=False))
    out.append(line("items", report["items"], share=False))
    out.append(line("interactions", report["interactions"], share=False))
    out.append(line("train / test", f"{report['train_rows']:,} / {report['test_rows']:,}"))
    out.append(line("density", f"{report['density']:.6f}"))
    for side in ("per_user", "per_item"):
        q = report.get(side) or {}
        if q:
            out.append(
                line(f"interactions {side.replace('_', ' ')}", " ".join(f"{k}={v}" for k, v in q.items()))
            )
    return "\n".join(out)
