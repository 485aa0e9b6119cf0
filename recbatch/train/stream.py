"""Streaming input: training batches read from the prepared train Parquet, record batch by record batch.

Nothing here holds the table: a first pass (`scan_stats`) keeps per-item and per-user
counts and each user's latest item (O(users + items)); a second builds a Bloom filter of
the fit positives (1.25 bytes each) that keeps sampled negatives off known positives.
Each epoch then reads the files again (file and row-group order permuted by the seeded
generator), mixes rows in a shuffle buffer of `train.shuffle_buffer` positives, draws the
batch's negatives, and hands numpy batches to tf.data (`from_generator`, explicit
signature, prefetch). Same files and seed, same batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from recbatch.artifacts import check_range
from recbatch.config import TrainConfig
from recbatch.core.validation import VALIDATION_USERS, Split, pair_draw, with_sampled_negatives
from recbatch.errors import DataError
from recbatch.storage import parquet_files
from recbatch.train.bloom import PairFilter
from recbatch.train.sampling import NegativeDraws, count_weights

if TYPE_CHECKING:
    from recbatch.train.loop import FitResult, InitWeights

READ_ROWS = 65_536  # rows per Parquet record batch read
# Validation NDCG ranks a seeded sample of at most VALIDATION_USERS held-out users, as in memory
# mode; here their fit rows (for masking seen items) are the only rows kept in memory.


def memory_estimate_mb(cfg: TrainConfig, rows: int) -> float:
    """Rough peak of the in-memory input: the read columns, sort and split copies, positive keys
    (about 64 B per positive) and an epoch's shuffled examples (about 36 B per example)."""
    examples = 1 if cfg.loss == "softmax" else 1 + cfg.negatives
    return rows * (64 + 36 * examples) / 2**20


def choose_input(cfg: TrainConfig, rows: int) -> str:
    """ "memory" or "stream": the configured mode, or for auto the estimate against memory_limit_mb."""
    if cfg.input != "auto":
        return cfg.input
    return "stream" if memory_estimate_mb(cfg, rows) > cfg.memory_limit_mb else "memory"


def scan(
    path: Path, columns: list[str], rng: np.random.Generator | None = None, read_rows: int = READ_ROWS
) -> Iterator[dict[str, np.ndarray]]:
    """The named columns of the Parquet files under `path` as numpy record batches of <= read_rows rows.

    Files come in sorted order, row groups in file order; with `rng`, both orders are permuted.
    A missing `last_ts` reads as zeros (as `read_times`); other missing columns are a DataError.
    """
    import pyarrow.parquet as pq

    files = parquet_files(path)
    if rng is not None:
        files = [files[k] for k in rng.permutation(len(files))]
    for file in files:
        handle = pq.ParquetFile(file.open_input())
        names = handle.schema_arrow.names
        missing = sorted(set(columns) - set(names) - {"last_ts"})
        if missing:
            raise DataError(
                f"{file} lacks column(s) {missing} (has {names}): "
                "re-run `recbatch prepare` to rebuild the prepared data"
            )
        groups = list(range(handle.num_row_groups))
        if rng is not None:
            groups = [groups[k] for k in rng.permutation(len(groups))]
        present = [c for c in columns if c in names]
        for batch in handle.iter_batches(batch_size=read_rows, row_groups=groups, columns=present):
            out = {c: batch.column(c).to_numpy(zero_copy_only=False) for c in present}
            if "last_ts" in columns and "last_ts" not in names:
                out["last_ts"] = np.zeros(batch.num_rows, np.int64)
            yield out


@dataclass
class StreamStats:
    """What one pass over the train split tells: sizes, counts and each user's latest item."""

    rows: int
    item_counts: np.ndarray  # int64 per item
    user_counts: np.ndarray  # int64 per user
    latest_item: np.ndarray  # int32 per user: latest train item (by last_ts, ties higher item), -1 none

    def held_out(self) -> np.ndarray:
        """Validation item per user (users with >= 2 train items), -1 for the others."""
        return np.where(self.user_counts >= 2, self.latest_item, -1).astype(np.int32)


