"""The Prometheus textfile a node exporter's textfile collector reads after each run.

Written atomically (a scrape never reads half a file), from the run's record and the
newest successful record, so `recbatch_last_success_timestamp_seconds` survives failed runs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from recbatch.storage import Location

_HELP = {
    "recbatch_last_run_timestamp_seconds": ("gauge", "When the last run finished (Unix time)."),
    "recbatch_last_run_success": ("gauge", "1 when the last run succeeded, else 0."),
    "recbatch_last_run_exit_code": (
        "gauge",
        "Exit code of the last run (0 ok, 2 config, 3 data, 4 pipeline, 5 lock).",
    ),
    "recbatch_last_success_timestamp_seconds": (
        "gauge",
        "When the last successful run finished (Unix time).",
    ),
    "recbatch_stage_seconds": ("gauge", "Wall time of each stage of the last run."),
    "recbatch_rows_published": ("gauge", "Rows in the table the last run published."),
    "recbatch_users_published": ("gauge", "Users in the table the last run published."),
    "recbatch_quarantined_rows": ("gauge", "Input rows the last run quarantined."),
    "recbatch_gate_passed": ("gauge", "1 when the last run's quality gate passed (or was forced), else 0."),
    "recbatch_model_metric": ("gauge", "The published model's evaluation metric in the last run."),
}


def _seconds(stamp: str | None) -> float | None:
    return datetime.fromisoformat(stamp).timestamp() if stamp else None


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{str(v).replace(chr(34), "")}"' for k, v in labels.items()) + "}"


def render(table: str, last: dict[str, Any], last_success: dict[str, Any] | None) -> str:
    """The textfile's content for the last run's record (and the newest successful one)."""
    values: list[tuple[str, dict[str, str], float | None]] = [
        ("recbatch_last_run_timestamp_seconds", {}, _seconds(last.get("finished_at"))),
        ("recbatch_last_run_success", {}, 1.0 if last.get("status") == "ok" else 0.0),
        ("recbatch_last_run_exit_code", {}, float(last.get("exit_code", 0))),
        ("recbatch_last_success_timestamp_seconds", {}, _seconds((last_success or {}).get("finished_at"))),
        ("recbatch_rows_published", {}, last.get("rows")),
        ("recbatch_users_published", {}, last.get("users")),
        ("recbatch_quarantined_rows", {}, last.get("quarantined")),
    ]
    for stage, seconds in (last.get("seconds") or {}).items():
        values.append(("recbatch_stage_seconds", {"stage": stage}, seconds))
    gate = last.get("gate")
    if gate is not None:
        values.append(("recbatch_gate_passed", {}, 1.0 if gate.get("passed") or gate.get("forced") else 0.0))
    metric = last.get("metric") or {}
    if "value" in metric:
        values.append(("recbatch_model_metric", {"metric": metric["name"]}, metric["value"]))
    lines, described = [], set()
    for name, labels, value in values:
        if value is None:
            continue
        if name not in described:
            kind, text = _HELP[name]
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            described.add(name)
        lines.append(f"{name}{_labels(table=table, **labels)} {float(value)!r}")
    return "\n".join(lines) + "\n"


def write_textfile(
    target: Location, table: str, last: dict[str, Any], last_success: dict[str, Any] | None
) -> None:
    """Write the textfile atomically (the collector only reads files ending in .prom)."""
    target.write_text(render(table, last, last_success))
