"""Prepare's pure transforms on tiny inline data: validation, dedupe, aggregation, filters, vocab, split."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest

from recbatch.config import InputConfig, PrepareConfig
from recbatch.io.readers import SOURCE_FILE
from recbatch.prep import aggregate, split
from recbatch.prep.parse import REASON, parse_valid, with_reason
from recbatch.prep.vocab import build_vocab, index_pairs
from tests.builders import INTERACTION_SCHEMA

pytestmark = pytest.mark.spark

RAW = "user_id string, item_id string, event string, rating string, timestamp string, source_file string"


def _valid(annotated):
    """Rows that passed validation, with the input's own columns only."""
    from pyspark.sql import functions as F

    return annotated.where(F.col(REASON).isNull()).drop(REASON, SOURCE_FILE)


def _raw(spark, rows):
    return spark.createDataFrame([(*r, "file:/a.csv") for r in rows], RAW)


def test_each_rule_gives_its_reason_and_the_first_failing_rule_wins(spark):
    rows = [
        ("u1", "i1", "view", "4", "100"),  # valid
        (None, "i1", "view", "4", "100"),
        ("  ", "i1", "view", "4", "100"),
        ("u1", "", "view", "4", "100"),
        ("u1", "i1", "view", "abc", "100"),
        ("u1", "i1", "view", "NaN", "100"),
        ("u1", "i1", "view", "7", "100"),
        ("u1", "i1", "view", "-0.5", "100"),  # below the default rating_min 0.0 (0.5 stars are valid)
        ("u1", "i1", "view", "4", "notatime"),
        ("u1", "i1", "view", "4", None),
        ("u1", "i1", "like", "4", "100"),
        ("u1", "i1", None, "4", "100"),
        (None, None, "like", "abc", "x"),  # everything wrong: the first rule names it
        ("u1", "i1", "click", None, "100"),  # implicit: a missing rating is fine
        (" u2 ", "i2", " purchase ", " 5 ", " 200 "),  # padding is trimmed, not an error
    ]
    got = [
        r[REASON]
        for r in with_reason(_raw(spark, rows), InputConfig(), PrepareConfig(timestamp_floor=None)).collect()
    ]
    assert got == [
        None,
        "missing_user",
        "missing_user",
        "missing_item",
        "bad_rating",
        "bad_rating",
        "rating_out_of_range",
        "rating_out_of_range",
        "bad_timestamp",
        "missing_timestamp",
        "unknown_event",
        "unknown_event",
        "missing_user",
        None,
        None,
    ]


def test_explicit_feedback_quarantines_a_missing_rating(spark):
    df = with_reason(
        _raw(spark, [("u1", "i1", "view", "", "1")]),
        InputConfig(),
        PrepareConfig(feedback="explicit", timestamp_floor=None),
    )
    assert [r[REASON] for r in df.collect()] == ["missing_rating"]


def test_timestamp_units(spark):
    cases = [
        ("s", "1700000000", 1700000000),
        ("s", "1700000000.9", 1700000000),
        ("ms", "1700000000123", 1700000000),
        ("iso", "2024-01-01T00:00:00Z", 1704067200),
        ("iso", "2024-01-01 00:00:01", 1704067201),
        ("iso", "yesterday", None),
        ("s", "1e300", None),
        ("ms", "12:00", None),
    ]
    for unit in ("s", "ms", "iso"):
        inp = InputConfig(timestamp_unit=unit)
        values = [(v, want) for u, v, want in cases if u == unit]
        annotated = with_reason(
            _raw(spark, [("u", "i", "view", "3", v) for v, _ in values]),
            inp,
            PrepareConfig(timestamp_floor=None),
        )
        got = [
            r["ts"]
            for r in parse_valid(_valid(annotated), inp, PrepareConfig(timestamp_floor=None)).collect()
        ]
        reasons = [r[REASON] for r in annotated.collect()]
        assert reasons == [None if want is not None else "bad_timestamp" for _, want in values], unit
        assert got == [want for _, want in values if want is not None], unit


def test_parse_maps_event_weights_and_default_event(spark):
    prep = PrepareConfig(event_weights={"view": 1.0, "buy": 4.0}, timestamp_floor=None)
    df = _raw(spark, [("u", "i", "buy", "5", "10"), ("u", "i", "view", "", "11")])
    got = parse_valid(_valid(with_reason(df, InputConfig(), prep)), InputConfig(), prep).collect()
    assert [(r["event"], r["weight"], r["rating"], r["ts"]) for r in got] == [
        ("buy", 4.0, 5.0, 10),
        ("view", 1.0, None, 11),
    ]
    no_events = InputConfig(event_col=None, timestamp_col=None)
    got = parse_valid(
        df.select("user_id", "item_id", "rating"), no_events, PrepareConfig(timestamp_floor=None)
    ).collect()
    assert {(r["event"], r["weight"], r["ts"]) for r in got} == {("interaction", 1.0, 0)}
    weighted = PrepareConfig(default_event="rated", event_weights={"rated": 2.0})
    assert parse_valid(df, no_events, weighted).first()["weight"] == 2.0