def scan_stats(path: Path, num_users: int, num_items: int, read_rows: int = READ_ROWS) -> StreamStats:
    """One streaming pass: row count, item and user counts, each user's latest item; checks index ranges."""
    item_counts = np.zeros(num_items, np.int64)
    user_counts = np.zeros(num_users, np.int64)
    latest_ts = np.full(num_users, np.iinfo(np.int64).min, np.int64)
    latest_item = np.full(num_users, -1, np.int32)
    # Without time information the carve holds out the item of the highest seeded draw
    # (as core.validation.carve_validation): both candidates are tracked, one is kept at the end.
    top_draw = np.zeros(num_users, np.uint64)
    drawn_item = np.full(num_users, -1, np.int32)
    t_range = [np.iinfo(np.int64).max, np.iinfo(np.int64).min]
    rows = 0
    for batch in scan(path, ["user_idx", "item_idx", "last_ts"], read_rows=read_rows):
        u = batch["user_idx"].astype(np.int32)
        i = batch["item_idx"].astype(np.int32)
        t = batch["last_ts"].astype(np.int64)
        check_range(u, i, num_users, num_items, path)
        rows += len(u)
        item_counts += np.bincount(i, minlength=num_items)
        user_counts += np.bincount(u, minlength=num_users)
        if len(t):
            t_range = [min(t_range[0], int(t.min())), max(t_range[1], int(t.max()))]
        _merge_latest(u, t, i, latest_ts, latest_item)
        _merge_latest(u, pair_draw(u, i), i, top_draw, drawn_item)
    if t_range[0] == t_range[1]:
        latest_item = drawn_item
    return StreamStats(rows, item_counts, user_counts, latest_item)


def _merge_latest(
    u: np.ndarray, key: np.ndarray, i: np.ndarray, best_key: np.ndarray, best_item: np.ndarray
) -> None:
    """Merge each user's row of highest (key, item) in this batch into the bests so far, in place."""
    order = np.lexsort((i, key, u))
    su = u[order]
    last = order[np.append(su[1:] != su[:-1], True)] if len(su) else order
    bu, bk, bi = u[last], key[last], i[last]
    fresh = best_item[bu] < 0
    better = fresh | (bk > best_key[bu]) | ((bk == best_key[bu]) & (bi > best_item[bu]))
    best_key[bu[better]], best_item[bu[better]] = bk[better], bi[better]


class _FilterDraws(NegativeDraws):
    def __init__(
        self, known: PairFilter, cfg: TrainConfig, rng: np.random.Generator, probs: np.ndarray | None
    ):
        super().__init__(known.num_items, cfg.negatives, rng, probs)
        self.known = known

    def _is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.known.contains(users, items)


