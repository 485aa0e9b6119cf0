"""Builders of tiny prepared runs (pyarrow only), shared by the train, evaluate and ALS tests."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from recbatch.config import Config
from recbatch.layout import RunLayout

# The prepared data's column contracts, as the tests expect to read them back.
INTERACTION_SCHEMA = [
    ("user_idx", "int"),
    ("item_idx", "int"),
    ("count", "bigint"),
    ("weight", "double"),
    ("rating", "double"),
    ("last_ts", "bigint"),
]
QUARANTINE_COLUMNS = [
    "user_id",
    "item_id",
    "event",
    "rating",
    "timestamp",
    "reason",
    "source_file",
    "raw",
    "stage",
]


def write_split(path: Path, users: np.ndarray, items: np.ndarray) -> None:
    """A prepared split directory with the contract's columns, split over two part files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.mkdir(parents=True, exist_ok=True)
    n = len(users)
    table = pa.table(
        {
            "user_idx": pa.array(users, pa.int32()),
            "item_idx": pa.array(items, pa.int32()),
            "count": pa.array(np.ones(n, np.int64)),
            "weight": pa.array(np.ones(n)),
            "rating": pa.array([None] * n, pa.float64()),
            "last_ts": pa.array(np.arange(n, dtype=np.int64)),
        }
    )
    half = n // 2
    pq.write_table(table.slice(0, half), path / "part-00000.parquet")
    pq.write_table(table.slice(half), path / "part-00001.parquet")
    (path / "_SUCCESS").write_text("")


def write_vocab(path: Path, column: str, n: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.mkdir(parents=True, exist_ok=True)
    ids = pa.array([f"{column[0]}{i}" for i in range(n)])
    pq.write_table(
        pa.table({f"{column}_id": ids, f"{column}_idx": pa.array(np.arange(n), pa.int32())}),
        path / "part-00000.parquet",
    )


def clustered_data(n_users: int = 60, n_items: int = 40, per_user: int = 9, seed: int = 0):
    """Two taste clusters: even users like items of the first half, odd users the second half.

    Within a half, item popularity is skewed (p ∝ 1/sqrt(rank)); each user takes `per_user`
    distinct items of their half, one of them (at random) held out as test.
    Returns (train_users, train_items, test_users, test_items, n_users, n_items).
    """
    rng = np.random.default_rng(seed)
    half = n_items // 2
    weights = 1.0 / np.sqrt(np.arange(1, half + 1))
    weights /= weights.sum()
    tr_u, tr_i, te_u, te_i = [], [], [], []
    for u in range(n_users):
        base = (u % 2) * half
        chosen = base + rng.choice(half, size=per_user, replace=False, p=weights)
        tr_u += [u] * (per_user - 1)
        tr_i += list(chosen[1:])
        te_u.append(u)
        te_i.append(chosen[0])
    as32 = lambda v: np.array(v, dtype=np.int32)  # noqa: E731
    return as32(tr_u), as32(tr_i), as32(te_u), as32(te_i), n_users, n_items


def write_scored_run(
    root: Path, users: np.ndarray, items: np.ndarray, train, test, date: str = "2026-01-02"
) -> RunLayout:
    """A run ready to score: mf factor files (`users`, `items`), vocabularies, and train / all
    interactions from (user_idx, item_idx) pairs; returns its layout."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    layout = RunLayout(root, date)
    layout.model_dir.mkdir(parents=True)
    for path, key, matrix in (
        (layout.user_factors, "user_idx", users),
        (layout.item_factors, "item_idx", items),
    ):
        pq.write_table(
            pa.table(
                {
                    key: pa.array(range(len(matrix)), pa.int32()),
                    "factors": pa.array(matrix.tolist(), pa.list_(pa.float32())),
                }
            ),
            path,
        )
    layout.model_manifest.write_text(json.dumps({"model": "mf", "score_activation": "identity"}))
    write_vocab(layout.user_vocab, "user", len(users))
    write_vocab(layout.item_vocab, "item", len(items))
    pairs = train + test
    write_split(layout.train, np.array([u for u, _ in train]), np.array([i for _, i in train]))
    write_split(layout.interactions, np.array([u for u, _ in pairs]), np.array([i for _, i in pairs]))
    return layout


def write_prepared(root: Path, data=None) -> RunLayout:
    """Write a prepared run (train, test, vocabularies) under `root`; returns its layout."""
    tr_u, tr_i, te_u, te_i, n_users, n_items = data if data is not None else clustered_data()
    layout = RunLayout(workdir=root, date="2026-01-01")
    write_split(layout.train, tr_u, tr_i)
    write_split(layout.test, te_u, te_i)
    write_vocab(layout.user_vocab, "user", n_users)
    write_vocab(layout.item_vocab, "item", n_items)
    return layout


def tiny_config(root: Path, model: str, **train) -> Config:
    """Settings under which mf learns the two clusters in a few seconds (measured, not guessed)."""
    settings = dict(
        model=model,
        embedding_dim=4,
        l2=0.005,
        epochs=12,
        batch_size=64,
        learning_rate=0.05,
        negatives=4,
        seed=3,
    )
    settings.update(train)
    return Config.model_validate(
        {"paths": {"workdir": str(root)}, "train": settings, "evaluate": {"ks": [5, 10]}}
    )


@contextmanager
def lock_held_elsewhere(lock: Path, holder: str) -> Iterator[None]:
    """Another process holds the workdir lock in folder `lock` (as `holder`) until the block ends."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from recbatch.ops.lock import workdir_lock\n"
            f"with workdir_lock({str(lock)!r}, {holder!r}):\n"
            "    print('held', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "held"
        yield
    finally:
        process.kill()
        process.wait()


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m recbatch ARGS` in a new process (a new JVM where the command starts Spark)."""
    import os

    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    return subprocess.run(
        [sys.executable, "-m", "recbatch", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
