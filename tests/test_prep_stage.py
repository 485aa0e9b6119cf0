"""run_prepare end to end: synthetic log, MovieLens-100K, accounting and clear failures."""

from __future__ import annotations

import json

import pytest

from recbatch.config import Config, SynthConfig
from recbatch.errors import ConfigError, DataError, PipelineError
from recbatch.layout import RunLayout
from recbatch.prep.report import check_accounting, write_report
from recbatch.prep.stage import run_prepare
from recbatch.prep.vocab import previous_prepared
from recbatch.synth import generate
from tests.builders import INTERACTION_SCHEMA, QUARANTINE_COLUMNS

INTERACTION_COLUMNS = ("user_idx", "item_idx", "count", "weight", "rating", "last_ts")


def _rows(spark, path, *cols):
    return [tuple(r) for r in spark.read.parquet(str(path)).select(*cols).collect()]


@pytest.fixture(scope="module")
def synth_run(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prep")
    summary = generate(
        SynthConfig(users=150, items=80, events=4000, malformed_rate=0.03, seed=21), tmp / "e.csv"
    )
    layout = RunLayout(tmp / "work", "2026-01-01")
    config = Config.model_validate(
        {"input": {"path": str(tmp / "e.csv")}, "prepare": {"min_item_interactions": 3}}
    )
    return summary, layout, run_prepare(spark, config, layout)


@pytest.mark.spark
def test_synth_report_accounts_for_every_row(synth_run):
    summary, layout, report = synth_run
    kinds = summary["malformed_by_kind"]
    assert report["rows_read"] == summary["rows"]
    assert report["quarantine_by_reason"] == {
        k: kinds[k] for k in ("bad_rating", "bad_timestamp", "missing_item", "missing_user")
    }
    assert report["duplicates_merged"] >= kinds["duplicate"]
    assert report["rows_read"] == (
        report["rows_clean"]
        + report["rows_quarantined"]
        + report["duplicates_merged"]
        + report["rows_filtered"]
    )
    assert set(report["filtered"]) == {"time_window", "min_user_interactions", "min_item_interactions"}
    assert report["train_rows"] + report["test_rows"] == report["interactions"]
    assert report["test_rows"] == report["test_users"] > 0
    assert report["density"] == pytest.approx(report["interactions"] / (report["users"] * report["items"]))
    assert set(report["timings"]) >= {"total", "vocab"}
    assert json.loads(layout.prepare_report.read_text()) == report


@pytest.mark.spark
def test_synth_artifacts_follow_the_contract(spark, synth_run):
    _, layout, report = synth_run
    for path in (layout.interactions, layout.train, layout.test):
        assert spark.read.parquet(str(path)).dtypes == INTERACTION_SCHEMA
    users = spark.read.parquet(str(layout.user_vocab))
    items = spark.read.parquet(str(layout.item_vocab))
    assert users.dtypes == [("user_id", "string"), ("user_idx", "int")]
    assert items.dtypes == [("item_id", "string"), ("item_idx", "int")]
    assert spark.read.parquet(str(layout.quarantine)).dtypes == [(c, "string") for c in QUARANTINE_COLUMNS]
    for vocab, cols in ((users, ("user_id", "user_idx")), (items, ("item_id", "item_idx"))):
        pairs = sorted(tuple(r) for r in vocab.select(*cols).collect())
        assert [idx for _, idx in pairs] == list(range(len(pairs)))  # dense, and in id order
    inter = set(_rows(spark, layout.interactions, "user_idx", "item_idx"))
    train = set(_rows(spark, layout.train, "user_idx", "item_idx"))
    test = set(_rows(spark, layout.test, "user_idx", "item_idx"))
    assert len(inter) == report["interactions"] and train | test == inter and not train & test
    assert {u for u, _ in train} == set(range(report["users"]))  # every user keeps a training row
    assert {i for _, i in inter} == set(range(report["items"]))
    last = {}
    for u, ts in _rows(spark, layout.train, "user_idx", "last_ts"):
        last[u] = max(last.get(u, ts), ts)
    assert all(ts >= last[u] for u, ts in _rows(spark, layout.test, "user_idx", "last_ts"))


@pytest.mark.spark
def test_movielens_100k(spark, ml100k, tmp_path):
    config = Config.model_validate(
        {
            "input": {
                "path": str(ml100k / "u.data"),
                "format": "tsv",
                "header": False,
                "names": ["user_id", "item_id", "rating", "timestamp"],
                "event_col": None,
            },
            "prepare": {"feedback": "explicit"},
        }
    )
    report = run_prepare(spark, config, RunLayout(tmp_path, "2026-01-01"))
    assert (report["rows_read"], report["rows_quarantined"], report["duplicates_merged"]) == (100_000, 0, 0)
    assert (report["users"], report["items"], report["interactions"]) == (943, 1682, 100_000)
    assert (report["train_rows"], report["test_rows"]) == (99_057, 943)


@pytest.mark.spark
def test_all_rows_bad_is_a_data_error_and_the_quarantine_is_kept(spark, tmp_path):
    path = tmp_path / "e.csv"
    path.write_text(
        "user_id,item_id,event,rating,timestamp\nu1,i1,view,abc,1\nu2,i2,view,x,1\nu3,,view,1,1\n"
    )
    layout = RunLayout(tmp_path / "w", "2026-01-01")
    with pytest.raises(DataError, match=r"0 clean rows: 3 quarantined, top reason bad_rating — check input"):
        run_prepare(spark, Config.model_validate({"input": {"path": str(path)}}), layout)
    assert spark.read.parquet(str(layout.quarantine)).count() == 3


@pytest.mark.spark
def test_everything_filtered_is_a_data_error(spark, tmp_path):
    path = tmp_path / "e.csv"
    path.write_text(
        "user_id,item_id,event,rating,timestamp\nu1,i1,view,3,1700000000\nu2,i2,view,3,1700000000\n"
    )
    config = Config.model_validate({"input": {"path": str(path)}, "prepare": {"min_user_interactions": 2}})
    with pytest.raises(DataError, match="0 interactions left after filtering"):
        run_prepare(spark, config, RunLayout(tmp_path / "w", "2026-01-01"))


def test_accounting_check_catches_a_lost_row():
    report = {
        "rows_read": 10,
        "rows_clean": 6,
        "rows_quarantined": 2,
        "duplicates_merged": 1,
        "rows_filtered": 1,
        "quarantine_by_reason": {"bad_rating": 2},
        "filtered": {"min_user_interactions": 1},
        "train_rows": 3,
        "test_rows": 1,
        "interactions": 4,
    }
    check_accounting(report)
    with pytest.raises(PipelineError, match="rows_read 10 != rows_clean 5"):
        check_accounting({**report, "rows_clean": 5})
    with pytest.raises(PipelineError, match="quarantine_by_reason"):
        check_accounting({**report, "quarantine_by_reason": {"bad_rating": 1}})
    with pytest.raises(PipelineError, match="train_rows"):
        check_accounting({**report, "test_rows": 2})


@pytest.mark.spark
def test_vocabularies_stay_stable_when_data_is_appended(spark, tmp_path):
    header = "user_id,item_id,event,rating,timestamp\n"
    first = "".join(f"u{u},i{i},view,4,{1767000000 + u + i}\n" for u in (5, 1, 3) for i in (2, 9))
    more = "".join(f"u{u},i{i},view,4,{1767100000 + u + i}\n" for u in (0, 4) for i in (1, 9, 10))
    (tmp_path / "day1.csv").write_text(header + first)
    (tmp_path / "day2.csv").write_text(header + first + more)
    workdir = tmp_path / "w"

    def run(name, date, previous):
        config = Config.model_validate(
            {"input": {"path": str(tmp_path / name)}, "prepare": {"previous_vocab": previous}}
        )
        layout = RunLayout(workdir, date)
        report = run_prepare(spark, config, layout)
        vocab = {
            side: dict(_rows(spark, path, f"{side}_id", f"{side}_idx"))
            for side, path in (("user", layout.user_vocab), ("item", layout.item_vocab))
        }
        return report, vocab

    _, one = run("day1.csv", "2026-01-01", "auto")  # no earlier run: fresh, in id order
    assert one == {"user": {"u1": 0, "u3": 1, "u5": 2}, "item": {"i2": 0, "i9": 1}}
    report, two = run("day2.csv", "2026-01-02", "auto")
    assert report["previous_vocab"].endswith("dt=2026-01-01/prepared")
    assert two["user"] == {**one["user"], "u0": 3, "u4": 4}  # kept, then new ids appended in id order
    assert two["item"] == {**one["item"], "i1": 2, "i10": 3}
    fresh, three = run("day2.csv", "2026-01-03", "")
    assert fresh["previous_vocab"] is None and three["user"]["u0"] == 0
    assert sorted(spark.read.parquet(str(RunLayout(workdir, "2026-01-02").interactions)).columns) == sorted(
        INTERACTION_COLUMNS
    )


def test_previous_vocab_auto_takes_the_latest_earlier_run_with_both_vocabularies(tmp_path):
    def prepared(date, *sides):
        folder = RunLayout(tmp_path, date).prepared
        for side in sides:
            (folder / "vocab" / side).mkdir(parents=True)
        return folder

    older = prepared("2026-01-01", "users", "items")
    prepared("2026-01-02", "users")  # incomplete: no item vocabulary
    prepared("2026-01-04", "users", "items")  # later than the run date
    layout = RunLayout(tmp_path, "2026-01-03")
    assert previous_prepared("auto", layout) == older
    assert previous_prepared("", layout) is None
    assert previous_prepared(str(older), layout) == older
    with pytest.raises(ConfigError, match="holds no vocab/users and vocab/items"):
        previous_prepared(str(RunLayout(tmp_path, "2026-01-02").prepared), layout)


def test_report_json_is_written_whole_with_sorted_keys(tmp_path):
    target = tmp_path / "prepared" / "report.json"
    write_report({"rows_read": 3, "files": {"b": 1, "a": 2}}, target)
    assert (
        target.read_text(encoding="utf-8")
        == json.dumps({"files": {"a": 2, "b": 1}, "rows_read": 3}, indent=2, sort_keys=True) + "\n"
    )
    assert [p.name for p in target.parent.iterdir()] == ["report.json"]
