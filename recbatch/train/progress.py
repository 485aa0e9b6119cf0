"""A rich progress bar per training epoch: batches done, running loss, validation NDCG.

Shown only when stderr is a terminal; under cron, pytest or spark-submit (stderr a file or
pipe) it does nothing and the loop's one log line per epoch is the record.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any


def terminal() -> bool:
    """True when stderr is an interactive terminal."""
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


class EpochProgress:
    """Context manager: `step(loss)` per batch, `note(text)` for validation; a no-op off a terminal."""

    def __init__(self, title: str, total: int, enabled: bool | None = None) -> None:
        self.enabled = terminal() if enabled is None else enabled
        self.title, self.total = title, total
        self.loss_sum, self.steps = 0.0, 0
        self.extra = ""
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> EpochProgress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[metrics]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.title, total=self.total or None, metrics="")
        return self

    def _metrics(self) -> str:
        loss = f"loss {self.loss_sum / self.steps:.4f}" if self.steps else ""
        return " ".join(part for part in (loss, self.extra) if part)

    def step(self, loss: float) -> None:
        """One batch done with this loss."""
        self.loss_sum += loss
        self.steps += 1
        if self._progress is not None:
            self._progress.update(self._task, advance=1, metrics=self._metrics())

    def note(self, text: str) -> None:
        """Show `text` (e.g. the validation NDCG) beside the loss."""
        self.extra = text
        if self._progress is not None:
            self._progress.update(self._task, metrics=self._metrics())

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
