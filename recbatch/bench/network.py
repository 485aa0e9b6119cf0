"""`recbatch bench network`: exact NeuMF scoring against evaluating the Keras model on every pair.

One NeuMF Keras model (d=32 per branch, MLP tower 64-32-16) with seeded random weights, the
same seen items for every contender:
  recbatch        recbatch.score.engine.score_users(network=...) under Spark local[*], noop sink
  recbatch-1p     recbatch.core.network_topk.NetworkTopKScorer in this process (a user subset)
  keras-call      the issue's peer: model(...) on every (user, item) pair in batches, then
                  seen masked and top-K by numpy (a user subset)
  keras-predict   the same with model.predict
  keras-function  the same with model.__call__ compiled once by tf.function (the fastest naive form)
Every contender: one warm-up, then `runs` timed runs; the median is reported as pairs/s, so
contenders on different user subsets compare fairly. Exactness: the top-K item lists of
recbatch (Spark) and recbatch-1p for sampled users equal those of the Keras model's own
probabilities (keras-call), compared list for list.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recbatch.bench.harness import MIB, ScoringSpec, bench_session, median, save_results, size_of, timed
from recbatch.bench.spark_engine import engine_output, sampled_top, timed_engine, write_inputs
from recbatch.core.arrays import distinct

NAIVE = ("keras-call", "keras-predict", "keras-function")


@dataclass
class NetworkBenchSpec(ScoringSpec):
    """What one `recbatch bench network` run measures (`dim` per branch, `layers` the MLP tower)."""

    layers: tuple[int, ...] = (64, 32, 16)
    one_process_users: int = 4_096
    naive_users: int = 256
    naive_batch: int = 65_536


def make_model(spec: NetworkBenchSpec) -> Any:
    """A NeuMF Keras model with seeded random weights: logits spread over a few units, as trained ones are."""
    from recbatch.models.neumf import NeuMFModel

    model = NeuMFModel(spec.users, spec.items, spec.dim, spec.dim, spec.layers, name="neumf")
    model.build()
    rng = np.random.default_rng(spec.seed)
    weights = []
    for w in model.get_weights():
        scale = 0.5 if w.ndim == 2 and w.shape[0] in (spec.users, spec.items) else 1.0 / np.sqrt(w.shape[0])
        weights.append((rng.standard_normal(w.shape) * (scale if w.ndim == 2 else 0.1)).astype(np.float32))
    model.set_weights(weights)
    return model


def make_seen(spec: NetworkBenchSpec) -> tuple[np.ndarray, np.ndarray]:
    """Seeded seen pairs (rows, columns), sorted by user, duplicates dropped."""
    rng = np.random.default_rng(spec.seed + 2)
    rows = np.repeat(np.arange(spec.users, dtype=np.int64), min(spec.seen_per_user, spec.items - 1))
    cols = rng.integers(0, spec.items, size=len(rows), dtype=np.int64)
    pairs = distinct(rows * spec.items + cols)
    return pairs // spec.items, pairs % spec.items


def _seen_lists(rows: np.ndarray, cols: np.ndarray, users: np.ndarray) -> list[np.ndarray]:
    start, stop = np.searchsorted(rows, users), np.searchsorted(rows, users, side="right")
    return [cols[a:b] for a, b in zip(start, stop, strict=True)]


def naive_top_k(model: Any, kind: str, users: np.ndarray, n_items: int, seen, k: int, batch: int):
    """Top-k items of `users` by evaluating the Keras model on every (user, item) pair in batches."""
    import tensorflow as tf

    from recbatch.core.topk import mask_seen, top_k_rows

    if kind == "keras-function" and not hasattr(model, "_bench_call"):
        model._bench_call = tf.function(lambda inputs: model(inputs, training=False))
    pair_users = np.repeat(users.astype(np.int32), n_items)
    pair_items = np.tile(np.arange(n_items, dtype=np.int32), len(users))
    if kind == "keras-predict":
        inputs = {"user_idx": pair_users, "item_idx": pair_items}
        probs = model.predict(inputs, batch_size=batch, verbose=0)
    else:
        call = model._bench_call if kind == "keras-function" else model
        parts = []
        for s in range(0, len(pair_users), batch):
            inputs = {"user_idx": pair_users[s : s + batch], "item_idx": pair_items[s : s + batch]}
            parts.append(np.asarray(call(inputs)))
        probs = np.concatenate(parts)
    scores = np.asarray(probs, dtype=np.float32).reshape(len(users), n_items)
    mask_seen(scores, seen)
    return top_k_rows(scores, k)[0]


def _spark_engine(spark, spec, folder: Path, items, weights, plan, sample) -> dict[str, Any]:
    def scored():
        return engine_output(spark, spec, folder, items, plan, "sigmoid", weights)

    got = timed_engine(spark, scored, spec.runs)
    out = folder / "recbatch_out"
    scored().write.mode("overwrite").parquet(str(out))
    return {
        "seconds": got["seconds"],
        "pairs": spec.users * spec.items,
        "worker_peak_rss_bytes": got["worker_peak_rss_bytes"],
        "top": sampled_top(spark, out, sample),
    }


def _one_process(spec, factors, weights, seen_pairs, plan, sample) -> tuple[dict[str, Any], list[list[int]]]:
    """recbatch's network kernel in this process over the first `one_process_users` users, a
    block at a time as the plan says; its timing and the top-K lists of the `sample` users."""
    from recbatch.core.network_topk import NetworkTopKScorer

    (user_rows, item_rows), n = factors, min(spec.one_process_users, spec.users)
    seen = _seen_lists(*seen_pairs, np.arange(n))
    scorer = NetworkTopKScorer(item_rows, weights, spec.k, plan.item_tile)

    def one_process():
        return [
            scorer(user_rows[s : s + plan.user_block], seen[s : s + plan.user_block])[0]
            for s in range(0, n, plan.user_block)
        ]

    got = {"seconds": timed(one_process, spec.runs), "pairs": n * spec.items}
    top = np.concatenate(one_process())[sample]
    return got, [[int(i) for i in r if i >= 0] for r in top]


def run_bench(spark, spec: NetworkBenchSpec, folder: Path, contenders: list[str]) -> dict[str, Any]:
    """Run the contenders of `spec`; returns the results (the input of `format_report`)."""
    from recbatch.score.plan import make_plan

    model = make_model(spec)
    user_rows, item_rows = model.embedding_factors()
    weights = model.network_weights()
    rows, cols = make_seen(spec)
    write_inputs(spark, folder, user_rows, item_rows, rows, cols)
    cores = spark.sparkContext.defaultParallelism
    plan = make_plan(
        spec.users,
        spec.items,
        user_rows.shape[1],
        spec.k,
        cores,
        network_widths=spec.layers,
        user_input="files",
        seen_pairs=len(rows),
    )
    sample = np.arange(min(spec.naive_users, spec.users))  # the naive subset: every sampled user checked
    sample_seen = _seen_lists(rows, cols, sample)
    results: dict[str, Any] = {"spec": asdict(spec), "plan": plan.as_dict(), "cores": cores, "contenders": {}}
    found, tops = results["contenders"], {}
    for kind in NAIVE:
        if kind in contenders:
            run = lambda kind=kind: naive_top_k(  # noqa: E731
                model, kind, sample, spec.items, sample_seen, spec.k, spec.naive_batch
            )
            found[kind] = {"seconds": timed(run, spec.runs), "pairs": len(sample) * spec.items}
            tops[kind] = [[int(i) for i in r if i >= 0] for r in run()]
    if "recbatch-1p" in contenders:
        factors, seen = (user_rows, item_rows), (rows, cols)
        found["recbatch-1p"], tops["recbatch-1p"] = _one_process(spec, factors, weights, seen, plan, sample)
    if "recbatch" in contenders:
        found["recbatch"] = _spark_engine(spark, spec, folder, item_rows, weights, plan, sample)
        tops["recbatch"] = found["recbatch"].pop("top")
    reference = next((tops[kind] for kind in NAIVE if kind in tops), None)
    for name, top in tops.items():
        if reference is not None:
            found[name]["identical_to_keras"] = sum(a == b for a, b in zip(top, reference, strict=True))
            found[name]["sampled_users"] = len(reference)
    return results


def summarise(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Median pairs/s per contender and its ratio to the naive Keras forms."""
    rates = {n: g["pairs"] / median(g["seconds"]) for n, g in results["contenders"].items()}
    table = {}
    for name, rate in rates.items():
        row = {"pairs_per_s": rate, "median_s": median(results["contenders"][name]["seconds"])}
        for peer in NAIVE:
            if peer in rates:
                row[f"vs_{peer}"] = rate / rates[peer]
        table[name] = row
    return table


