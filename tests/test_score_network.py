"""Exact scoring of network models (mlp / neumf): the numpy kernel, the Keras model, and `recbatch score`."""

from __future__ import annotations

import numpy as np
import pytest

from recbatch.core.network import NetworkWeights, network_logits
from recbatch.core.network_topk import NetworkTopKScorer

K = 5


def _weights(
    rng, gmf_dim: int, mlp_dim: int, layers: tuple[int, ...], dyadic: bool = False
) -> NetworkWeights:
    """Random network weights as NetworkWeights; `dyadic`: values in {-1, -0.5, 0, 0.5, 1}.

    Dyadic weights and factors make every float32 sum exact whatever the order of operations,
    so equal logits are really equal (ties) and results must match the reference bit for bit.
    """

    def draw(*shape):
        if dyadic:
            return (rng.integers(-2, 3, size=shape) / 2).astype(np.float32)
        return (rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32)

    weights = {"gmf_dim": np.array(gmf_dim), "n_layers": np.array(len(layers))}
    width = 2 * mlp_dim
    for n, units in enumerate(layers):
        weights[f"w{n}"], weights[f"b{n}"] = draw(width, units), draw(units)
        width = units
    weights["out_w"], weights["out_b"] = draw(gmf_dim + width), draw(1)
    return NetworkWeights.from_arrays(weights)


def _rows(rng, n: int, dim: int, dyadic: bool = False) -> np.ndarray:
    if dyadic:
        return (rng.integers(-2, 3, size=(n, dim)) / 2).astype(np.float32)
    return rng.standard_normal((n, dim)).astype(np.float32)


def _reference(logits: np.ndarray, k: int, seen, allowed=None) -> tuple[list[list[int]], list[list[float]]]:
    """Top-k by a full lexsort of each row's finite logits (-logit, then item index)."""
    idx, val = [], []
    for r, row in enumerate(logits):
        row = row.astype(np.float32).copy()
        if seen[r] is not None:
            row[seen[r]] = -np.inf
        if allowed is not None:
            row[np.setdiff1d(np.arange(len(row)), allowed)] = -np.inf
        order = [i for i in np.lexsort((np.arange(len(row)), -row)) if np.isfinite(row[i])][:k]
        idx.append([int(i) for i in order])
        val.append([float(row[i]) for i in order])
    return idx, val


def _unpad(idx, val) -> tuple[list[list[int]], list[list[float]]]:
    """Rows of (idx, val) without their -1 / -inf padding, as plain lists."""
    keep = idx >= 0
    return [idx[r][keep[r]].tolist() for r in range(len(idx))], [
        val[r][keep[r]].tolist() for r in range(len(val))
    ]


@pytest.mark.parametrize(
    ("gmf_dim", "layers"),
    [(3, (8, 4, 2)), (0, (6, 3)), (2, (5,)), (2, ())],
    ids=["neumf", "mlp", "one", "none"],
)
def test_scorer_equals_brute_force_over_tiles_chunks_and_seen(gmf_dim, layers):
    rng = np.random.default_rng(7)
    mlp_dim, n_users, n_items = 4, 23, 61
    weights = _weights(rng, gmf_dim, mlp_dim, layers)
    users, items = _rows(rng, n_users, gmf_dim + mlp_dim), _rows(rng, n_items, gmf_dim + mlp_dim)
    seen = [rng.choice(n_items, size=rng.integers(0, 12), replace=False) for _ in range(n_users)]
    seen[3] = np.setdiff1d(np.arange(n_items), [5, 9])  # only 2 unseen: padded with -1 / -inf
    seen[4] = None
    want_idx, want_val = _reference(network_logits(weights, users, items), K, seen)
    for tile, chunk in ((None, 4096), (7, 5), (16, 50), (61, 3)):
        idx, val = NetworkTopKScorer(items, weights, K, item_tile=tile, chunk_pairs=chunk)(users, seen)
        assert idx.shape == val.shape == (n_users, K)
        got_idx, got_val = _unpad(idx, val)
        assert got_idx == want_idx, (tile, chunk)
        np.testing.assert_allclose(np.concatenate(got_val), np.concatenate(want_val), rtol=2e-5, atol=2e-5)
        assert list(idx[3, 2:]) == [-1] * (K - 2) and np.all(np.isneginf(val[3, 2:]))


