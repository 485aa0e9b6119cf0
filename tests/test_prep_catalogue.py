"""The cleaning catalogue end to end: one malformed file per kind, exact counts per reason and per
file, and the accounting identity (read = kept + quarantined + merged + filtered) on every run."""

from __future__ import annotations

import pandas as pd
import pytest

from recbatch.config import Config, InputConfig
from recbatch.errors import DataError
from recbatch.io.readers import read_raw
from recbatch.layout import RunLayout
from recbatch.prep.stage import run_prepare
from tests.builders import QUARANTINE_COLUMNS

pytestmark = pytest.mark.spark

HEADER = "user_id,item_id,event,rating,timestamp\n"
T = 1767225600  # 2026-01-01T00:00:00Z, the day before the run date
DATE = "2026-01-02"


def _good(user: str, item: str, event: str = "view", rating: str = "4", ts: int = T) -> str:
    return f"{user},{item},{event},{rating},{ts}\n"


def _identity(report: dict) -> None:
    assert report["rows_read"] == (
        report["rows_clean"]
        + report["rows_quarantined"]
        + report["duplicates_merged"]
        + report["rows_filtered"]
    )
    assert sum(f["rows_read"] for f in report["files"].values()) == report["rows_read"]


@pytest.fixture(scope="module")
def csv_corpus(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    data = root / "in"
    data.mkdir()
    files = {
        "good.csv": HEADER
        + _good("u1", "i1")
        + _good("u1", "i2", "click")
        + _good("u1", "i1")  # exact dup
        + _good("u2", "i1")
        + _good("u2", "i2", "purchase"),
        "bom.csv": "\ufeff" + HEADER + _good("u3", "i1") + _good("u3", "i2"),
        "empty.csv": "",
        "header_only.csv": HEADER,
        "repeated_header.csv": HEADER + _good("u4", "i1") + HEADER + _good("u4", "i2"),
        "fields.csv": HEADER
        + "u5,i1,view,4\n"
        + f"u5,i1,view,4,{T},extra\n"
        + _good("u5", "i1")
        + _good("u5", "i2"),
        "quotes.csv": HEADER
        + f'u6,"i1,view,4,{T}\n'  # unterminated
        + _good("u6", "i1")
        + f'u6,"i\n2",view,4,{T}\n'  # one record broken over two lines
        + _good("u6", "i2")
        + f'u6,i"x"y,view,4,{T}\n'  # quotes inside an unquoted field
        + f'"u6","i,3",view,4,{T}\n',  # a valid quoted field holding the delimiter
        "values.csv": HEADER
        + _good("u7", "i1", rating="abc")
        + _good("u7", "i1", ts="noon")  # type: ignore[arg-type]
        + _good("", "i1")
        + _good("u7", "")
        + _good("u7", "i1", rating="9")
        + _good("u7", "i1", ts=T + 400 * 86_400)
        + _good("u7", "i1", ts=100)
        + _good("u7", "i1", event="like")
        + "\n"
        + _good("u7", "i1")
        + _good("u7", "i2"),
        "long.csv": HEADER + _good("u8", "i1") + _good("u8", "i2") + _good("u8", "x" * 300),
    }
    for name, text in files.items():
        (data / name).write_text(text, encoding="utf-8")
    (data / "utf8.csv").write_bytes(
        (HEADER + _good("u9", "i1") + _good("u9", "i2")).encode() + b"u9,i\xff,view,4,1\n"
    )
    config = Config.model_validate({"input": {"path": str(data)}, "prepare": {"max_line_bytes": 200}})
    layout = RunLayout(root / "work", DATE)
    return layout, run_prepare(spark, config, layout)


def test_every_csv_kind_has_its_exact_count(csv_corpus):
    _, report = csv_corpus
    assert report["quarantine_by_reason"] == {
        "bad_rating": 1,
        "bad_timestamp": 1,
        "blank_line": 1,
        "future_timestamp": 1,
        "invalid_utf8": 1,
        "line_too_long": 1,
        "malformed_quote": 1,
        "missing_item": 1,
        "missing_user": 1,
        "newline_in_quoted_field": 2,
        "rating_out_of_range": 1,
        "repeated_header": 1,
        "timestamp_too_old": 1,
        "too_few_fields": 1,
        "too_many_fields": 1,
        "unknown_event": 1,
        "unterminated_quote": 1,
    }
    assert report["duplicates_merged"] == report["duplicates_exact"] == 1
    # 8 users with 2 items, u6 with 3 (i1, i2 and "i,3"): nothing is filtered.
    assert report["rows_filtered"] == 0
    assert report["rows_clean"] == 19 and report["users"] == 9 and report["interactions"] == 19
    _identity(report)


def test_files_are_counted_one_by_one(csv_corpus):
    _, report = csv_corpus
    files = {k.rsplit("/", 1)[-1]: v for k, v in report["files"].items()}
    assert {k: (v["rows_read"], v["quarantined"]) for k, v in files.items()} == {
        "bom.csv": (2, 0),
        "empty.csv": (0, 0),
        "fields.csv": (4, 2),
        "good.csv": (5, 0),
        "header_only.csv": (0, 0),
        "long.csv": (3, 1),
        "quotes.csv": (7, 4),
        "repeated_header.csv": (3, 1),
        "utf8.csv": (3, 1),
        "values.csv": (11, 9),
    }
    assert [f.rsplit("/", 1)[-1] for f in report["empty_files"]] == ["empty.csv"]
    assert [f.rsplit("/", 1)[-1] for f in report["header_only_files"]] == ["header_only.csv"]


def test_quarantine_rows_carry_raw_line_source_reason_and_stage(spark, csv_corpus):
    layout, _ = csv_corpus
    q = spark.read.parquet(str(layout.quarantine))
    assert q.columns == QUARANTINE_COLUMNS
    rows = {r["reason"]: r for r in q.collect()}
    assert rows["too_many_fields"]["raw"] == f"u5,i1,view,4,{T},extra"
    assert rows["too_many_fields"]["stage"] == "read" and rows["bad_rating"]["stage"] == "validate"
    assert rows["repeated_header"]["source_file"].endswith("repeated_header.csv")
    assert rows["bad_rating"]["rating"] == "abc"
    quoted = spark.read.parquet(str(layout.item_vocab)).where("item_id = 'i,3'").count()
    assert quoted == 1, "a quoted field keeps its delimiter"


def test_a_whole_file_with_another_delimiter_fails_fast(spark, tmp_path):
    (tmp_path / "ok.csv").write_text(HEADER + _good("u1", "i1"))
    (tmp_path / "semi.csv").write_text((HEADER + _good("u1", "i2")).replace(",", ";"))
    with pytest.raises(
        DataError, match=r"semi.csv: no line .* holds the delimiter ','.*input.delimiter = ';'"
    ):
        read_raw(spark, InputConfig(path=str(tmp_path)))


def test_headerless_wrong_delimiter_fails_fast(spark, tmp_path):
    (tmp_path / "u.data").write_text("1|2|3|100\n4|5|3|200\n")
    cfg = InputConfig(
        path=str(tmp_path / "u.data"),
        format="tsv",
        header=False,
        names=["user_id", "item_id", "rating", "timestamp"],
        event_col=None,
    )
    with pytest.raises(DataError, match=r"input.delimiter = '\|'"):
        read_raw(spark, cfg)


@pytest.mark.parametrize("content", [b"", b"PAR1\x00\x00garbage"], ids=["zero_bytes", "truncated"])
def test_a_broken_parquet_file_fails_naming_it(spark, tmp_path, content):
    pd.DataFrame({"user_id": ["u"], "item_id": ["i"]}).to_parquet(tmp_path / "good.parquet")
    (tmp_path / "bad.parquet").write_bytes(content)
    cfg = InputConfig(
        path=str(tmp_path), format="parquet", rating_col=None, timestamp_col=None, event_col=None
    )
    with pytest.raises(DataError, match=r"bad.parquet is not a readable Parquet file"):
        read_raw(spark, cfg)


def test_json_lines_catalogue(spark, tmp_path):
    def rec(user, item, extra=""):
        return f'{{"user_id": {user}, "item_id": {item}, "event": "view", "rating": 4, "timestamp": {T}{extra}}}\n'

    path = tmp_path / "e.jsonl"
    path.write_text(
        rec('"u1"', '"i1"')
        + rec('"u1"', "7")  # a number id is its text
        + rec('"u2"', '"i1"')
        + rec('"u2"', '"i2"')
        + '{"user_id": "u3", "item_id": \n'  # broken
        + '{"user_id": "u3", "item_id": "i1", "event": "view", "rating": NaN, "timestamp": 1}\n'
        + rec('{"id": 3}', '"i1"')  # object where a scalar belongs
        + rec("true", '"i1"')  # wrong type
        + '["u3", "i1"]\n'  # not an object
        + rec('"u3"', '"i1"', ', "pad": "' + "x" * 300 + '"')  # too long
        + rec('"u3"', '"i1"').replace('"rating": 4', '"rating": "high"')  # text in a numeric field
    )
    config = Config.model_validate(
        {"input": {"path": str(path), "format": "jsonl"}, "prepare": {"max_line_bytes": 300}}
    )
    report = run_prepare(spark, config, RunLayout(tmp_path / "w", DATE))
    assert report["quarantine_by_reason"] == {
        "bad_rating": 1,
        "broken_json": 1,
        "line_too_long": 1,
        "nested_value": 1,
        "non_finite_number": 1,
        "not_an_object": 1,
        "wrong_type": 1,
    }
    assert (report["rows_read"], report["rows_clean"], report["interactions"]) == (11, 4, 4)
    _identity(report)


def test_outliers_window_and_near_duplicates_are_counted(spark, tmp_path):
    lines = [HEADER]
    lines += [_good("bot", f"i{k}", ts=T + k) for k in range(8)]  # 8 events: above the cap
    lines += [_good(f"u{u}", f"i{k}", ts=T + 10 * k) for u in range(4) for k in range(3)]
    lines += [_good("u0", "i0", ts=T + 5)]  # 5 s after u0/i0's event: a near duplicate
    lines += [_good("u1", "i9", ts=T - 30 * 86_400)]  # outside a 7-day window
    path = tmp_path / "e.csv"
    path.write_text("".join(lines))
    config = Config.model_validate(
        {
            "input": {"path": str(path)},
            "prepare": {"outlier_user_max": 5, "near_duplicate_seconds": 10, "window_days": 7},
        }
    )
    report = run_prepare(spark, config, RunLayout(tmp_path / "w", DATE))
    assert report["near_duplicates_merged"] == 1 and report["duplicates_merged"] == 1
    assert report["filtered"]["time_window"] == 1
    assert report["filtered"]["outlier_user"] == 8
    assert report["filter_details"]["outlier_user"] == {
        "quantile": None,
        "cap": 5,
        "threshold": 5.0,
        "removed": 1,
    }
    assert (report["users"], report["interactions"]) == (4, 12)
    _identity(report)
