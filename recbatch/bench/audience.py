"""`recbatch bench audience`: each item's top-N users, against Spark ALS and user scoring, in one run.

Contenders (the same seeded random factors and seen pairs for all):
  recbatch        recbatch.score.audience.audience_lists under Spark local[*] (items as the
                  queries, the user matrix broadcast, each item's past users excluded), noop sink
  als             Spark MLlib ALSModel.recommendForAllItems(N) on the same factors: ALS's own
                  "users for items" batch; it cannot exclude past users, so it does less work
  recbatch-users  the user scoring of the same factors (every user's top K items, user_input
                  = spark as audiences use): the speed class audiences should share
One warm-up, then `runs` timed runs; medians as pairs/s (queries x candidates). Exactness:
sampled items' audiences equal a numpy float32 brute force (full sort, ties by user index).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recbatch.bench.harness import ScoringSpec, bench_session, median, save_results, timed, to_noop
from recbatch.bench.score import brute_force, make_data
from recbatch.errors import ConfigError

SIZES = {"tiny": (5_000, 1_000), "quick": (50_000, 10_000), "full": (100_000, 20_000)}  # users, items
CONTENDERS = ("recbatch", "als", "recbatch-users")


@dataclass
class AudienceSpec(ScoringSpec):
    """What one `recbatch bench audience` run measures: `audience` users per item, `k` items per user."""

    audience: int = 100
    sample_items: int = 128
    contenders: list[str] = field(default_factory=lambda: list(CONTENDERS))


def _frames(spark, folder: Path, data) -> tuple[Any, Any, Any]:
    """Item factors, user factors and the seen pairs as Parquet-backed DataFrames (as prepare/train write)."""
    import pandas as pd

    from recbatch.artifacts import write_factors

    users, items, rows, cols = data
    folder.mkdir(parents=True, exist_ok=True)
    write_factors(folder / "items.parquet", "item_idx", items)
    write_factors(folder / "users.parquet", "user_idx", users)
    seen = pd.DataFrame({"user_idx": rows.astype(np.int32), "item_idx": cols.astype(np.int32)})
    spark.createDataFrame(seen).write.mode("overwrite").parquet(str(folder / "seen.parquet"))
    return tuple(spark.read.parquet(str(folder / f"{n}.parquet")) for n in ("items", "users", "seen"))


def _recbatch(spark, spec: AudienceSpec, folder: Path, data, cores: int) -> dict[str, Any]:
    from pyspark.sql import functions as F

    from recbatch.score.audience import audience_lists
    from recbatch.score.plan import make_plan

    users, items, rows, cols = data
    item_df, _, seen = _frames(spark, folder / "inputs", data)
    plan = make_plan(spec.items, spec.users, spec.dim, spec.audience, cores, user_input="spark")

    def lists():
        return audience_lists(spark, item_df, users, seen, spec.audience, "identity", plan)

    got: dict[str, Any] = {"seconds": timed(lambda: to_noop(lists()), spec.runs)}
    sample = np.sort(
        np.random.default_rng(spec.seed + 1).choice(spec.items, spec.sample_items, replace=False)
    )
    written = lists().filter(F.col("item_idx").isin([int(i) for i in sample])).collect()
    by_item: dict[int, list[tuple[int, int]]] = {int(i): [] for i in sample}
    for row in written:
        by_item[row.item_idx].append((row.rank, row.user_idx))
    # The same brute force as user scoring, roles swapped: items query, users are the candidates.
    want = brute_force(items, users, cols, rows, sample, spec.audience)
    got["exact_items"] = sum(
        [u for _, u in sorted(by_item[int(i)])] == w for i, w in zip(sample, want, strict=True)
    )
    got["sampled_items"] = len(sample)
    got["plan"] = plan.as_dict()
    got["pairs"] = spec.items * spec.users
    return got


def _als(spark, spec: AudienceSpec, data, cores: int) -> dict[str, Any]:
    from pyspark.ml.recommendation import ALSModel

    users, items, _, _ = data

    def factors(matrix):
        rows = [(i, matrix[i].tolist()) for i in range(len(matrix))]
        return spark.createDataFrame(rows, "id int, features array<float>").repartition(cores).cache()

    user_df, item_df = factors(users), factors(items)
    user_df.count(), item_df.count()
    jvm = spark.sparkContext._jvm
    # ALSModel's constructor is package-private in Scala, public on the JVM: the model gets our factors.
    jmodel = jvm.org.apache.spark.ml.recommendation.ALSModel(
        "als-bench", spec.dim, user_df._jdf, item_df._jdf
    )
    model = ALSModel(
        jmodel.setUserCol("user").setItemCol("item").setPredictionCol("prediction").setBlockSize(4096)
    )
    seconds = timed(lambda: to_noop(model.recommendForAllItems(spec.audience)), spec.runs)
    user_df.unpersist(), item_df.unpersist()
    return {"seconds": seconds, "pairs": spec.items * spec.users}


def _users(spark, spec: AudienceSpec, folder: Path, data, cores: int) -> dict[str, Any]:
    from recbatch.score.engine import score_users
    from recbatch.score.plan import make_plan

    _, items, _, _ = data
    _, user_df, seen = _frames(spark, folder / "inputs", data)
    plan = make_plan(spec.users, spec.items, spec.dim, spec.k, cores, user_input="spark")

    def scored():
        return score_users(
            spark, user_df, items, seen, spec.k, plan.user_block, "identity", plan.partitions,
            item_tile=plan.item_tile, item_transport=plan.item_transport,
        )  # fmt: skip

    return {"seconds": timed(lambda: to_noop(scored()), spec.runs), "pairs": spec.users * spec.items}


def run_bench(spark, spec: AudienceSpec, folder: Path) -> dict[str, Any]:
    """Every contender of `spec` on one seeded data set; the results (also the report's input)."""
    data = make_data(spec)
    cores = spark.sparkContext.defaultParallelism
    found: dict[str, Any] = {}
    if "recbatch" in spec.contenders:
        found["recbatch"] = _recbatch(spark, spec, folder, data, cores)
    if "als" in spec.contenders:
        found["als"] = _als(spark, spec, data, cores)
    if "recbatch-users" in spec.contenders:
        found["recbatch-users"] = _users(spark, spec, folder, data, cores)
    for row in found.values():
        row["pairs_per_s"] = row["pairs"] / median(row["seconds"])
    return {"spec": asdict(spec), "cores": cores, "contenders": found}


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """pairs/s of each contender and the audiences' ratios to ALS and to user scoring."""
    found = results["contenders"]
    out: dict[str, Any] = {name: {"pairs_per_s": row["pairs_per_s"]} for name, row in found.items()}
    for peer in ("als", "recbatch-users"):
        if "recbatch" in found and peer in found:
            out[f"recbatch_vs_{peer}"] = found["recbatch"]["pairs_per_s"] / found[peer]["pairs_per_s"]
    return out


def format_report(results: dict[str, Any]) -> str:
    """results.json as a short Markdown report."""
    spec, found, summary = results["spec"], results["contenders"], results["summary"]
    lines = [
        f"# bench audience: {spec['items']:,} items x {spec['users']:,} users, d{spec['dim']}, "
        f"top {spec['audience']} users per item, {results['cores']} cores",
        "",
        f"load average {', '.join(f'{x:.1f}' for x in results['load_average'])}; medians of {spec['runs']} runs",
        "",
        "| contender | median s | pairs/s |",
        "|---|---|---|",
    ]
    for name, row in found.items():
        lines.append(f"| {name} | {median(row['seconds']):.2f} | {row['pairs_per_s'] / 1e6:,.1f} M |")
    for peer, label in (("als", "ALS recommendForAllItems"), ("recbatch-users", "user scoring (K10)")):
        if f"recbatch_vs_{peer}" in summary:
            lines.append(f"\naudiences / {label}: **{summary[f'recbatch_vs_{peer}']:.2f}x**")
    rec = found.get("recbatch")
    if rec:
        lines.append(
            f"\nexact: {rec['exact_items']}/{rec['sampled_items']} sampled items equal numpy brute force"
        )
    return "\n".join(lines) + "\n"


def bench_audience(
    size: str, runs: int, workdir: Path, contenders: list[str] | None = None
) -> tuple[dict, str]:
    """Build a local[*] session, run at a named size, save results.json + report.md; return both."""
    if size not in SIZES:
        raise ConfigError(f"--size {size!r} is not a benchmark size; choose one of {', '.join(SIZES)}")
    users, items = SIZES[size]
    spec = AudienceSpec(users=users, items=items, runs=runs)
    if contenders:
        unknown = sorted(set(contenders) - set(CONTENDERS))
        if unknown:
            raise ConfigError(f"--only {', '.join(unknown)}: unknown; choose from {', '.join(CONTENDERS)}")
        spec.contenders = list(contenders)
    spark = bench_session("recbatch-bench-audience")
    folder = Path(workdir) / f"audience-{size}"
    results = run_bench(spark, spec, folder)
    return results, save_results(folder, results, summarise, format_report)