def test_ties_break_by_lower_item_index_and_match_the_reference_bit_for_bit():
    rng = np.random.default_rng(3)
    weights = _weights(rng, 2, 3, (4, 2), dyadic=True)
    base = _rows(rng, 6, 5, dyadic=True)
    items = base[[0, 1, 0, 2, 1, 0, 3, 4, 5, 0, 2, 1, 5, 5, 3]]  # duplicate rows: equal logits
    users = _rows(rng, 9, 5, dyadic=True)
    seen = [None, np.array([0]), np.array([2, 9]), None, None, None, None, None, np.array([14])]
    logits = network_logits(weights, users, items)
    want_idx, want_val = _reference(logits, 8, seen)
    assert any(len(set(v)) < len(v) for v in want_val), "the data must hold ties"
    for tile, chunk in ((None, 4096), (4, 3)):
        idx, val = NetworkTopKScorer(items, weights, 8, item_tile=tile, chunk_pairs=chunk)(users, seen)
        assert _unpad(idx, val) == (want_idx, want_val)


def test_allowed_subset_keeps_catalogue_indices():
    from recbatch.core.network_topk import worker_scorer

    rng = np.random.default_rng(11)
    weights = _weights(rng, 2, 3, (6, 3))
    users, items = _rows(rng, 10, 5), _rows(rng, 40, 5)
    allowed = np.array([1, 4, 5, 8, 13, 21, 22, 30, 39])
    seen = [np.array([4, 7]), None, np.array([39, 0]), *[None] * 7]
    want_idx, want_val = _reference(network_logits(weights, users, items), K, seen, allowed)
    subset = items[allowed]
    scorer = worker_scorer(subset, weights, K, 4, allowed)
    got_idx, got_val = _unpad(*scorer(users, seen))
    assert got_idx == want_idx
    np.testing.assert_allclose(np.concatenate(got_val), np.concatenate(want_val), rtol=2e-5, atol=2e-5)
    # The same job's objects (a later task in the same worker) reuse the projected item side.
    assert worker_scorer(subset, weights, K, 4, allowed.copy()) is scorer
    assert worker_scorer(subset.copy(), weights, K, 4, allowed) is not scorer


def test_mismatched_network_is_refused():
    rng = np.random.default_rng(1)
    weights = _weights(rng, 2, 3, (4,))
    with pytest.raises(ValueError, match="do not fit factor rows of length 6"):
        NetworkTopKScorer(_rows(rng, 5, 6), weights, K)
    with pytest.raises(ValueError, match="lack b0"):
        NetworkWeights.from_arrays({k: v for k, v in weights.to_arrays().items() if k != "b0"})


@pytest.mark.parametrize("gmf_dim", [3, 0], ids=["neumf", "mlp"])
def test_numpy_network_equals_the_keras_model(gmf_dim):
    import keras

    from recbatch.models.neumf import NeuMFModel

    rng = np.random.default_rng(5)
    n_users, n_items = 17, 29
    model = NeuMFModel(n_users, n_items, gmf_dim, 4, (8, 4))
    model.build()
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.5 for w in model.get_weights()])
    user_rows, item_rows = model.embedding_factors()
    weights = model.network_weights()
    u, i = np.meshgrid(np.arange(n_users), np.arange(n_items), indexing="ij")
    inputs = {"user_idx": u.ravel().astype(np.int32), "item_idx": i.ravel().astype(np.int32)}
    keras_logits = keras.ops.convert_to_numpy(model.logit(inputs)).reshape(n_users, n_items)
    np.testing.assert_allclose(
        network_logits(weights, user_rows, item_rows), keras_logits, rtol=1e-5, atol=1e-5
    )
    probs = keras.ops.convert_to_numpy(model(inputs)).reshape(n_users, n_items)
    np.testing.assert_allclose(1 / (1 + np.exp(-keras_logits)), probs, rtol=1e-5, atol=1e-6)
    # The kernel's top-K is the Keras model's own ranking.
    idx, _ = NetworkTopKScorer(item_rows, weights, K, item_tile=10, chunk_pairs=16)(user_rows)
    want, _ = _reference(keras_logits, K, [None] * n_users)
    assert [list(r) for r in idx] == want


def test_spark_engine_scores_the_network_with_blocks_tiles_subsets_and_file_transport(spark):
    from recbatch.score.engine import score_users

    rng = np.random.default_rng(21)
    weights = _weights(rng, 2, 3, (6, 3))
    users, items = _rows(rng, 30, 5), _rows(rng, 50, 5)
    seen = {u: rng.choice(50, size=6, replace=False) for u in range(0, 30, 2)}
    user_df = spark.createDataFrame(
        [(u, users[u].tolist()) for u in range(30)], "user_idx int, factors array<float>"
    )
    seen_df = spark.createDataFrame(
        [(u, int(i)) for u, s in seen.items() for i in s], "user_idx int, item_idx int"
    )
    allowed = np.arange(3, 50, 2)
    logits = network_logits(weights, users, items)
    for transport, subset in (("broadcast", None), ("file", allowed)):
        df = score_users(
            spark, user_df, items, seen_df, K, 4, "sigmoid", 3,
            item_tile=7, item_transport=transport, allowed_items=subset, network=weights,
        )  # fmt: skip
        rows = sorted((r.user_idx, r.rank, r.item_idx, r.score) for r in df.collect())
        want_idx, want_val = _reference(logits, K, [seen.get(u) for u in range(30)], subset)
        assert [[i for u2, _, i, _ in rows if u2 == u] for u in range(30)] == want_idx, transport
        sigmoid = 1 / (1 + np.exp(-np.concatenate(want_val)))
        np.testing.assert_allclose([s for *_, s in rows], sigmoid, rtol=1e-5)
    with pytest.raises(ValueError, match="do not fit factor rows"):
        score_users(spark, user_df, items[:, :4], None, K, 4, "sigmoid", network=weights)


