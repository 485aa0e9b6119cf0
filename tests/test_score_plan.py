"""The memory-aware scoring plan: pure arithmetic, no Spark."""

from __future__ import annotations

import pytest

from recbatch.config import Config
from recbatch.score.plan import MIB, WORKER_BASE_MB, make_plan


def test_default_plan_keeps_the_catalogue_whole_within_the_worker_budget():
    plan = make_plan(100_000, 20_000, 32, 10, parallelism=2)
    assert plan.item_tile == 20_000
    assert 256 <= plan.user_block <= 1024 and plan.user_block % 64 == 0
    assert plan.partitions >= 2 * 2
    assert plan.item_transport == "broadcast"
    assert plan.worker_peak_bytes <= plan.item_bytes + 256 * MIB
    assert plan.buffer_bytes == plan.user_block * plan.item_tile * 4


def test_huge_catalogues_are_tiled_and_shipped_as_a_file():
    plan = make_plan(10_000_000, 5_000_000, 64, 100, parallelism=16, broadcast_limit_mb=256)
    assert plan.item_tile < 5_000_000 and plan.user_block == 256
    assert plan.item_transport == "file"
    assert plan.worker_peak_bytes <= plan.item_bytes + 256 * MIB
    assert plan.partitions >= 10_000_000 // 250_000


def test_smaller_budget_gives_smaller_blocks_and_overrides_win():
    big = make_plan(100_000, 20_000, 32, 10, 2, worker_memory_mb=512)
    small = make_plan(100_000, 20_000, 32, 10, 2, worker_memory_mb=WORKER_BASE_MB + 40)
    assert small.user_block < big.user_block
    fixed = make_plan(100_000, 20_000, 32, 10, 2, user_block=100, item_tile=999, partitions=7)
    assert (fixed.user_block, fixed.item_tile, fixed.partitions) == (100, 999, 7)
    assert make_plan(5, 20_000, 32, 10, 2).user_block == 5  # never more than the users


def test_describe_names_the_figures_and_bad_shapes_are_refused():
    text = make_plan(100_000, 20_000, 32, 10, 2).describe()
    assert "2,000,000,000 pairs" in text and "peak per worker" in text and "broadcast" in text
    with pytest.raises(ValueError, match="must be >= 1"):
        make_plan(10, 0, 32, 10, 2)


def test_config_keys_reach_the_plan():
    from recbatch.score.plan import plan_for

    cfg = Config()
    cfg.spark.master = "local[3]"
    cfg.score.worker_memory_mb = 1024
    cfg.score.broadcast_limit_mb = 0
    plan = plan_for(None, cfg, 50_000, 1_000, 16)
    # Local mode reads users from the files: equal ranges, one task per core.
    assert plan.user_input == "files" and plan.partitions == 3
    assert plan.item_transport == "file" and plan.user_block == 1024
    cfg.score.user_input = "spark"  # hash partitions are uneven: two per core
    assert plan_for(None, cfg, 50_000, 1_000, 16).partitions == 6
    cfg.spark.master = "yarn"
    cfg.score.user_input = "auto"
    assert plan_for(None, cfg, 50_000, 1_000, 16).user_input == "spark"


def test_files_input_bounds_the_seen_pairs_a_task_holds():
    from recbatch.score.plan import SEEN_PAIR_PEAK_BYTES, SEEN_PAIRS_PER_TASK

    few = make_plan(100_000, 20_000, 32, 10, 2, user_input="files", seen_pairs=2_000_000)
    many = make_plan(100_000, 20_000, 32, 10, 2, user_input="files", seen_pairs=40_000_000)
    assert few.partitions == 2
    assert many.partitions == 40_000_000 // SEEN_PAIRS_PER_TASK
    # A task holds its range's seen pairs (1M pairs at 2 tasks, 2M, the cap, at 40), and they
    # come out of the budget: the block shrinks, and the expected peak stays within it.
    assert many.user_block < few.user_block
    for plan in (few, many):
        assert plan.worker_peak_bytes <= plan.item_bytes + plan.worker_budget_bytes
    spark_path = make_plan(100_000, 20_000, 32, 10, 2, user_input="spark", seen_pairs=40_000_000)
    assert spark_path.user_block > many.user_block  # the Spark path holds no range of seen pairs
    assert many.worker_peak_bytes >= many.buffer_bytes + SEEN_PAIRS_PER_TASK * SEEN_PAIR_PEAK_BYTES
    assert "reads its user range" in many.describe()
    with pytest.raises(ValueError, match="user_input"):
        make_plan(10, 10, 4, 1, 1, user_input="cluster")
