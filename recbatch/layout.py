"""Where every artifact lives, in one place, so stages agree on paths.

<workdir>/runs/dt=<date>/prepared/   interactions/ train/ test/ quarantine/ vocab/users/ vocab/items/ report.json
<workdir>/runs/dt=<date>/model/      model.keras user_factors.parquet item_factors.parquet manifest.json
<workdir>/runs/dt=<date>/model_split/ the same files: the evaluated model, fitted on train only (final_fit "all")
<workdir>/runs/dt=<date>/eval/       metrics.json report.md *.png
<workdir>/runs/dt=<date>/scored/     the staged recommendation table before publishing
<workdir>/runs/dt=<date>/backtest/   `recbatch backtest`: held-out rows, visible input, its own workdir, metrics
<workdir>/published/<table>/         .versions/dt=<date>/<version>/ + _commits/dt=<date>/<seq>.json (io/publish)
<workdir>/locks/run/                 the work directory's lock: one claim file per contender (ops/lock)

Every path is a recbatch.storage.Location, so the work directory may be a local folder or a
storage URI (file://, hdfs://, s3a://, gs://, abfs://).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from recbatch.storage import Location, location


@dataclass(frozen=True)
class RunLayout:
    """Artifact paths of one dated run under one work directory."""

    workdir: Location
    date: str

    def __init__(self, workdir: Location | Path | str, date: str) -> None:
        # Frozen, so set through object.__setattr__; any path or URI becomes a Location once.
        object.__setattr__(self, "workdir", location(workdir))
        object.__setattr__(self, "date", date)

    @property
    def run_dir(self) -> Location:
        return self.workdir / "runs" / f"dt={self.date}"

    # prepare
    @property
    def prepared(self) -> Location:
        return self.run_dir / "prepared"

    @property
    def interactions(self) -> Location:
        return self.prepared / "interactions"

    @property
    def train(self) -> Location:
        return self.prepared / "train"

    @property
    def test(self) -> Location:
        return self.prepared / "test"

    @property
    def quarantine(self) -> Location:
        return self.prepared / "quarantine"

    @property
    def user_vocab(self) -> Location:
        return self.prepared / "vocab" / "users"

    @property
    def item_vocab(self) -> Location:
        return self.prepared / "vocab" / "items"

    @property
    def prepare_report(self) -> Location:
        return self.prepared / "report.json"

    @property
    def filtered_users(self) -> Location:
        """(user_id, item_idx) of users the filters removed: they get the popularity fallback."""
        return self.prepared / "filtered_users"

    # train
    @property
    def model_dir(self) -> Location:
        return self.run_dir / "model"

    @property
    def model_file(self) -> Location:
        return self.model_dir / "model.keras"

    @property
    def user_factors(self) -> Location:
        return self.model_dir / "user_factors.parquet"

    @property
    def item_factors(self) -> Location:
        return self.model_dir / "item_factors.parquet"

    @property
    def model_manifest(self) -> Location:
        return self.model_dir / "manifest.json"

    @property
    def split_model(self) -> RunLayout:
        """This run with its model paths under model_split/: the model fitted on the train split only,
        which evaluation measures when train.final_fit = "all" refits the published model/ on every
        interaction. Every other path is this layout's."""
        return _SplitModelLayout(self.workdir, self.date)

    # evaluate
    @property
    def eval_dir(self) -> Location:
        return self.run_dir / "eval"

    @property
    def metrics(self) -> Location:
        return self.eval_dir / "metrics.json"

    # score / publish
    @property
    def scored(self) -> Location:
        return self.run_dir / "scored"

    @property
    def published_root(self) -> Location:
        return self.workdir / "published"

    @property
    def lock_dir(self) -> Location:
        return self.workdir / "locks" / "run"

    @property
    def backtest_dir(self) -> Location:
        """`recbatch backtest`: held-out rows, the visible input, its own workdir, metrics and report."""
        return self.run_dir / "backtest"

    @property
    def tmp_dir(self) -> Location:
        """Scratch space of this run (ALS checkpoints and the like), removed by the stage that made it."""
        return self.run_dir / "tmp"


class _SplitModelLayout(RunLayout):
    """A RunLayout whose model artifacts are those of the split model (see RunLayout.split_model)."""

    @property
    def model_dir(self) -> Location:
        return self.run_dir / "model_split"

    @property
    def split_model(self) -> RunLayout:
        return self