def test_plan_counts_the_network_buffers():
    from recbatch.core.network_topk import CHUNK_PAIRS as NETWORK_CHUNK_PAIRS
    from recbatch.score.plan import make_plan

    dot = make_plan(20_000, 5_000, 64, 10, 2)
    net = make_plan(20_000, 5_000, 64, 10, 2, network_widths=(64, 32, 16))
    assert net.network_item_bytes == 5_000 * (112 + 1 + 64) * 4
    assert net.network_chunk_bytes == NETWORK_CHUNK_PAIRS * 113 * 4
    assert net.worker_peak_bytes >= dot.worker_peak_bytes + net.network_item_bytes + net.network_chunk_bytes
    text = net.describe()
    assert "hidden layers 64-32-16" in text and "pairs per pass" in text and "network" not in dot.describe()


def _config_text(tmp, model: str) -> str:
    return f"""
[spark]
master = "local[2]"
shuffle_partitions = 2

[paths]
workdir = "{tmp / "work"}"

[train]
model = "{model}"
embedding_dim = 4
mlp_layers = [8, 4]
epochs = 2
batch_size = 64
negatives = 2
validation = false
seed = 3

[score]
k = {K}
user_block = 16
item_tile = 16
partitions = 2
"""


@pytest.mark.parametrize("model", ["neumf", "mlp"])
def test_recbatch_score_publishes_the_network_ranking(spark, tmp_path, model):
    from typer.testing import CliRunner

    from recbatch.artifacts import load_network, read_factors
    from recbatch.cli import app
    from tests.builders import clustered_data, write_prepared, write_split

    tr_u, tr_i, te_u, te_i, n_users, n_items = clustered_data()
    layout = write_prepared(tmp_path / "work", (tr_u, tr_i, te_u, te_i, n_users, n_items))
    write_split(layout.interactions, np.concatenate([tr_u, te_u]), np.concatenate([tr_i, te_i]))
    config = tmp_path / "net.toml"
    config.write_text(_config_text(tmp_path, model))
    runner = CliRunner()
    for stage in ("train", "score"):
        result = runner.invoke(app, [stage, "--config", str(config), "--date", layout.date])
        assert result.exit_code == 0, f"{stage}: {result.output}"
    plan = runner.invoke(app, ["score", "--dry-run", "--config", str(config), "--date", layout.date])
    assert plan.exit_code == 0 and "network         hidden layers 8-4" in plan.output, plan.output

    import pyarrow.parquet as pq

    factors = pq.read_table(layout.user_factors).sort_by("user_idx").column("factors").to_pylist()
    logits = network_logits(
        load_network(layout.model_dir / "network.npz"),
        np.array(factors, np.float32),
        read_factors(layout.item_factors, "item_idx"),
    )
    seen = [np.concatenate([tr_i[tr_u == u], te_i[te_u == u]]) for u in range(n_users)]
    want_idx, want_val = _reference(logits, K, seen)
    table = layout.published_root / "recommendations" / f"dt={layout.date}"
    rows = spark.read.parquet(str(table)).collect()
    assert {r.model for r in rows} == {model} and len(rows) == K * n_users
    got: dict[int, list] = {}
    for r in sorted(rows, key=lambda r: (r.user_id, r.rank)):
        got.setdefault(int(r.user_id[1:]), []).append((int(r.item_id[1:]), r.score))
    assert [[i for i, _ in got[u]] for u in range(n_users)] == want_idx
    sigmoid = 1 / (1 + np.exp(-np.concatenate(want_val)))
    np.testing.assert_allclose([s for u in range(n_users) for _, s in got[u]], sigmoid, rtol=1e-5)


def test_bench_network_at_toy_size_agrees_with_keras(spark, tmp_path):
    from recbatch.bench.network import NetworkBenchSpec, format_report, run_bench

    spec = NetworkBenchSpec(
        users=60, items=40, dim=4, layers=(8, 4), runs=1, naive_users=16, one_process_users=60
    )
    results = run_bench(spark, spec, tmp_path, ["recbatch-1p", "keras-call"])
    assert results["contenders"]["recbatch-1p"]["identical_to_keras"] == 16
    report = format_report(results)
    assert "| recbatch-1p | 2,400 |" in report and "vs keras-call" in report