class StreamInput:
    """The train positives of `path` minus the held-out ones, streamed once per epoch.

    Building it takes one pass: the Bloom filter of kept positives, their item counts,
    and the kept rows of `keep_users` (the validation users, for masking seen items).
    """

    def __init__(
        self,
        path: Path,
        stats: StreamStats,
        held: np.ndarray | None = None,
        keep_users: np.ndarray | None = None,
        read_rows: int = READ_ROWS,
    ) -> None:
        self.path, self.read_rows, self.held = path, read_rows, held
        num_items = len(stats.item_counts)
        self.known = PairFilter(stats.rows, num_items)
        self.item_counts = np.zeros(num_items, np.int64)
        self.rows = 0
        self.peak_rows = 0  # most positives held at once while streaming an epoch (buffer + record batch)
        wanted = np.zeros(len(stats.user_counts), bool)
        if keep_users is not None:
            wanted[keep_users] = True
        kept_u: list[np.ndarray] = []
        kept_i: list[np.ndarray] = []
        for u, i in self._positives(None):
            self.known.add(u, i)
            self.item_counts += np.bincount(i, minlength=num_items)
            self.rows += len(u)
            mask = wanted[u]
            kept_u.append(u[mask])
            kept_i.append(i[mask])
        self.kept_users = np.concatenate(kept_u) if kept_u else np.zeros(0, np.int32)
        self.kept_items = np.concatenate(kept_i) if kept_i else np.zeros(0, np.int32)
        self._draws: _FilterDraws | None = None
        self.prefetch = True  # each batch reads, shuffles and draws negatives

    def _positives(self, rng: np.random.Generator | None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for batch in scan(self.path, ["user_idx", "item_idx"], rng, self.read_rows):
            u = batch["user_idx"].astype(np.int32)
            i = batch["item_idx"].astype(np.int32)
            if self.held is not None:
                keep = self.held[u] != i
                u, i = u[keep], i[keep]
            yield u, i

    def start(self, cfg: TrainConfig, rng: np.random.Generator, grouped: bool = False) -> None:
        """Bind the run's generator and the negative sampler (uniform or popularity^alpha).
        A streamed batch always holds its positives' own negatives, `grouped` or not."""
        probs = None
        if cfg.negative_sampling == "popularity":
            probs = count_weights(self.item_counts, cfg.negative_alpha)
        self.rng = rng
        self._draws = _FilterDraws(self.known, cfg, rng, probs)

    def num_batches(self, cfg: TrainConfig) -> int:
        """Steps per epoch: the positives in groups of `positives_per_batch`."""
        per = positives_per_batch(cfg)
        return -(-self.rows // per)

    def epoch(self, cfg: TrainConfig) -> Iterator[tuple[np.ndarray, ...]]:
        """One epoch of loss-shaped numpy batches (see `expand`)."""
        assert self._draws is not None, "call start() first"
        per = positives_per_batch(cfg)
        for u, i in self._shuffled(max(cfg.shuffle_buffer, per), per):
            yield expand(cfg, u, i, self._draws)

    def _shuffled(self, buffer: int, per: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Batches of `per` positives through a shuffle buffer: when it holds >= `buffer` rows, it is
        permuted and all but about half of it leaves in batches; the rest mixes with what comes next."""
        buf_u, buf_i = np.zeros(0, np.int32), np.zeros(0, np.int32)
        for u, i in self._positives(self.rng):
            buf_u, buf_i = np.concatenate([buf_u, u]), np.concatenate([buf_i, i])
            self.peak_rows = max(self.peak_rows, len(buf_u))
            if len(buf_u) < buffer:
                continue
            order = self.rng.permutation(len(buf_u))
            buf_u, buf_i = buf_u[order], buf_i[order]
            out = (len(buf_u) - buffer // 2) // per * per
            for s in range(0, out, per):
                yield buf_u[s : s + per], buf_i[s : s + per]
            buf_u, buf_i = buf_u[out:], buf_i[out:]
        order = self.rng.permutation(len(buf_u))
        buf_u, buf_i = buf_u[order], buf_i[order]
        for s in range(0, len(buf_u), per):
            yield buf_u[s : s + per], buf_i[s : s + per]


def positives_per_batch(cfg: TrainConfig) -> int:
    """Positives per step, so a step sees about batch_size examples as in memory mode."""
    if cfg.loss == "bce":
        return max(1, cfg.batch_size // (1 + cfg.negatives))
    if cfg.loss == "bpr":
        return max(1, cfg.batch_size // cfg.negatives)
    return cfg.batch_size


def expand(cfg: TrainConfig, u: np.ndarray, i: np.ndarray, draws: NegativeDraws) -> tuple[np.ndarray, ...]:
    """A batch of positives as the loss takes it: bce (users, items, labels) with `negatives` drawn
    per positive; bpr (users, positives, negatives); softmax (users, items), the batch's other
    items being the negatives."""
    if cfg.loss == "softmax":
        return u, i
    neg_u = np.repeat(u, cfg.negatives)
    neg_i = draws.negatives_for(neg_u)
    if cfg.loss == "bpr":
        return neg_u, np.repeat(i, cfg.negatives), neg_i
    labels = np.concatenate([np.ones(len(u), np.float32), np.zeros(len(neg_u), np.float32)])
    return np.concatenate([u, neg_u]), np.concatenate([i, neg_i]), labels


def validation_users(stats: StreamStats, seed: int) -> np.ndarray:
    """Users with a held-out item, a seeded sample of at most VALIDATION_USERS of them, sorted."""
    users = np.flatnonzero(stats.held_out() >= 0).astype(np.int32)
    if len(users) > VALIDATION_USERS:
        users = np.sort(np.random.default_rng(seed).choice(users, VALIDATION_USERS, replace=False))
    return users


def fit_stream(
    cfg: TrainConfig,
    num_users: int,
    num_items: int,
    path: Path,
    stats: StreamStats | None = None,
    read_rows: int = READ_ROWS,
    init_weights: InitWeights | None = None,
) -> FitResult:
    """`fit_input` on the streamed split: early stopping on each user's latest train item (as
    `carve_validation`), then a refit on all of train."""
    from recbatch.train.loop import fit_input

    stats = stats if stats is not None else scan_stats(path, num_users, num_items, read_rows)

    def everything() -> StreamInput:
        return StreamInput(path, stats, read_rows=read_rows)

    if not cfg.validation:
        return fit_input(cfg, num_users, num_items, None, None, everything, init_weights)
    held = stats.held_out()
    users = validation_users(stats, cfg.seed)
    fit_part = StreamInput(path, stats, held=held, keep_users=users, read_rows=read_rows)
    split = Split(fit_part.kept_users, fit_part.kept_items, users, held[users])
    with_sampled_negatives(split, num_users, num_items, cfg.validation_negatives)
    return fit_input(cfg, num_users, num_items, fit_part, split, everything, init_weights)
