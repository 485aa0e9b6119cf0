"""The metrics table printed by `recbatch evaluate` and at the end of `recbatch run`."""

from __future__ import annotations

from typing import Any

from recbatch.core.metrics import METRIC_NAMES


def format_metrics_table(metrics: dict[str, Any]) -> str:
    """An aligned text table: one row per model or baseline, one column per metric at primary_k."""
    k = metrics["primary_k"]
    columns = [f"{name}@{k}" for name in METRIC_NAMES]
    rows = [
        [name] + [f"{scores[c]:.4f}" if c in scores else "-" for c in columns]
        for name, scores in metrics["models"].items()
    ]
    header = ["model", *columns]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)])

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])