def test_exact_duplicates_are_equal_typed_events_whatever_file_or_spelling(spark):
    rows = [
        ("u1", "i1", "view", "4", "100", "file:/a"),
        ("u1", "i1", "view", "4", "100", "file:/b"),
        ("u1", "i1", "view", "4", "100", "file:/a"),
        ("u1", "i1", "view", "4.0", "100", "file:/a"),  # the same rating spelled differently
        ("u1", "i1", "view", "4", "101", "file:/a"),  # one second later: a separate event
    ]
    prep = PrepareConfig(timestamp_floor=None)
    annotated = with_reason(spark.createDataFrame(rows, RAW), InputConfig(), prep)
    pairs = aggregate.aggregate_events(parse_valid(_valid(annotated), InputConfig(), prep)).collect()
    assert [(r["count"], r["copies"], r["events"], r["first_ts"], r["last_ts"]) for r in pairs] == [
        (2, 5, 2, 100, 101)
    ]


def test_aggregation_matches_a_naive_reference(spark):
    rng = random.Random(0)
    weights = PrepareConfig(timestamp_floor=None).event_weights
    events = [
        (
            f"u{rng.randrange(8)}",
            f"i{rng.randrange(6)}",
            ev := rng.choice(["view", "click", "purchase"]),
            weights[ev],
            rng.choice([None, 1.0, 3.0, 4.5]),
            rng.randrange(40),
        )
        for _ in range(300)
    ]
    df = spark.createDataFrame(
        events, "user_id string, item_id string, event string, weight double, rating double, ts long"
    )
    distinct = defaultdict(set)
    copies = defaultdict(int)
    for e in events:
        distinct[(e[0], e[1])].add(e)
        copies[(e[0], e[1])] += 1
    got = {(r["user_id"], r["item_id"]): r for r in aggregate.aggregate_events(df).collect()}
    assert got.keys() == distinct.keys()
    for key, es in distinct.items():
        ratings = [e[4] for e in es if e[4] is not None]
        r = got[key]
        assert (r["count"], r["events"], r["copies"], r["near"], r["window_out"]) == (
            len(es),
            len(es),
            copies[key],
            0,
            0,
        )
        assert (r["first_ts"], r["last_ts"]) == (min(e[5] for e in es), max(e[5] for e in es))
        assert r["weight"] == pytest.approx(sum(e[3] for e in es))
        assert (
            (r["rating"] is None)
            if not ratings
            else r["rating"] == pytest.approx(sum(ratings) / len(ratings))
        )


PAIRS = "user_id string, item_id string, count long, weight double, rating double, last_ts long, copies long"


def test_vocab_is_dense_and_in_id_order(spark):
    rng = random.Random(1)
    ids = [f"id{rng.randrange(10**6):06d}" for _ in range(400)] + ["Z", "a", "é", "10", "9"]
    rows = [(i, "x", 1, 1.0, None, 0, 1) for i in ids + ids[:50]]  # repeats must not get two indices
    pairs = spark.createDataFrame(rng.sample(rows, len(rows)), PAIRS).repartition(3)
    key = "spark.sql.adaptive.coalescePartitions.enabled"
    before = spark.conf.get(key)
    spark.conf.set(key, "false")  # keep several sorted partitions, so the per-partition offsets matter
    try:
        vocab = build_vocab(pairs, "user_id", "user_idx")
        assert vocab.dtypes == [("user_id", "string"), ("user_idx", "int")]
        assert vocab.rdd.getNumPartitions() > 1
        got = sorted((r["user_idx"], r["user_id"]) for r in vocab.collect())
    finally:
        spark.conf.set(key, before)
    assert got == list(enumerate(sorted(set(ids))))


