"""Raw readers: every format comes back as all-string columns plus source_file; clear errors."""

from __future__ import annotations

import pandas as pd
import pytest

from recbatch.config import InputConfig
from recbatch.errors import DataError
from recbatch.io.readers import SOURCE_FILE, read_raw

pytestmark = pytest.mark.spark

EXTRA = [SOURCE_FILE, "block_start", "line_no", "raw", "reason"]


def _rows(df, cols):
    return sorted(tuple(r) for r in df.select(*cols).collect())


def test_csv_with_header_keeps_bad_values_as_strings(spark, tmp_path):
    path = tmp_path / "e.csv"
    path.write_text(
        "user_id,item_id,event,rating,timestamp\nu1,i1,view,4,100\nu2,i2,click,abc,notatime\nu3,i3\n"
    )
    df = read_raw(spark, InputConfig(path=str(path)))
    cols = ["user_id", "item_id", "event", "rating", "timestamp"]
    assert df.columns == [*cols, *EXTRA]
    assert all(t == "string" for c, t in df.dtypes if c in cols)
    assert _rows(df, [*cols, "raw", "reason"]) == [
        ("u1", "i1", "view", "4", "100", "u1,i1,view,4,100", None),
        ("u2", "i2", "click", "abc", "notatime", "u2,i2,click,abc,notatime", None),  # values: judged later
        ("u3", "i3", None, None, None, "u3,i3", "too_few_fields"),  # Spark would pad these silently
        *[(*cols, ",".join(cols), "header")],  # the header line, dropped by the stage
    ]
    (source,) = {r[0] for r in df.select(SOURCE_FILE).collect()}
    assert source.startswith("file:") and source.endswith(str(path.resolve()))


def test_headerless_tsv_takes_names_from_config(spark, tmp_path):
    path = tmp_path / "u.data"
    path.write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    cfg = InputConfig(
        path=str(path),
        format="tsv",
        header=False,
        names=["user_id", "item_id", "rating", "timestamp"],
        event_col=None,
    )
    df = read_raw(spark, cfg)
    assert df.columns == ["user_id", "item_id", "rating", "timestamp", *EXTRA]
    assert _rows(df, df.columns[:4]) == [("186", "302", "3", "891717742"), ("196", "242", "3", "881250949")]


def test_custom_delimiter_and_part_file_directory(spark, tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    (folder / "part-0.csv").write_text("user;item\na;x\n")
    (folder / "part-1.csv").write_text("user;item\nb;y\n")
    cfg = InputConfig(
        path=str(folder),
        delimiter=";",
        user_col="user",
        item_col="item",
        rating_col=None,
        timestamp_col=None,
        event_col=None,
    )
    df = read_raw(spark, cfg).where("reason IS NULL")
    got = sorted((r["user"], r["item"], r[SOURCE_FILE].rsplit("/", 1)[-1]) for r in df.collect())
    assert got == [("a", "x", "part-0.csv"), ("b", "y", "part-1.csv")]


def test_jsonl_numbers_become_their_text_and_missing_keys_null(spark, tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text(
        '{"user_id": "u1", "item_id": 7, "event": "view", "rating": 4.5, "timestamp": 100}\n'
        '{"user_id": "u2", "item_id": "i2", "event": "click", "rating": "abc"}\n'
    )
    df = read_raw(spark, InputConfig(path=str(path), format="jsonl"))
    cols = ["user_id", "item_id", "event", "rating", "timestamp"]
    assert all(t == "string" for c, t in df.dtypes if c in cols)
    assert _rows(df, cols) == [("u1", "7", "view", "4.5", "100"), ("u2", "i2", "click", "abc", None)]


def test_parquet_columns_are_cast_to_string(spark, tmp_path):
    path = tmp_path / "e.parquet"
    pd.DataFrame(
        {"uid": [1, 2], "iid": ["a", "b"], "stars": [4.0, 2.5], "ts": [10, 20], "extra": [True, False]}
    ).to_parquet(path)
    cfg = InputConfig(
        path=str(path),
        format="parquet",
        user_col="uid",
        item_col="iid",
        rating_col="stars",
        timestamp_col="ts",
        event_col=None,
    )
    df = read_raw(spark, cfg)
    assert df.columns == ["uid", "iid", "stars", "ts", "extra", *EXTRA]
    assert all(t == "string" for c, t in df.dtypes if c in df.columns[:5])
    assert _rows(df, df.columns[:5]) == [("1", "a", "4.0", "10", "true"), ("2", "b", "2.5", "20", "false")]
    assert all(r[0].endswith("e.parquet") for r in df.select(SOURCE_FILE).collect())


def test_a_reserved_column_name_is_a_data_error(spark, tmp_path):
    path = tmp_path / "e.csv"
    path.write_text("user_id,item_id,reason\nu1,i1,x\n")
    with pytest.raises(DataError, match="column.s. reason, which recbatch adds itself"):
        read_raw(spark, InputConfig(path=str(path), rating_col=None, timestamp_col=None, event_col=None))


def test_missing_path_names_it_and_the_fix(spark, tmp_path):
    with pytest.raises(DataError, match=r"input.path .*nope.csv.* does not exist.*set input.path"):
        read_raw(spark, InputConfig(path=str(tmp_path / "nope.csv")))


def test_missing_column_names_it_and_the_existing_ones(spark, tmp_path):
    path = tmp_path / "e.csv"
    path.write_text("user_id,item_id,when\nu1,i1,5\n")
    with pytest.raises(DataError, match=r"input.rating_col = 'rating'.*columns are: user_id, item_id, when"):
        read_raw(spark, InputConfig(path=str(path)))


def test_wrong_delimiter_hints_at_format(spark, tmp_path):
    path = tmp_path / "e.tsv"
    path.write_text("user_id\titem_id\nu1\ti1\n")
    with pytest.raises(DataError, match=r"input\.format/input\.delimiter"):
        read_raw(spark, InputConfig(path=str(path), rating_col=None, timestamp_col=None, event_col=None))


def test_reserved_names_cover_what_prepare_adds():
    from recbatch.io.readers import RESERVED_COLUMNS
    from recbatch.prep.parse import COPIES, REASON

    assert {SOURCE_FILE, REASON, COPIES, "raw", "stage", "line_no", "block_start"} == set(RESERVED_COLUMNS)
