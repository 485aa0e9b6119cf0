"""Where every artifact lives, in one place, so stages agree on paths.

<workdir>/runs/dt=<date>/prepared/   interactions/ train/ test/ quarantine/ vocab/users/ vocab/items/ report.json
<workdir>/runs/dt=<date>/model/      model.keras user_factors.parquet item_factors.parquet manifest.json
<workdir>/runs/dt=<date>/eval/       metrics.json report.md *.png
<workdir>/runs/dt=<date>/scored/     the staged recommendation table before publishing
<workdir>/published/<table>/         dt=<date> -> .versions/dt=<date>/<run_id> (atomic symlink swap)
<workdir>/locks/                     one lock file per work directory
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunLayout:
    """Artifact paths of one dated run under one work directory."""

    workdir: Path
    date: str

    @property
    def run_dir(self) -> Path:
        return self.workdir / "runs" / f"dt={self.date}"

    # prepare
    @property
    def prepared(self) -> Path:
        return self.run_dir / "prepared"

    @property
    def interactions(self) -> Path:
        return self.prepared / "interactions"

    @property
    def train(self) -> Path:
        return self.prepared / "train"

    @property
    def test(self) -> Path:
        return self.prepared / "test"

    @property
    def quarantine(self) -> Path:
        return self.prepared / "quarantine"

    @property
    def user_vocab(self) -> Path:
        return self.prepared / "vocab" / "users"

    @property
    def item_vocab(self) -> Path:
        return self.prepared / "vocab" / "items"

    @property
    def prepare_report(self) -> Path:
        return self.prepared / "report.json"

    # train
    @property
    def model_dir(self) -> Path:
        return self.run_dir / "model"

    @property
    def model_file(self) -> Path:
        return self.model_dir / "model.keras"

    @property
    def user_factors(self) -> Path:
        return self.model_dir / "user_factors.parquet"

    @property
    def item_factors(self) -> Path:
        return self.model_dir / "item_factors.parquet"

    @property
    def model_manifest(self) -> Path:
        return self.model_dir / "manifest.json"

    # evaluate
    @property
    def eval_dir(self) -> Path:
        return self.run_dir / "eval"

    @property
    def metrics(self) -> Path:
        return self.eval_dir / "metrics.json"

    # score / publish
    @property
    def scored(self) -> Path:
        return self.run_dir / "scored"

    @property
    def published_root(self) -> Path:
        return self.workdir / "published"

    @property
    def lock_file(self) -> Path:
        return self.workdir / "locks" / "run.lock"