def test_split_leave_last_out_exact(spark):
    inter = spark.createDataFrame(
        [
            (0, 0, 1, 1.0, None, 10),
            (0, 1, 1, 1.0, None, 20),
            (0, 2, 1, 1.0, None, 20),  # tie at 20: item 2 is last
            (1, 0, 1, 1.0, None, 5),  # one item: stays in train
            (2, 0, 1, 1.0, None, 30),
            (2, 1, 1, 1.0, None, 7),
        ],
        "user_idx int, item_idx int, count long, weight double, rating double, last_ts long",
    )

    def test_set(n):
        return sorted(
            (r["user_idx"], r["item_idx"]) for r in split.test_part(split.mark_test(inter, n)).collect()
        )

    assert test_set(1) == [(0, 2), (2, 0)]
    assert test_set(2) == [(0, 1), (0, 2)]
    assert test_set(0) == []
    marked = split.mark_test(inter, 1)
    assert split.train_part(marked).count() + split.test_part(marked).count() == inter.count()


def test_split_never_leaks_the_future(spark):
    rng = random.Random(2)
    rows = {(u, rng.randrange(40)): rng.randrange(50) for u in range(30) for _ in range(rng.randrange(1, 12))}
    inter = spark.createDataFrame(
        [(u, i, 1, 1.0, None, ts) for (u, i), ts in rows.items()],
        "user_idx int, item_idx int, count long, weight double, rating double, last_ts long",
    )
    marked = split.mark_test(inter, 2).collect()
    train_max, test_min, per_user = {}, {}, defaultdict(int)
    for r in marked:
        per_user[r["user_idx"]] += 1
        side = test_min if r["is_test"] else train_max
        pick = min if r["is_test"] else max
        side[r["user_idx"]] = pick(side.get(r["user_idx"], r["last_ts"]), r["last_ts"])
    for u, n in per_user.items():
        assert (u in test_min) == (n > 2) and u in train_max
        if u in test_min:
            assert test_min[u] >= train_max[u]
    assert sum(r["is_test"] for r in marked) == sum(2 for n in per_user.values() if n > 2)


def test_index_pairs_uses_the_vocabularies(spark):
    pairs = spark.createDataFrame([("b", "y", 2, 3.0, None, 9, 2), ("a", "y", 1, 1.0, 4.0, 8, 1)], PAIRS)
    users, items = build_vocab(pairs, "user_id", "user_idx"), build_vocab(pairs, "item_id", "item_idx")
    got = index_pairs(pairs, users, items)
    assert got.dtypes == INTERACTION_SCHEMA
    assert sorted(tuple(r) for r in got.collect()) == [(0, 0, 1, 1.0, 4.0, 8), (1, 0, 2, 3.0, None, 9)]


def test_weight_column_rules_and_scaling(spark):
    inp = InputConfig(weight_col="w")
    prep = PrepareConfig(timestamp_floor=None)
    rows = [("u", "i", "click", "4", "100", w, "file:/a") for w in ("0.5", "0", "-1", "x", "", "3")]
    df = spark.createDataFrame(rows, RAW.replace(", source_file", ", w string, source_file"))
    annotated = with_reason(df, inp, prep)
    assert [r[REASON] for r in annotated.collect()] == [
        None,
        "nonpositive_weight",
        "nonpositive_weight",
        "bad_weight",
        "missing_weight",
        None,
    ]
    got = [r["weight"] for r in parse_valid(_valid(annotated), inp, prep).collect()]
    assert got == [1.0, 6.0]  # click (2.0) times the row's weight


def test_future_and_floor_follow_the_run_date(spark):
    prep = PrepareConfig(timestamp_floor="2000-01-01")
    end = 1767398399  # 2026-01-02T23:59:59Z
    rows = [("u", "i", "view", "4", str(ts)) for ts in (end, end + 1, 946684800, 946684799)]
    got = [r[REASON] for r in with_reason(_raw(spark, rows), InputConfig(), prep, "2026-01-02").collect()]
    assert got == [None, "future_timestamp", None, "timestamp_too_old"]
    off = PrepareConfig(timestamp_floor=None, reject_future=False)
    assert (
        with_reason(_raw(spark, rows), InputConfig(), off, "2026-01-02").where("reason IS NULL").count() == 4
    )


def test_id_patterns_quarantine_ids_of_the_wrong_shape(spark):
    rows = [
        ("17", "4", "view", "4", "100"),
        ("abc", "4", "view", "4", "100"),
        (" 18 ", "x9", "view", "4", "100"),
    ]
    config = InputConfig(user_id_pattern="[0-9]+", item_id_pattern="[0-9]+")
    got = [
        r[REASON]
        for r in with_reason(_raw(spark, rows), config, PrepareConfig(timestamp_floor=None)).collect()
    ]
    assert got == [None, "bad_user_id", "bad_item_id"]


def test_a_broken_id_pattern_is_a_config_error():
    from recbatch.config import load_config
    from recbatch.errors import ConfigError

    with pytest.raises(ConfigError, match="user_id_pattern.*not a regular expression"):
        load_config(None, ["input.user_id_pattern='[0-9'"])
