"""The synthetic generator: determinism, injected malformed rows, long tails, and taste clusters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recbatch.config import SynthConfig, load_config
from recbatch.errors import ConfigError
from recbatch.synth import build_world, generate


def _read(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path):
    cfg = SynthConfig(users=50, items=30, events=3000, malformed_rate=0.02, seed=3)
    a = generate(cfg, tmp_path / "a.csv")
    b = generate(cfg, tmp_path / "b.csv")
    generate(cfg.model_copy(update={"seed": 4}), tmp_path / "c.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "a.csv").read_bytes() != (tmp_path / "c.csv").read_bytes()
    assert a == {**b, "file_paths": a["file_paths"], "path": a["path"]}
    assert (tmp_path / "a.csv").read_text().splitlines()[0] == "user_id,item_id,event,rating,timestamp"
    assert not list(tmp_path.glob("*.tmp"))


def test_part_files_are_deterministic_and_each_has_a_header(tmp_path):
    cfg = SynthConfig(users=20, items=10, events=1000, files=3, seed=1)
    summary = generate(cfg, tmp_path / "one")
    generate(cfg, tmp_path / "two")
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == ["part-00000.csv", "part-00001.csv", "part-00002.csv"]
    for name in names:
        first = (tmp_path / "one" / name).read_bytes()
        assert first == (tmp_path / "two" / name).read_bytes()
        assert first.startswith(b"user_id,item_id,event,rating,timestamp\n")
    total = sum(len(_read(tmp_path / "one" / n)) for n in names)
    assert summary["files"] == 3 and summary["rows"] == total == 1000 + summary["malformed"]


def test_malformed_rows_match_the_summary_and_the_rate(tmp_path):
    cfg = SynthConfig(users=300, items=200, events=20_000, malformed_rate=0.05, seed=11)
    summary = generate(cfg, tmp_path / "e.csv")
    df = _read(tmp_path / "e.csv")
    kinds = summary["malformed_by_kind"]
    assert len(df) == summary["rows"] == cfg.events + summary["malformed"]
    assert summary["malformed"] / summary["rows"] == pytest.approx(cfg.malformed_rate, abs=1e-3)
    assert sum(kinds.values()) == summary["malformed"]
    assert min(kinds.values()) > 0.1 * summary["malformed"]  # a real mix of kinds
    assert (df["rating"] == "abc").sum() == kinds["bad_rating"]
    assert (df["timestamp"] == "notatime").sum() == kinds["bad_timestamp"]
    assert (df["user_id"] == "").sum() == kinds["missing_user"]
    assert (df["item_id"] == "").sum() == kinds["missing_item"]
    assert df.duplicated().sum() >= kinds["duplicate"]
    good = df[(df["rating"] != "abc") & (df["timestamp"] != "notatime")]
    assert set(good["event"]) == {"view", "click", "purchase"}
    assert set(good["rating"]) == {"1", "2", "3", "4", "5"}
    ts = good["timestamp"].astype(int)
    assert ts.max() <= 1767311999 and ts.min() >= 1767311999 - 90 * 86400 + 1  # 90 days to 2026-01-01 UTC
    assert good["user_id"].str.fullmatch(r"u\d{6}|").all() and good["item_id"].str.fullmatch(r"i\d{5}|").all()


def test_popularity_and_activity_are_long_tailed(tmp_path):
    cfg = SynthConfig(users=2000, items=1000, events=50_000, malformed_rate=0.0, seed=5)
    generate(cfg, tmp_path / "e.csv")
    df = _read(tmp_path / "e.csv")
    items = df["item_id"].value_counts().to_numpy()
    users = df["user_id"].value_counts().to_numpy()
    assert items[: len(items) // 10].sum() / items.sum() > 0.5  # top 10% of items: most events
    assert users[: len(users) // 10].sum() / users.sum() > 0.35
    assert items[0] > 20 * np.median(items)


def test_events_follow_user_clusters_and_in_cluster_items_rate_higher(tmp_path):
    cfg = SynthConfig(
        users=500, items=300, events=30_000, clusters=6, affinity=0.8, malformed_rate=0.0, seed=9
    )
    generate(cfg, tmp_path / "e.csv")
    world = build_world(cfg, np.random.default_rng(cfg.seed))  # the generator draws the world first
    df = _read(tmp_path / "e.csv")
    users = df["user_id"].str[1:].astype(int).to_numpy()
    items = df["item_id"].str[1:].astype(int).to_numpy()
    match = world.item_cluster[items] == world.user_cluster[users]
    assert match.mean() > cfg.affinity  # affinity plus the global draws that land in-cluster
    ratings = df["rating"].astype(int).to_numpy()
    assert ratings[match].mean() > ratings[~match].mean() + 1.0


def test_bad_end_date_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"synth\.end_date = '01/02/2026' is invalid"):
        load_config(None, ['synth.end_date="01/02/2026"'])
