"""The memory-aware scoring plan: block sizes, partitions and item transport from the problem's shape.

Each Python worker holds the item factors once, one reused score buffer of
user_block x item_tile float32 values, and the prefilter's temporaries (about a third of
the buffer at K << items / 64). The plan picks the largest user block (up to 1024, in
steps of 64) whose buffer fits the worker budget with the whole catalogue as one tile:
per-tile merges cost more than a smaller block. Only when even 256 users do not fit the
whole catalogue are items cut into tiles. Pure arithmetic: no Spark, no numpy.

Network models (mlp / neumf, recbatch.core.network_topk) also hold, per worker, the item
side of the network (one float per item and hidden unit, plus a GMF copy) and hidden
activations for CHUNK_PAIRS pairs at a time, whatever the block and tile: those
buffers come out of the worker budget before the block is sized.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from recbatch.artifacts import factor_shape, read_manifest, read_network
from recbatch.core.network_topk import CHUNK_PAIRS
from recbatch.storage import count_rows

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from recbatch.config import Config
    from recbatch.layout import RunLayout

MIB = 1 << 20
WORKER_BASE_MB = (
    112  # measured: an idle pyspark worker with numpy, pyarrow (Parquet) and recbatch.score: 108 MiB
)
TEMP_FACTOR = 1.35  # buffer + prefilter temporaries (group maxima, gathered groups, masks)
MIN_BLOCK, MAX_BLOCK, STEP = 256, 1024, 64
USERS_PER_TASK = 250_000
SEEN_PAIRS_PER_TASK = 2_000_000  # files input: a task holds its range's seen pairs (8 B, ~24 B while sorting)
SEEN_PAIR_PEAK_BYTES = 24
HEADROOM_MB = 16  # blocks are sized this far under the budget: measured peaks vary ~6 MiB run to run
FILE_READER_MB = 16  # files input: Parquet reader code pages and one decoded row group (measured ~12-20 MiB)


@dataclass(frozen=True)
class ScorePlan:
    """How one scoring job is cut up, and what each Python worker is expected to hold."""

    users: int
    items: int
    dim: int
    k: int
    user_block: int
    item_tile: int
    partitions: int
    item_transport: str  # "broadcast" or "file" (a memory-mapped .npy shipped with the job)
    item_bytes: int
    buffer_bytes: int
    worker_peak_bytes: int
    worker_budget_bytes: int
    network_widths: tuple[int, ...] = ()  # hidden layer widths of an mlp/neumf model; () for dot products
    network_item_bytes: int = 0  # the network's item side, cached once per worker
    network_chunk_bytes: int = 0  # hidden activations of one chunk of pairs
    user_input: str = "spark"  # "files": tasks read user ranges from the files; "spark": Spark shuffles users
    seen_pairs: int = 0  # interactions excluded from the ranking (0: none or unknown)

    def as_dict(self) -> dict[str, Any]:
        """The plan as plain JSON-able values."""
        return asdict(self)

    def describe(self) -> str:
        """A few human-readable lines for `recbatch score --dry-run` and logs."""
        tiles = math.ceil(self.items / self.item_tile)
        return "\n".join(
            [
                f"scoring plan: {self.users:,} users x {self.items:,} items, d={self.dim}, K={self.k} "
                f"({self.users * self.items:,} pairs)",
                f"  partitions      {self.partitions} ({self._input_line()})",
                f"  user block      {self.user_block} users per GEMM",
                f"  item tile       {self.item_tile} items ({tiles} tile{'s' if tiles > 1 else ''} per block)",
                f"  item factors    {self.item_bytes / MIB:,.1f} MiB, sent as {self.item_transport}",
                f"  score buffer    {self.buffer_bytes / MIB:,.1f} MiB per worker",
                f"  peak per worker ~{self.worker_peak_bytes / MIB:,.0f} MiB expected "
                f"(item factors + {(self.worker_peak_bytes - self.item_bytes) / MIB:,.0f} MiB; "
                f"budget item factors + {self.worker_budget_bytes / MIB:,.0f} MiB)",
                *self._network_lines(),
            ]
        )

    def _input_line(self) -> str:
        if self.user_input == "files":
            return "each task reads its user range from the factor and interaction files"
        return "Spark shuffles users and their seen items to the workers"

    def _network_lines(self) -> list[str]:
        if not self.network_widths:
            return []
        layers = "-".join(str(w) for w in self.network_widths) or "none"
        return [
            f"  network         hidden layers {layers}: exact logits, every pair scored",
            f"  network items   {self.network_item_bytes / MIB:,.1f} MiB per worker (item side, computed once)",
            f"  network chunk   {CHUNK_PAIRS:,} pairs per pass, "
            f"{self.network_chunk_bytes / MIB:,.1f} MiB of activations",
        ]


def _round_block(n: int) -> int:
    return max(STEP, n // STEP * STEP) if n >= STEP else max(1, n)


def make_plan(
    users: int,
    items: int,
    dim: int,
    k: int,
    parallelism: int,
    worker_memory_mb: int = 256,
    broadcast_limit_mb: int = 256,
    user_block: int | None = None,
    item_tile: int | None = None,
    partitions: int | None = None,
    network_widths: tuple[int, ...] | None = None,
    user_input: str = "spark",
    seen_pairs: int = 0,
) -> ScorePlan:
    """Plan a scoring job; explicit user_block / item_tile / partitions override the plan's choice.

    `worker_memory_mb` is what a Python worker may use beyond the item factors (interpreter
    included); item factors larger than `broadcast_limit_mb` travel as a memory-mapped file.
    `network_widths`: the hidden widths of an mlp/neumf model (None for dot-product models).
    `user_input` "files" (tasks read their user ranges themselves, see recbatch.score.user_files)
    or "spark"; `seen_pairs`: how many interactions are excluded, which bounds a files task's range.
    """
    if user_input not in ("files", "spark"):
        raise ValueError(f"user_input must be 'files' or 'spark', got {user_input!r}")
    if min(items, dim, k, parallelism, worker_memory_mb) < 1 or users < 0:
        raise ValueError(
            f"cannot plan users={users} items={items} dim={dim} k={k} parallelism={parallelism} "
            f"worker_memory_mb={worker_memory_mb}: all must be >= 1"
        )
    net_items, net_chunk = _network_bytes(items, dim, network_widths)
    if partitions is None:
        partitions = _default_partitions(users, parallelism, user_input, seen_pairs)
    # A files task holds its range's seen pairs while it scores: they come out of the budget.
    seen_bytes = 0
    if user_input == "files":
        seen_bytes = math.ceil(seen_pairs / partitions) * SEEN_PAIR_PEAK_BYTES + FILE_READER_MB * MIB
    reserved = WORKER_BASE_MB + 8 + HEADROOM_MB + (net_chunk + seen_bytes) // MIB  # 8 MiB: Arrow I/O
    budget = max(worker_memory_mb - reserved, 16) * MIB
    item_tile, user_block = _block_shape(users, items, budget, item_tile, user_block)
    item_bytes = items * dim * 4
    buffer_bytes = user_block * item_tile * 4
    io_bytes = user_block * (dim * 4 + 64) * 4 + seen_bytes  # Arrow batches in and out, decoded copies
    peak = (
        WORKER_BASE_MB * MIB + item_bytes + int(buffer_bytes * TEMP_FACTOR) + io_bytes + net_items + net_chunk
    )
    return ScorePlan(
        users=users,
        items=items,
        dim=dim,
        k=k,
        user_block=user_block,
        item_tile=item_tile,
        partitions=partitions,
        item_transport="broadcast" if item_bytes <= broadcast_limit_mb * MIB else "file",
        item_bytes=item_bytes,
        buffer_bytes=buffer_bytes,
        worker_peak_bytes=peak,
        worker_budget_bytes=worker_memory_mb * MIB,
        network_widths=tuple(network_widths or ()),
        network_item_bytes=net_items,
        network_chunk_bytes=net_chunk,
        user_input=user_input,
        seen_pairs=seen_pairs,
    )


def _network_bytes(items: int, dim: int, network_widths: tuple[int, ...] | None) -> tuple[int, int]:
    """(item side cached per worker, hidden activations of one chunk) of a network model; 0s for dot."""
    if network_widths is None:
        return 0, 0
    units = sum(network_widths) + 1
    # Item side: a floor per hidden unit, a constant and a GMF copy (at most dim) per item.
    return items * (units + dim) * 4, CHUNK_PAIRS * units * 4


def _default_partitions(users: int, parallelism: int, user_input: str, seen_pairs: int) -> int:
    """Tasks of the job when score.partitions is not set."""
    if user_input == "files":
        # Ranges hold equal user counts, so one task per core is balanced; two (measured on the
        # Spark path, whose hash partitions are uneven) would only add per-task reads.
        seen_tasks = math.ceil(seen_pairs / SEEN_PAIRS_PER_TASK)
        return max(parallelism, math.ceil(users / USERS_PER_TASK), seen_tasks)
    return max(2 * parallelism, math.ceil(users / USERS_PER_TASK))


def _block_shape(
    users: int, items: int, budget: int, item_tile: int | None, user_block: int | None
) -> tuple[int, int]:
    """(item_tile, user_block) whose score buffer and temporaries fit `budget` bytes; given ones kept."""
    per_user_row = 4 * TEMP_FACTOR  # bytes per (user, item) slot of the buffer and temporaries
    if item_tile is None:
        # The whole catalogue as one tile unless not even MIN_BLOCK users fit it.
        fits = int(budget / (per_user_row * items))
        item_tile = (
            items if fits >= min(MIN_BLOCK, users) else max(1024, int(budget / (per_user_row * MIN_BLOCK)))
        )
        item_tile = min(item_tile, items)
    if user_block is None:
        user_block = int(budget / (per_user_row * item_tile))
        user_block = _round_block(min(max(user_block, 1), MAX_BLOCK, max(users, 1)))
    return item_tile, user_block


def plan_for(
    spark: SparkSession | None,
    config: Config,
    users: int,
    items: int,
    dim: int,
    network_widths: tuple[int, ...] | None = None,
    seen_pairs: int = 0,
) -> ScorePlan:
    """The scoring plan for this config and shape; parallelism from Spark (or the CPU count)."""
    master = spark.sparkContext.master if spark is not None else config.spark.master
    if spark is not None:
        parallelism = spark.sparkContext.defaultParallelism
    else:
        inside = master[master.find("[") + 1 : master.find("]")] if "[" in master else "1"
        star = inside.strip() in ("*", "")
        parallelism = (os.cpu_count() or 1) if star else int(inside.split(",")[0])
    s = config.score
    return make_plan(
        users,
        items,
        dim,
        s.k,
        parallelism,
        worker_memory_mb=s.worker_memory_mb,
        broadcast_limit_mb=s.broadcast_limit_mb,
        user_block=s.user_block,
        item_tile=s.item_tile,
        partitions=s.partitions,
        network_widths=network_widths,
        user_input=resolve_user_input(s.user_input, master),
        seen_pairs=seen_pairs if s.exclude_seen else 0,
    )


def resolve_user_input(setting: str, master: str) -> str:
    """score.user_input "auto" -> "files" in local mode (workers share the driver's disk), else "spark"."""
    if setting != "auto":
        return setting
    return "files" if master.startswith("local") else "spark"


def plan_from_artifacts(config: Config, layout: RunLayout) -> ScorePlan:
    """The plan `recbatch score` would use, from the model's factor files alone (no Spark)."""
    users, _ = factor_shape(layout.user_factors)
    items, dim = factor_shape(layout.item_factors)
    seen = (
        count_rows(layout.interactions) if config.score.exclude_seen and layout.interactions.exists() else 0
    )
    return plan_for(None, config, users, items, dim, _network_widths(layout), seen)


def _network_widths(layout: RunLayout) -> tuple[int, ...] | None:
    """Hidden widths of the trained mlp/neumf network (manifest scoring "network"), else None."""
    if not layout.model_manifest.is_file():
        return None
    weights = read_network(layout.model_dir, read_manifest(layout.model_manifest))
    return None if weights is None else weights.widths
