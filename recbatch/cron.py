"""What cron drives: recorded runs, backfills over a date range, rollback and garbage collection.

Every run leaves a record (recbatch.ops.history) and refreshes the Prometheus textfile
(recbatch.ops.monitoring), whether it succeeded or failed; the exit codes stay those of
recbatch.errors. Callers hold the workdir lock.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import date as Date
from typing import TYPE_CHECKING, Any

from recbatch import pipeline
from recbatch.config import Config
from recbatch.errors import SPARK_ERROR_NAMES, ConfigError, RecbatchError
from recbatch.ops import history, monitoring
from recbatch.ops.run_id import make_run_id
from recbatch.storage import location

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


def _exit_code(exc: BaseException) -> int:
    # Spark's own failures become exit 4 in the CLI; anything else unexpected is 1.
    if isinstance(exc, RecbatchError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return 130
    return 4 if type(exc).__name__ in SPARK_ERROR_NAMES else 1


def _gate_of_this_run(result: pipeline.RunResult, started: str) -> dict[str, Any] | None:
    """The gate's record: from the manifest, or (a refused publish has none) from the run's gate.json."""
    if "gate" in result.published:
        return result.published["gate"]
    report = result.layout.run_dir / "gate.json"
    if report.is_file():
        gate = json.loads(report.read_text())
        if str(gate.get("checked_at", "")) >= started:
            return gate
    return None


def _record(result: pipeline.RunResult, error: BaseException | None, started: str) -> dict[str, Any]:
    published = result.published
    gate = _gate_of_this_run(result, started)
    return {
        "run_id": result.run_id,
        "status": "ok" if error is None else "failed",
        "exit_code": 0 if error is None else _exit_code(error),
        "error": None if error is None else str(error).splitlines()[0][:500],
        "seconds": dict(result.seconds),
        "rows_read": result.report.get("rows_read"),
        "quarantined": result.report.get("rows_quarantined"),
        "metric": published.get("metric"),
        "rows": published.get("rows"),
        "users": published.get("users"),
        "version": published.get("version"),
        "gate": None
        if gate is None
        else {k: gate.get(k) for k in ("passed", "forced", "failed", "churn", "drops")},
        "exports": {fmt: done.get("rows") for fmt, done in result.exports.items()},
    }


def textfile_target(config: Config) -> Any:
    """Where the Prometheus textfile goes: monitoring.textfile, else beside a local workdir, else nowhere."""
    if config.monitoring.textfile:
        return location(config.monitoring.textfile)
    workdir = location(config.paths.workdir)
    return workdir / "monitoring" / "recbatch.prom" if workdir.is_local else None


def run_recorded(spark: SparkSession, config: Config, date: str, force: bool = False) -> pipeline.RunResult:
    """`pipeline.run_all` for one date, leaving a run record and the textfile whatever happens."""
    layout = pipeline.layout_for(config, date)
    result = pipeline.RunResult(date=date, run_id=make_run_id(config, date, spark), layout=layout)
    started = datetime.now(UTC).isoformat()
    error: BaseException | None = None
    try:
        return pipeline.run_all(spark, config, date, force=force, result=result)
    except BaseException as exc:
        error = exc
        raise
    finally:
        record = {"started_at": started, **_record(result, error, started)}
        history.write_record(layout, record)
        target = textfile_target(config)
        if target is not None:
            done = [r for r in history.read_records(layout.workdir) if r.get("status") == "ok"]
            monitoring.write_textfile(target, config.publish.table, record, done[-1] if done else None)


def date_range(first: str, last: str) -> list[str]:
    """Every date from `first` to `last`, inclusive, in order; ConfigError when the range is backwards."""
    start, end = Date.fromisoformat(first), Date.fromisoformat(last)
    if end < start:
        raise ConfigError(f"--from {first} is after --to {last}: give the earlier date first")
    return [(start + timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]


@dataclass
class Backfill:
    """What a backfill did: dates done, the one that failed (with its error) and those never started."""

    done: list[pipeline.RunResult] = field(default_factory=list)
    failed: str | None = None
    error: RecbatchError | None = None
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"backfill: {len(self.done)} date(s) done"
            + (f", stopped at {self.failed}" if self.failed else "")
        ]
        lines += [
            f"  ok      {r.date}  run {r.run_id}  {r.published.get('rows', 0):,} rows" for r in self.done
        ]
        if self.failed:
            lines.append(f"  failed  {self.failed}  {self.error}")
        lines += [f"  not run {d}" for d in self.skipped]
        return "\n".join(lines)


def backfill(spark: SparkSession, config: Config, dates: list[str], force: bool = False) -> Backfill:
    """Run each date in order (each idempotent), stopping at the first failure."""
    out = Backfill()
    for n, date in enumerate(dates):
        log.info("backfill: date %s (%d of %d)", date, n + 1, len(dates))
        try:
            out.done.append(run_recorded(spark, config, date, force))
        except RecbatchError as exc:
            out.failed, out.error, out.skipped = date, exc, dates[n + 1 :]
            break
    return out


def rollback(config: Config, date: str, to: str | None, spark: SparkSession | None = None) -> dict[str, Any]:
    """Re-point `date` at an earlier version (and the catalog partition, when configured); returns the commit."""
    layout = pipeline.layout_for(config, date)
    table_dir = layout.published_root / config.publish.table
    entry = history.rollback(table_dir, date, to)
    catalog_table = config.publish.catalog_table
    if catalog_table and spark is not None:
        from recbatch.io.catalog import register_version
        from recbatch.io.versions import version_dir

        folder = version_dir(table_dir, date, entry["version"])
        register_version(spark, catalog_table, date, str(folder), spark.read.parquet(str(folder)).schema)
    history.write_record(
        layout,
        {"run_id": entry["version"].rsplit("-", 1)[0], "status": "rollback", "version": entry["version"]},
    )
    return entry


def collect_garbage(config: Config) -> dict[str, list[str]]:
    """Prune kept versions and remove unfinished ones older than the lock's stale limit."""
    layout = pipeline.layout_for(config, "1970-01-01")
    return history.collect_garbage(
        layout.published_root / config.publish.table,
        config.publish.keep_versions,
        timedelta(minutes=config.paths.lock_stale_minutes),
    )
