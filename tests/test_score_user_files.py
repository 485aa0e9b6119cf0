"""The files input path: Python workers read their user ranges from Parquet themselves.

Checked against the naive brute force of test_score_engine and against Spark's own input
path on the same data: seen pairs spread over several files (as `recbatch prepare` writes
them), user subsets and skipped users, and broken factor files.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recbatch.artifacts import write_factors
from recbatch.score.user_files import UserFiles, range_blocks, read_factors
from tests.test_score_engine import DIM, N_ITEMS, N_USERS, K, _brute_force, _collect, _factors, _inputs, _seen

pytestmark = pytest.mark.spark


def _write_seen_files(folder, seen: dict[int, set[int]], parts: int = 3) -> str:
    """Seen pairs in `parts` files, users spread by hash and sorted within each file (prepare's layout)."""
    folder.mkdir(parents=True, exist_ok=True)
    pairs = sorted((u, i) for u, items in seen.items() for i in items)
    for p in range(parts):
        mine = [(u, i) for u, i in pairs if u % parts == p]
        table = pa.table(
            {"user_idx": pa.array([u for u, _ in mine], pa.int32()), "item_idx": [i for _, i in mine]}
        )
        pq.write_table(
            table.cast(pa.schema([("user_idx", pa.int32()), ("item_idx", pa.int32())])),
            folder / f"part-{p}.parquet",
        )
    return str(folder)


@pytest.fixture
def user_files(tmp_path):
    users, items = _factors()
    seen = _seen()
    path = tmp_path / "users.parquet"
    write_factors(path, "user_idx", users)
    return users, items, seen, UserFiles(str(path), _write_seen_files(tmp_path / "seen", seen), N_USERS)


@pytest.mark.parametrize("parts", [1, 4, 50])
def test_files_input_equals_brute_force(spark, user_files, parts):
    from recbatch.score.engine import score_users

    users, items, seen, files = user_files
    got = _collect(score_users(spark, files, items, None, K, 6, "sigmoid", parts))
    want = sorted(_brute_force(users, items, seen, K, "sigmoid"))
    assert [r[:2] + r[3:] for r in got] == [r[:2] + r[3:] for r in want]
    assert np.allclose([r[2] for r in got], [r[2] for r in want], rtol=1e-6)


def test_files_and_spark_input_give_identical_rows(spark, user_files):
    from recbatch.score.engine import score_users

    users, items, seen, files = user_files
    user_df, seen_df = _inputs(spark, users, seen)
    from_spark = _collect(score_users(spark, user_df, items, seen_df, K, 4, "identity", 3))
    from_files = _collect(score_users(spark, files, items, None, K, 4, "identity", 3))
    assert from_files == from_spark


def test_only_and_skip_choose_the_users_scored(spark, user_files):
    from recbatch.score.engine import score_users

    users, items, seen, files = user_files
    only = np.array([1, 3, 4, 10, 20, 21, 36], dtype=np.int32)
    subset = UserFiles(files.factors, files.seen, N_USERS, only=only, skip=np.array([4, 21], dtype=np.int32))
    got = _collect(score_users(spark, subset, items, None, K, 2, "identity", 3))
    want = sorted(r for r in _brute_force(users, items, seen, K, "identity") if r[0] in {1, 3, 10, 20, 36})
    assert [r[:2] + r[3:] for r in got] == [r[:2] + r[3:] for r in want]
    nobody = UserFiles(files.factors, files.seen, N_USERS, only=np.array([], dtype=np.int32))
    assert score_users(spark, nobody, items, None, K, 2, "identity", 3).count() == 0


def test_membership_in_only_and_skip_is_exact():
    from recbatch.score.user_files import _keep_mask

    users = np.array([0, 3, 5, 9, 13], dtype=np.int32)
    only = np.array([3, 4, 9, 12], dtype=np.int32)
    assert _keep_mask(users, only, np.array([9])).tolist() == [False, True, False, False, False]
    assert _keep_mask(users, None, np.array([0, 13])).tolist() == [False, True, True, True, False]
    assert _keep_mask(users, np.array([], dtype=np.int32), None).tolist() == [False] * 5
    assert _keep_mask(users, None, None) is None


def test_ranges_cover_every_user_once():
    files = UserFiles("f", None, 10)
    assert [(lo, hi) for _, lo, hi in files.ranges(3)] == [(0, 3), (3, 6), (6, 10)]
    assert [(lo, hi) for _, lo, hi in files.ranges(50)] == [(lo, lo + 1) for lo in range(10)]
    picked = UserFiles("f", None, 1000, only=np.array([5, 6, 7, 900, 901, 950]))
    # Ranges split the listed users evenly, not the index space.
    assert [(lo, hi) for _, lo, hi in picked.ranges(2)] == [(5, 8), (900, 951)]
    assert UserFiles("f", None, 0).ranges(4) == []


def test_range_blocks_read_only_their_row_groups(tmp_path):
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((40_000, 3)).astype(np.float32)
    path = tmp_path / "users.parquet"
    write_factors(path, "user_idx", matrix)  # 16,384-row groups
    assert pq.ParquetFile(path).metadata.num_row_groups == 3
    got = list(read_factors(str(path), 20_000, 20_010, 3))
    assert len(got) == 1 and got[0][0].tolist() == list(range(20_000, 20_010))
    assert np.array_equal(got[0][1], matrix[20_000:20_010])
    seen_dir = _write_seen_files(tmp_path / "seen", {20_001: {0, 2}, 20_005: {1}, 7: {1}})
    blocks = list(range_blocks(UserFiles(str(path), seen_dir, 40_000), 20_000, 20_010, 3, 3))
    seen = dict(zip(blocks[0][0].tolist(), blocks[0][2], strict=True))
    assert sorted(seen[20_001].tolist()) == [0, 2] and seen[20_005].tolist() == [1] and seen[20_000] is None


def test_unsorted_or_broken_factor_files_fail_clearly(spark, tmp_path):
    from recbatch.score.engine import score_users

    _, items = _factors()
    shuffled = tmp_path / "shuffled.parquet"
    factors = pa.array([[0.5] * DIM] * 3, pa.list_(pa.float32()))
    pq.write_table(pa.table({"user_idx": pa.array([2, 0, 1], pa.int32()), "factors": factors}), shuffled)
    with pytest.raises(Exception, match="not in ascending, unique user_idx order"):
        score_users(spark, UserFiles(str(shuffled), None, 3), items, None, K, 2, "identity", 1).collect()
    short = tmp_path / "short.parquet"
    write_factors(short, "user_idx", np.ones((3, DIM - 1), np.float32))
    with pytest.raises(Exception, match="user and item factors come from different models"):
        score_users(spark, UserFiles(str(short), None, 3), items, None, K, 2, "identity", 1).collect()
    seen_dir = _write_seen_files(tmp_path / "seen", {0: {N_ITEMS + 5}})
    good = tmp_path / "good.parquet"
    write_factors(good, "user_idx", np.ones((3, DIM), np.float32))
    with pytest.raises(Exception, match=f"outside the model's {N_ITEMS} items"):
        score_users(spark, UserFiles(str(good), seen_dir, 3), items, None, K, 2, "identity", 1).collect()
    with pytest.raises(ValueError, match="pass seen=None"):
        score_users(spark, UserFiles(str(good), None, 3), items, spark.range(1), K, 2, "identity", 1)
