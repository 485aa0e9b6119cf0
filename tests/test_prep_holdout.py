"""The backtest's hold-out and the no-timestamp split, on inline rows (Spark transforms)."""

from __future__ import annotations

import pytest

from recbatch.config import InputConfig, PrepareConfig
from recbatch.io.lines import REASON
from recbatch.prep.holdout import held_out_pairs, visible_rows
from recbatch.prep.parse import PARSED
from recbatch.prep.removed import removed_users
from recbatch.prep.split import mark_split

pytestmark = pytest.mark.spark

EVENTS = "user_id string, item_id string, event string, weight double, rating double, ts long"


def test_each_user_holds_out_the_latest_pair_ties_by_the_larger_numeric_item_id(spark):
    events = spark.createDataFrame(
        [
            ("u1", "9", "x", 1.0, 4.0, 100),
            ("u1", "10", "x", 1.0, 2.0, 100),  # same second as item 9: 10 > 9 numerically
            ("u1", "10", "x", 1.0, 5.0, 50),  # an earlier row of the same pair is hidden with it
            ("u1", "3", "x", 1.0, 3.0, 10),
            ("u2", "7", "x", 1.0, 3.0, 5),  # one pair only: nothing to hold out
        ],
        EVENTS,
    )
    held = {r["user_id"]: r for r in held_out_pairs(events, 1, None).collect()}
    assert set(held) == {"u1"}
    assert (held["u1"]["item_id"], held["u1"]["rows"], held["u1"]["last_ts"]) == ("10", 2, 100)
    assert held["u1"]["relevant"] is True
    low = held_out_pairs(events, 1, None, min_rating=4.0).collect()
    assert [(r["item_id"], r["relevant"]) for r in low] == [("10", False)], "mean rating 3.5 < 4"


def test_without_time_held_out_pairs_are_seeded_draws_not_the_largest_ids(spark):
    rows = [(f"u{u}", f"i{i:03d}", "x", 1.0, None, 0) for u in range(200) for i in range(u % 7, u % 7 + 6)]
    events = spark.createDataFrame(rows, EVENTS)
    held = held_out_pairs(events, 2, seed=42).collect()
    assert len(held) == 400
    largest = sum(1 for r in held if int(r["item_id"][1:]) >= (int(r["user_id"][1:]) % 7) + 4)
    assert largest < 200, f"{largest} of 400 held-out pairs are a user's two largest ids"
    again = held_out_pairs(events.orderBy("item_id"), 2, seed=42).collect()
    assert sorted(map(tuple, held)) == sorted(map(tuple, again))
    assert sorted(map(tuple, held_out_pairs(events, 2, seed=7).collect())) != sorted(map(tuple, held))


def test_visible_rows_drop_the_valid_rows_of_held_pairs_and_keep_every_rejected_row(spark):
    parsed = "struct<user_id:string,item_id:string>"
    annotated = spark.createDataFrame(
        [
            ("a,1", None, ("a", "1")),
            ("a,1 again", None, ("a", "1")),
            ("a,1,bad", "bad_rating", ("a", "1")),  # rejected: stays and is quarantined again
            ("a,2", None, ("a", "2")),
            ("b,1", None, ("b", "1")),
        ],
        f"raw string, {REASON} string, {PARSED} {parsed}",
    )
    held = spark.createDataFrame([("a", "1")], "user_id string, item_id string")
    kept = sorted(r["raw"] for r in visible_rows(annotated, held).collect())
    assert kept == ["a,1,bad", "a,2", "b,1"]
    assert PARSED not in visible_rows(annotated, held).columns


def test_users_removed_by_the_filters_are_kept_with_their_known_items(spark):
    events = spark.createDataFrame(
        [("a", "i1", "x", 1.0, None, 0), ("z", "i1", "x", 1.0, None, 0), ("z", "gone", "x", 1.0, None, 0)],
        EVENTS,
    )
    users = spark.createDataFrame([("a", 0)], "user_id string, user_idx int")
    items = spark.createDataFrame([("i1", 0)], "item_id string, item_idx int")
    got = {(r["user_id"], r["item_idx"]) for r in removed_users(events, users, items).collect()}
    assert got == {("z", None), ("z", 0)}


def test_leave_last_n_without_timestamps_draws_random_items_per_user(spark):
    from pyspark.sql import functions as F

    rows = [(u, i, 1, 1.0, None, 0) for u in range(300) for i in range(8)]
    pairs = spark.createDataFrame(
        rows, "user_idx int, item_idx int, count long, weight double, rating double, last_ts long"
    )
    prep = PrepareConfig(test_per_user=1)
    timed = mark_split(pairs, prep, "2026-01-02").where(F.col("is_test"))
    assert {r["item_idx"] for r in timed.collect()} == {7}, "with time, ties go to the largest index"
    drawn = mark_split(pairs, prep, "2026-01-02", has_time=False).where(F.col("is_test")).collect()
    assert len(drawn) == 300 and len({r["item_idx"] for r in drawn}) == 8
    assert sum(r["item_idx"] == 7 for r in drawn) < 80, "about one user in eight, not all"
    assert InputConfig(timestamp_col="").timestamp_col is None
