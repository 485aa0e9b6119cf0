"""Users read by the Python workers themselves: the scoring engine's fast input path.

Spark's own path (recbatch.score.engine) shuffles user factors and seen pairs into user
partitions, groups the seen pairs into lists and converts both to Arrow: on the benchmark
that JVM work is about a third of the job. Here the Spark job only carries a small table of
user_idx ranges; each task reads its range from the user-factor Parquet file and the seen
pairs from the interaction files (row groups whose user_idx statistics miss the range are
skipped), and groups them with numpy. Every task reads the
same files, so the workers must see the driver's paths: local mode, or a path on storage
every executor mounts (`score.user_input`).

The worker side imports only numpy and pyarrow (it runs inside Spark's Python workers).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recbatch.score.blocks import Block, as_numpy, check_seen_items, factor_matrix
from recbatch.storage import location, parquet_files

RANGE_SCHEMA = "task int, lo long, hi long"


@dataclass(frozen=True)
class UserFiles:
    """Where the workers read users from, and which users to score.

    `factors`: the user-factor Parquet file (user_idx int, factors list<float>) in ascending
    user_idx order, the contract `recbatch.artifacts.write_factors` writes (and `read_factors`
    here checks, batch by batch). `seen`: a Parquet file or dataset folder
    with user_idx, item_idx columns (None: nothing is excluded). Users 0..n_users-1 are
    scored, restricted to `only` and minus `skip` (ascending user_idx arrays) when given.
    """

    factors: str
    seen: str | None
    n_users: int
    only: np.ndarray | None = None
    skip: np.ndarray | None = None

    def ranges(self, parts: int) -> list[tuple[int, int, int]]:
        """(task, lo, hi) user_idx ranges, one per task, holding about the same number of users."""
        if self.only is not None:
            chunks = [c for c in np.array_split(self.only, max(1, min(parts, len(self.only)))) if len(c)]
            bounds = [(int(c[0]), int(c[-1]) + 1) for c in chunks]
        else:
            edges = np.linspace(0, self.n_users, max(1, min(parts, self.n_users)) + 1).astype(np.int64)
            bounds = [(int(a), int(b)) for a, b in pairwise(edges.tolist()) if b > a]
        return [(task, lo, hi) for task, (lo, hi) in enumerate(bounds)]


def _in_range(users: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return (users >= lo) & (users < hi)


def _row_groups(meta, column: int, lo: int, hi: int) -> list[int]:
    """Row groups whose user_idx statistics overlap [lo, hi) (all where statistics are missing)."""
    keep = []
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(column).statistics
        if stats is None or not stats.has_min_max or (stats.max >= lo and stats.min < hi):
            keep.append(g)
    return keep


def _range_batches(path: str, columns: list[str], lo: int, hi: int) -> Iterator[pa.RecordBatch]:
    """A Parquet file's row groups that may hold user_idx in [lo, hi), one at a time, in file order.

    Whole row groups on one thread: the task already has its core, and measured in one
    process, `iter_batches` with reader threads held ~15 MiB more memory for the same rows.
    """
    import pyarrow.parquet as pq

    source = pq.ParquetFile(location(path).open_input())
    missing = [c for c in columns if source.schema_arrow.get_field_index(c) < 0]
    if missing:
        raise ValueError(f"{path} lacks column(s) {missing} (it has {source.schema_arrow.names})")
    column = source.schema_arrow.get_field_index("user_idx")
    for group in _row_groups(source.metadata, column, lo, hi):
        table = source.read_row_group(group, columns=columns, use_threads=False)
        yield from table.combine_chunks().to_batches()


def read_factors(path: str, lo: int, hi: int, dim: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(user indices, factor matrix) of users lo <= user_idx < hi, in ascending user_idx order."""
    last = -1
    for batch in _range_batches(path, ["user_idx", "factors"], lo, hi):
        users = as_numpy(batch.column(0), f"user_idx of {path}").astype(np.int32, copy=False)
        if not len(users):
            continue
        if users[0] <= last or (len(users) > 1 and not (np.diff(users) > 0).all()):
            raise ValueError(
                f"user factors {path} are not in ascending, unique user_idx order near user_idx {users[0]}; "
                "rerun `recbatch train` (or set score.user_input = 'spark')"
            )
        last = int(users[-1])
        # Ascending ids: the range is one slice (a mask would go through pa.array, which imports pandas).
        start, stop = np.searchsorted(users, [lo, hi])
        if stop > start:
            yield (
                users[start:stop],
                factor_matrix(users[start:stop], batch.column(1).slice(start, stop - start), dim),
            )


def read_seen(path: str, lo: int, hi: int, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Seen pairs of users lo <= user_idx < hi as (user_idx, item_idx) int32 arrays sorted by user.

    No order of the interaction files is assumed: rows are filtered by range and sorted here.
    """
    users, items = [], []
    for file in parquet_files(path):
        for batch in _range_batches(file, ["user_idx", "item_idx"], lo, hi):
            u = as_numpy(batch.column(0), f"user_idx of {file}")
            keep = _in_range(u, lo, hi)
            users.append(u[keep].astype(np.int32, copy=False))
            items.append(as_numpy(batch.column(1), f"item_idx of {file}")[keep].astype(np.int32, copy=False))
    if not users:
        return np.empty(0, np.int32), np.empty(0, np.int32)
    all_users, all_items = np.concatenate(users), np.concatenate(items)
    del users, items
    check_seen_items(all_items, n_items)
    # Stable sort: cheap on the runs of user-sorted rows each prepared file holds.
    order = np.argsort(all_users, kind="stable")
    return all_users[order], all_items[order]


def _member(users: np.ndarray, listed: np.ndarray) -> np.ndarray:
    """users in the ascending array `listed`, by binary search (np.isin would sort `listed` per call)."""
    if not len(listed):
        return np.zeros(len(users), dtype=bool)
    at = np.minimum(np.searchsorted(listed, users), len(listed) - 1)
    return listed[at] == users


def _keep_mask(users: np.ndarray, only: np.ndarray | None, skip: np.ndarray | None) -> np.ndarray | None:
    keep = None
    if only is not None:
        keep = _member(users, only)
    if skip is not None:
        drop = _member(users, skip)
        keep = ~drop if keep is None else keep & ~drop
    return keep


def range_blocks(files: UserFiles, lo: int, hi: int, dim: int, n_items: int) -> Iterator[Block]:
    """Decoded blocks (user indices, factors, seen index arrays) of the users in [lo, hi)."""
    seen_users, seen_items = (
        read_seen(files.seen, lo, hi, n_items) if files.seen is not None else (np.empty(0, np.int32),) * 2
    )
    for users, vecs in read_factors(files.factors, lo, hi, dim):
        keep = _keep_mask(users, files.only, files.skip)
        if keep is not None:
            users, vecs = users[keep], vecs[keep]
            if not len(users):
                continue
        starts = np.searchsorted(seen_users, users, side="left")
        ends = np.searchsorted(seen_users, users, side="right")
        seen = [
            seen_items[a:b] if b > a else None for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
        ]
        yield users, vecs, seen


def task_blocks(tasks: Iterator[pa.RecordBatch], files: UserFiles, dim: int, n_items: int) -> Iterator[Block]:
    """Blocks of every range in a partition's task rows (task, lo, hi), in task order."""
    for batch in tasks:
        los = pc.cast(batch.column("lo"), pa.int64()).to_pylist()
        his = pc.cast(batch.column("hi"), pa.int64()).to_pylist()
        for lo, hi in zip(los, his, strict=True):
            yield from range_blocks(files, lo, hi, dim, n_items)
