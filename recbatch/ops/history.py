"""Run records, rollback and retention: what cron operations need after the table is published.

    <workdir>/runs/_records/dt=<date>/<finished UTC>-<run_id>.json    one record per run (or rollback)

A record is one small object written once, so it works on object stores, where appending to a
shared history file is impossible; `recbatch runs --json` prints them as JSON lines.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from recbatch.errors import DataError
from recbatch.io import versions
from recbatch.layout import RunLayout
from recbatch.storage import Location, write_json

log = logging.getLogger(__name__)

RECORDS = "_records"


def records_dir(workdir: Location) -> Location:
    return workdir / "runs" / RECORDS


def write_record(layout: RunLayout, record: dict[str, Any]) -> Location:
    """Store one run's record under the work directory; returns where."""
    finished = datetime.now(UTC)
    record = {"date": layout.date, "finished_at": finished.isoformat(), **record}
    target = (
        records_dir(layout.workdir)
        / f"dt={layout.date}"
        / f"{finished:%Y%m%dT%H%M%S%f}-{record.get('run_id')}.json"
    )
    write_json(target, record)
    return target


def read_records(workdir: Location, date: str | None = None) -> list[dict[str, Any]]:
    """Run records, oldest first (of one date, or all); unreadable ones are skipped with a warning."""
    folders = [records_dir(workdir) / f"dt={date}"] if date else records_dir(workdir).glob("dt=*")
    out = []
    for folder in folders:
        for entry in folder.iterdir():
            if not entry.name.endswith(".json"):
                continue
            try:
                out.append(json.loads(entry.read_text()))
            except (OSError, ValueError) as exc:
                log.warning("runs: skipping unreadable record %s (%s)", entry, exc)
    return sorted(out, key=lambda r: (str(r.get("finished_at")), str(r.get("date"))))


def format_records(records: list[dict[str, Any]]) -> str:
    """A fixed-width table of run records for `recbatch runs`."""
    header = (
        f"{'date':<10}  {'status':<8}  {'run id':<20}  {'seconds':>8}  {'metric':>14}  {'rows':>10}  version"
    )
    lines = [header]
    for r in records:
        metric = r.get("metric") or {}
        shown = f"{metric.get('name', '')} {metric['value']:.4f}" if "value" in metric else "-"
        total = sum((r.get("seconds") or {}).values())
        lines.append(
            f"{r.get('date', ''):<10}  {r.get('status', ''):<8}  {r.get('run_id', '')!s:<20}  {total:>8.1f}  "
            f"{shown:>14}  {r.get('rows', 0) or 0:>10,}  {r.get('version') or r.get('error', '')}"
        )
    return "\n".join(lines)


def rollback(table_dir: Location, date: str, to: str | None = None) -> dict[str, Any]:
    """Make an earlier version of `date` current again with one commit; returns the commit.

    `to` is a version name or a run id (its newest complete version); by default, the
    version that was current before the present one. DataError when there is none.
    """
    log_ = versions.commits(table_dir, date)
    if not log_:
        raise DataError(f"nothing to roll back: dt={date} of {table_dir} was never published")
    current = log_[-1]["version"]
    complete = {
        v.name
        for v in (table_dir / versions.VERSIONS / f"dt={date}").iterdir()
        if (v / versions.MANIFEST).is_file()
    }
    if to is None:
        earlier = [
            c["version"] for c in reversed(log_) if c["version"] != current and c["version"] in complete
        ]
        target = earlier[0] if earlier else None
    elif to in complete:
        target = to
    else:
        of_run = sorted(v for v in complete if v.rsplit("-", 1)[0] == to)
        target = of_run[-1] if of_run else None
    if target is None:
        kept = ", ".join(sorted(complete)) or "none"
        raise DataError(
            f"no earlier version of dt={date} to roll back to{f' matching {to!r}' if to else ''} "
            f"(kept versions: {kept}; publish.keep_versions sets how many are kept)"
        )
    if target == current:
        raise DataError(f"dt={date} already serves {target}; nothing to roll back")
    return versions.commit(table_dir, date, target, "rollback")


def collect_garbage(table_dir: Location, keep: int, older_than: timedelta) -> dict[str, list[str]]:
    """Prune every date to `keep` versions and remove unfinished versions started over `older_than` ago."""
    pruned = []
    for date in versions.published_dates(table_dir):
        pruned += [f"dt={date}/{v}" for v in versions.prune(table_dir, date, keep)]
    orphans = versions.remove_orphans(table_dir, datetime.now(UTC) - older_than)
    return {"pruned": pruned, "unfinished": orphans}
