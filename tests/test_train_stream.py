"""Streaming training input (Parquet record batches -> tf.data) against the in-memory input."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from recbatch.errors import DataError
from tests.builders import clustered_data, tiny_config, write_prepared, write_split

# ---------------------------------------------------------------- no TensorFlow below this line


def _random_split(tmp_path: Path, seed: int = 0) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (user, item) pairs with tied timestamps, over three files of a few row groups."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    keys = rng.choice(30 * 100, size=400, replace=False)
    users, items = (keys // 100).astype(np.int32), (keys % 100).astype(np.int32)
    ts = rng.integers(0, 5, size=400).astype(np.int64)  # many ties: the higher item must win
    path = tmp_path / "train"
    path.mkdir()
    for k, part in enumerate(np.array_split(np.arange(400), 3)):
        table = pa.table(
            {
                "user_idx": pa.array(users[part], pa.int32()),
                "item_idx": pa.array(items[part], pa.int32()),
                "last_ts": pa.array(ts[part]),
            }
        )
        pq.write_table(table, path / f"part-{k:05d}.parquet", row_group_size=40)
    return path, users, items, ts


def test_stream_stats_match_the_in_memory_validation_carve(tmp_path: Path) -> None:
    from recbatch.core.validation import carve_validation
    from recbatch.train.stream import scan_stats

    path, users, items, ts = _random_split(tmp_path)
    stats = scan_stats(path, 30, 100, read_rows=16)
    split = carve_validation(users, items, ts, 30)
    held = stats.held_out()
    assert sorted(zip(split.val_users.tolist(), split.val_items.tolist(), strict=True)) == [
        (u, int(held[u])) for u in np.flatnonzero(held >= 0)
    ]
    assert stats.rows == 400
    np.testing.assert_array_equal(stats.item_counts, np.bincount(items, minlength=100))
    np.testing.assert_array_equal(stats.user_counts, np.bincount(users, minlength=30))


@pytest.mark.parametrize("loss", ["bce", "bpr", "softmax"])
def test_stream_epoch_sees_every_fit_positive_once_holding_little(
    tmp_path: Path, loss: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recbatch.train import stream

    path, users, items, _ = _random_split(tmp_path)
    read = []
    real_scan = stream.scan

    def counting_scan(*args, **kwargs):  # a spy: records each record batch's size
        for batch in real_scan(*args, **kwargs):
            read.append(len(batch["user_idx"]))
            yield batch

    stats = stream.scan_stats(path, 30, 100, read_rows=16)
    held = stats.held_out()
    source = stream.StreamInput(path, stats, held=held, read_rows=16)
    cfg = tiny_config(tmp_path, "mf", loss=loss, batch_size=20, negatives=3, shuffle_buffer=48).train
    source.start(cfg, np.random.default_rng(0))
    monkeypatch.setattr(stream, "scan", counting_scan)
    batches = list(source.epoch(cfg))
    # Read in many small record batches; never more than the buffer plus one record batch held.
    assert len(read) >= 400 // 16 and max(read) <= 16
    assert 48 <= source.peak_rows <= 48 + 16
    assert len(batches) == source.num_batches(cfg)

    fit = Counter((u, i) for u, i in zip(users.tolist(), items.tolist(), strict=True) if held[u] != i)
    positives = set(fit)  # a held-out item may be a negative, as in memory mode
    if loss == "softmax":
        seen = Counter(p for u, i in batches for p in zip(u.tolist(), i.tolist(), strict=True))
    elif loss == "bpr":
        seen = Counter(p for u, i, _ in batches for p in zip(u.tolist(), i.tolist(), strict=True))
        assert seen == Counter({p: 3 for p in fit})
        negatives = {p for u, _, n in batches for p in zip(u.tolist(), n.tolist(), strict=True)}
        assert not negatives & positives
        return
    else:
        seen = Counter()
        for u, i, y in batches:
            assert len(u) <= 20 and y.sum() * 4 == len(y)  # 1 positive + 3 negatives
            pairs = list(zip(u.tolist(), i.tolist(), strict=True))
            seen.update(p for p, lab in zip(pairs, y.tolist(), strict=True) if lab == 1)
            assert not {p for p, lab in zip(pairs, y.tolist(), strict=True) if lab == 0} & positives
    assert seen == fit  # every fit positive exactly once, the held-out ones never


def test_stream_batches_depend_on_the_seed_only(tmp_path: Path) -> None:
    from recbatch.train.stream import StreamInput, scan_stats

    path, *_ = _random_split(tmp_path)
    cfg = tiny_config(tmp_path, "mf", batch_size=25, shuffle_buffer=64).train
    stats = scan_stats(path, 30, 100)

    def epochs(seed: int) -> list[np.ndarray]:
        source = StreamInput(path, stats, read_rows=16)
        source.start(cfg, np.random.default_rng(seed))
        return [a for _ in range(2) for batch in source.epoch(cfg) for a in batch]

    first, again, other = epochs(1), epochs(1), epochs(2)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_auto_input_streams_above_the_memory_limit(tmp_path: Path) -> None:
    from recbatch.train.stream import choose_input, memory_estimate_mb

    cfg = tiny_config(tmp_path, "mf", memory_limit_mb=100).train
    rows = int(100 * 2**20 / memory_estimate_mb(cfg, 2**20))  # about the limit
    assert choose_input(cfg, rows // 2) == "memory" and choose_input(cfg, rows * 2) == "stream"
    assert choose_input(cfg.model_copy(update={"input": "memory"}), rows * 2) == "memory"
    assert choose_input(cfg.model_copy(update={"input": "stream"}), 10) == "stream"


def test_progress_bar_only_on_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    from recbatch.train.progress import EpochProgress

    with EpochProgress("mf epoch 1/2", 3) as bar:  # pytest's stderr is no terminal: nothing shown
        bar.step(0.5)
    assert capsys.readouterr().err == ""
    with EpochProgress("mf epoch 1/2", 3, enabled=True) as bar:
        for loss in (0.75, 0.5, 0.25):
            bar.step(loss)
        bar.note("val_ndcg@10 0.4321")
    err = capsys.readouterr().err
    assert "mf epoch 1/2" in err and "3/3" in err and "loss 0.5000" in err and "val_ndcg@10 0.4321" in err


def test_stream_input_missing_column_is_a_data_error(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from recbatch.train.stage import run_train

    layout = write_prepared(tmp_path)
    for part in layout.train.glob("*.parquet"):
        pq.write_table(pq.read_table(part).drop_columns(["user_idx"]), part)
    with pytest.raises(DataError, match=r"lacks column\(s\) \['user_idx'\]"):
        run_train(tiny_config(tmp_path, "mf", input="stream"), layout)
    pq.write_table(pa.table({"user_idx": pa.array([0], pa.int32())}), tmp_path / "one.parquet")
    from recbatch.train.stream import scan_stats

    with pytest.raises(DataError, match=r"lacks column\(s\) \['item_idx'\]"):
        scan_stats(tmp_path / "one.parquet", 1, 1)


# ---------------------------------------------------------------- real training


@pytest.mark.parametrize(
    ("model", "loss", "sampling"),
    [("mf", "bce", "uniform"), ("mf", "bpr", "popularity"), ("two_tower", "softmax", "uniform")],
)
def test_stream_and_memory_inputs_learn_alike(tmp_path: Path, model: str, loss: str, sampling: str) -> None:
    """Both inputs beat popularity by a margin on the clusters and land near each other."""
    from recbatch.core.ranking import DotScorer
    from recbatch.core.validation import carve_validation, scorer_ndcg
    from recbatch.evaluate.stage import item_popularity
    from recbatch.train.loop import fit
    from recbatch.train.stream import fit_stream

    tr_u, tr_i, _, _, n_users, n_items = clustered_data()
    write_split(tmp_path / "train", tr_u, tr_i)
    ts = np.arange(len(tr_u), dtype=np.int64)  # the timestamps write_split stores
    settings = dict(loss=loss, negative_sampling=sampling, epochs=8, patience=8, refit=False, batch_size=32)
    cfg = tiny_config(tmp_path, model, shuffle_buffer=100, **settings).train
    memory = fit(cfg, n_users, n_items, tr_u, tr_i, ts)
    streamed = fit_stream(cfg, n_users, n_items, tmp_path / "train", read_rows=50)

    split = carve_validation(tr_u, tr_i, ts, n_users)
    pop = item_popularity(split.fit_items, n_items)[:, None]
    popular = scorer_ndcg(DotScorer(np.ones((n_users, 1), np.float32), pop), split, n_users, 10)
    for result in (memory, streamed):
        assert result.validation_ndcg >= popular + 0.1, (result.validation_ndcg, popular)
    assert abs(memory.validation_ndcg - streamed.validation_ndcg) <= 0.1
    assert len(streamed.history["loss"]) == 8 and streamed.history["loss"][-1] < streamed.history["loss"][0]


def test_run_train_streaming_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    from recbatch.artifacts import read_factors
    from recbatch.train.stage import run_train

    results = []
    for run in ("a", "b"):
        layout = write_prepared(tmp_path / run)
        config = tiny_config(tmp_path / run, "mf", epochs=2, input="stream", shuffle_buffer=64)
        manifest = run_train(config, layout)
        results.append((manifest, read_factors(layout.item_factors, "item_idx")))
    (m1, f1), (m2, f2) = results
    assert m1["input"] == "stream" and m1["train_positives"] == 60 * 8
    assert m1["history"] == m2["history"] and "refit_loss" in m1["history"]
    np.testing.assert_array_equal(f1, f2)
