"""Loud findings of the prepare stage: a large quarantined share, and what the input lacks.

A quarantined share above `prepare.quarantine_warn` is a warning printed in the summary
(and kept in report.json) naming each reason, its count and the key that decides it; above
`prepare.quarantine_fail` prepare fails with DataError (exit 3) once the report is written,
so the rows can be inspected in prepared/quarantine before anything is trained on what is
left. Pure functions of the report and the config: no Spark.
"""

from __future__ import annotations

from typing import Any

from recbatch.config import Config, PrepareConfig
from recbatch.errors import DataError

# The key (or input property) that decides each reason, for the message a user acts on.
REASON_KEYS = {
    "rating_out_of_range": "prepare.rating_min / prepare.rating_max",
    "bad_rating": 'input.rating_col ("" if the input has no ratings)',
    "missing_rating": "input.rating_col or prepare.feedback = 'implicit'",
    "unknown_event": "prepare.event_weights (every event type needs a weight) or input.event_col",
    "missing_timestamp": 'input.timestamp_col ("" if the input has no event times)',
    "bad_timestamp": "input.timestamp_unit (s, ms or iso) or input.timestamp_col",
    "future_timestamp": "--date or prepare.reject_future",
    "timestamp_too_old": "prepare.timestamp_floor",
    "missing_user": "input.user_col",
    "missing_item": "input.item_col",
    "missing_weight": "input.weight_col",
    "bad_weight": "input.weight_col",
    "nonpositive_weight": "input.weight_col",
    "too_few_fields": "input.delimiter / input.names",
    "too_many_fields": "input.delimiter / input.names",
    "line_too_long": "prepare.max_line_bytes",
}


def quarantine_share(report: dict[str, Any]) -> float:
    """Quarantined rows over rows read (0 when nothing was read)."""
    read = int(report.get("rows_read") or 0)
    return int(report.get("rows_quarantined") or 0) / read if read else 0.0


def _reasons(report: dict[str, Any]) -> str:
    by_reason = sorted((report.get("quarantine_by_reason") or {}).items(), key=lambda kv: (-kv[1], kv[0]))
    return "; ".join(
        f"{reason}: {count:,} (see {REASON_KEYS.get(reason, 'the rows in prepared/quarantine')})"
        for reason, count in by_reason
    )


def quarantine_warnings(report: dict[str, Any], prep: PrepareConfig) -> list[str]:
    """One warning when the quarantined share is above prepare.quarantine_warn, else none."""
    share = quarantine_share(report)
    if share <= prep.quarantine_warn:
        return []
    return [
        f"{share:.2%} of rows quarantined ({report['rows_quarantined']:,} of {report['rows_read']:,}; "
        f"prepare.quarantine_warn = {prep.quarantine_warn:g}): {_reasons(report)}"
    ]


def check_quarantine(report: dict[str, Any], prep: PrepareConfig, where: str) -> None:
    """DataError when the quarantined share is above prepare.quarantine_fail."""
    share = quarantine_share(report)
    if share > prep.quarantine_fail:
        raise DataError(
            f"{share:.2%} of the rows read were quarantined ({report['rows_quarantined']:,} of "
            f"{report['rows_read']:,}, above prepare.quarantine_fail = {prep.quarantine_fail:g}): "
            f"{_reasons(report)}; fix the input or those keys (rows in {where}), or raise "
            "prepare.quarantine_fail (1.0 never fails)"
        )


def time_warnings(config: Config) -> list[str]:
    """What changes when the input has no timestamp column (leave_last_n draws at random instead)."""
    if config.input.timestamp_col is not None:
        return []
    notes = []
    prep = config.prepare
    if prep.split == "leave_last_n" and prep.test_per_user > 0:
        notes.append(
            f'the input has no timestamp column (input.timestamp_col = ""): the test split holds out '
            f"{prep.test_per_user} seeded random item(s) per user (prepare.split_seed = {prep.split_seed}), "
            "not the latest; set input.timestamp_col if the input has event times"
        )
    if config.train.recency_half_life is not None:
        notes.append("train.recency_half_life is ignored: the input has no timestamps to order by")
    if "popularity_recent" in config.evaluate.baselines:
        notes.append(
            "popularity_recent is skipped: the input has no timestamps (remove it from evaluate.baselines)"
        )
    return notes