def format_report(results: dict[str, Any]) -> str:
    """A Markdown table of the results, with the plan, exactness and worker memory."""
    spec, plan, table = results["spec"], results["plan"], summarise(results)
    layers = "-".join(str(w) for w in spec["layers"])
    peers = [p for p in NAIVE if any(f"vs_{p}" in row for row in table.values())]
    lines = [
        f"network scoring benchmark: NeuMF, {spec['users']:,} users x {spec['items']:,} items, d={spec['dim']} "
        f"per branch, MLP {layers}, K={spec['k']}, {spec['seen_per_user']} seen items/user, "
        f"{results['cores']} cores, median of {spec['runs']} runs after a warm-up",
        "",
        "| contender | pairs | pairs/s | median s | " + " | ".join(f"vs {p}" for p in peers) + " |",
        "|---|---:|---:|---:|" + "---:|" * len(peers),
    ]
    for name, row in table.items():
        pairs = results["contenders"][name]["pairs"]
        cells = [f"{row[f'vs_{p}']:.1f}x" for p in peers]
        lines.append(
            f"| {name} | {pairs:,} | {row['pairs_per_s'] / 1e6:,.2f} M | {row['median_s']:.2f} | "
            + " | ".join(cells)
            + " |"
        )
    lines.append("")
    for name, got in results["contenders"].items():
        if "identical_to_keras" in got:
            lines.append(
                f"{name}: {got['identical_to_keras']}/{got['sampled_users']} sampled users' top-{spec['k']} "
                "identical to the Keras model's"
            )
    mine = results["contenders"].get("recbatch")
    if mine:
        lines.append(
            f"recbatch plan: block {plan['user_block']} users, tile {plan['item_tile']} items, "
            f"{plan['partitions']} partitions; peak Python worker RSS {mine['worker_peak_rss_bytes'] / MIB:,.0f} MiB "
            f"(plan expected ~{plan['worker_peak_bytes'] / MIB:,.0f} MiB)"
        )
    return "\n".join(lines) + "\n"


def bench_network(
    size: str, runs: int, workdir: Path, contenders: list[str] | None = None
) -> tuple[dict[str, Any], str]:
    """Build a local[*] session, run the benchmark at a named size, save JSON + Markdown; return both."""
    from recbatch.models.runtime import quiet_tensorflow

    users, items = size_of(size)
    quiet_tensorflow()
    spec = NetworkBenchSpec(users=users, items=items, runs=runs)
    if size == "tiny":
        spec.naive_users, spec.one_process_users = 64, 2_000
    spark = bench_session("recbatch-bench-network")
    folder = Path(workdir) / f"network-{size}"
    started = time.perf_counter()
    results = run_bench(spark, spec, folder, contenders or ["recbatch", "recbatch-1p", *NAIVE])
    results["bench_seconds"] = time.perf_counter() - started
    return results, save_results(folder, results, summarise, format_report)
