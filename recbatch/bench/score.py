"""`recbatch bench score`: exact top-K scoring against its peers, on identical factors, in one run.

Contenders (the same seeded random factors and seen items for all):
  recbatch     recbatch.score.engine.score_users under Spark local[*], output to the noop sink;
               tasks read their user ranges from the files (score.user_input = files, local default)
  recbatch-spark  the same with Spark shuffling users to the workers (user_input = spark, clusters)
  als          Spark MLlib ALSModel.recommendForAllUsers on the same factors (cached, repartitioned
               to the core count), output to the noop sink; ALS cannot exclude seen items, so it
               does less work than recbatch
  tf, tf-mask, numpy, recbatch-1p
               single Python process ceilings (recbatch.bench.score_ceiling), on a subset of users
  naive        crossJoin users x items + pandas_udf dot + left_anti seen + window rank, small size
Every contender: one warm-up, then `runs` timed runs; the median is reported as pairs/s.
Exactness: recbatch's Spark output for sampled users equals a numpy float32 brute force
(full sort by (-score, item index)). Rerun identity: recbatch scores twice to Parquet and the
two outputs are compared row for row and part file by part file (bytes). Peak RSS of Spark's Python workers is sampled from /proc.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recbatch.bench.worker_rss import WorkerRss

SIZES = {"tiny": (2_000, 500), "quick": (20_000, 5_000), "full": (100_000, 20_000)}
MIB = 1 << 20


@dataclass
class BenchSpec:
    """What one `recbatch bench score` run measures."""

    users: int
    items: int
    dim: int = 32
    k: int = 10
    seen_per_user: int = 20
    runs: int = 3
    seed: int = 0
    ceiling_users: int = 20_000
    naive_users: int = 2_000
    naive_items: int = 1_000
    sample_users: int = 256
    contenders: list[str] = field(
        default_factory=lambda: ["recbatch", "recbatch-spark", "als", "ceilings", "naive"]
    )


def make_data(spec: BenchSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seeded factors and seen pairs: users (U, d), items (I, d), seen rows and columns sorted by row."""
    rng = np.random.default_rng(spec.seed)
    scale = 1.0 / np.sqrt(spec.dim)
    users = (rng.standard_normal((spec.users, spec.dim), dtype=np.float32) * scale).astype(np.float32)
    items = (rng.standard_normal((spec.items, spec.dim), dtype=np.float32) * scale).astype(np.float32)
    per_user = min(spec.seen_per_user, spec.items - 1)
    rows = np.repeat(np.arange(spec.users, dtype=np.int64), per_user)
    cols = rng.integers(0, spec.items, size=len(rows), dtype=np.int64)
    pairs = np.unique(rows * spec.items + cols)  # sorted by row, duplicates dropped
    return users, items, pairs // spec.items, pairs % spec.items


def brute_force(users, items, rows, cols, sample, k) -> list[list[int]]:
    """Top-k item indices of the sampled users by a full sort of float32 scores, seen excluded."""
    scores = users[sample] @ items.T
    out = []
    for r, u in enumerate(sample):
        s = scores[r].copy()
        s[cols[rows == u]] = -np.inf
        order = np.lexsort((np.arange(len(s)), -s))
        out.append([int(i) for i in order[:k] if np.isfinite(s[i])])
    return out


def _timed(action, runs: int) -> list[float]:
    action()  # warm-up
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - started)
    return seconds


def _write_inputs(spark, folder: Path, users, items, rows, cols) -> None:
    import pandas as pd

    from recbatch.artifacts import write_factors

    folder.mkdir(parents=True, exist_ok=True)
    write_factors(folder / "users.parquet", "user_idx", users)  # as `recbatch train` writes them
    seen = pd.DataFrame({"user_idx": rows.astype(np.int32), "item_idx": cols.astype(np.int32)})
    # Laid out as `recbatch prepare` writes interactions: hash-partitioned by user, sorted within.
    (
        spark.createDataFrame(seen)
        .repartition(int(spark.conf.get("spark.sql.shuffle.partitions")), "user_idx")
        .sortWithinPartitions("user_idx", "item_idx")
        .write.mode("overwrite")
        .parquet(str(folder / "seen.parquet"))
    )
    for name, array in (("users", users), ("items", items), ("seen_rows", rows), ("seen_cols", cols)):
        np.save(folder / f"{name}.npy", array)


def bench_session(app_name: str):
    """A local[*] session for the benchmarks: every core, 4g driver, two shuffle partitions per core."""
    from recbatch.config import SparkConfig
    from recbatch.session import build_session

    return build_session(
        SparkConfig(
            master="local[*]",
            app_name=app_name,
            driver_memory="4g",
            shuffle_partitions=2 * (os.cpu_count() or 1),
            log_level="ERROR",
        )
    )


def engine_output(spark, spec, folder: Path, items, plan, activation: str, network=None):
    """The scoring engine's (lazy) output on the bench inputs under `folder`, as `plan.user_input` says."""
    from recbatch.score.engine import score_users
    from recbatch.score.user_files import UserFiles

    if plan.user_input == "files":
        users, seen = UserFiles(str(folder / "users.parquet"), str(folder / "seen.parquet"), spec.users), None
    else:
        users = spark.read.parquet(str(folder / "users.parquet"))
        seen = spark.read.parquet(str(folder / "seen.parquet"))
    return score_users(
        spark,
        users,
        items,
        seen,
        spec.k,
        plan.user_block,
        activation,
        plan.partitions,
        item_tile=plan.item_tile,
        item_transport=plan.item_transport,
        network=network,
    )


def _recbatch(spark, spec, folder: Path, items, plan, rss: WorkerRss, sample) -> dict[str, Any]:
    from pyspark.sql import functions as F

    def scored():
        return engine_output(spark, spec, folder, items, plan, "identity")

    rss.start_window()
    seconds = _timed(lambda: scored().write.format("noop").mode("overwrite").save(), spec.runs)
    peak = rss.stop_window()
    out = folder / "recbatch_out"
    for run in ("run1", "run2"):
        scored().write.mode("overwrite").parquet(str(out / run))
    got = (
        spark.read.parquet(str(out / "run1"))
        .filter(F.col("user_idx").isin([int(u) for u in sample]))
        .collect()
    )
    by_user: dict[int, list[tuple[int, int]]] = {int(u): [] for u in sample}
    for row in got:
        by_user[row.user_idx].append((row.rank, row.item_idx))
    return {
        "seconds": seconds,
        "worker_peak_rss_bytes": peak,
        "top": [[i for _, i in sorted(by_user[int(u)])] for u in sample],
        "rerun": rerun_identity(out / "run1", out / "run2"),
    }


def _part_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("part-*.parquet"), key=lambda p: p.name.split("-")[1])


def rerun_identity(first: Path, second: Path) -> dict[str, Any]:
    """Compare two Parquet outputs of the same scoring: rows (sorted) and part files byte for byte.

    Part files are paired by their task number: Spark's names differ per write job only in a
    random job id, so the bytes are compared, not the names.
    """
    import hashlib

    import pyarrow.parquet as pq

    tables = [
        pq.read_table(f).sort_by([("user_idx", "ascending"), ("rank", "ascending")]) for f in (first, second)
    ]
    parts = [_part_files(f) for f in (first, second)]
    digests = [[hashlib.sha256(p.read_bytes()).hexdigest() for p in files] for files in parts]
    return {
        "rows": tables[0].num_rows,
        "rows_identical": tables[0].equals(tables[1]),
        "part_files": len(parts[0]),
        "files_byte_identical": len(parts[0]) > 0 and digests[0] == digests[1],
    }


def _als(spark, spec, users, items) -> dict[str, Any]:
    from pyspark.ml.recommendation import ALSModel

    cores = spark.sparkContext.defaultParallelism

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
    # The estimator would set these defaults; ALS's own blockSize default (4096) is kept.
    jmodel = jmodel.setUserCol("user").setItemCol("item").setPredictionCol("prediction").setBlockSize(4096)
    model = ALSModel(jmodel)
    seconds = _timed(
        lambda: model.recommendForAllUsers(spec.k).write.format("noop").mode("overwrite").save(), spec.runs
    )
    user_df.unpersist(), item_df.unpersist()
    return {"seconds": seconds, "partitions": cores}


def _ceiling(kind: str, folder: Path, spec: BenchSpec, block: int, threads: int) -> dict[str, Any]:
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        env[key] = str(threads)
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    cmd = [sys.executable, "-m", "recbatch.bench.score_ceiling", kind, str(folder / "ceiling"), str(spec.k)]
    done = subprocess.run(
        [*cmd, str(block), str(spec.runs), str(threads)], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _naive(spark, spec, users, items, rows, cols) -> dict[str, Any]:
    import pandas as pd
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf

    nu, ni = min(spec.naive_users, len(users)), min(spec.naive_items, len(items))
    u = spark.createDataFrame([(i, users[i].tolist()) for i in range(nu)], "user_idx int, uf array<float>")
    it = spark.createDataFrame([(i, items[i].tolist()) for i in range(ni)], "item_idx int, itf array<float>")
    keep = (rows < nu) & (cols < ni)
    seen = spark.createDataFrame(
        list(zip(rows[keep].tolist(), cols[keep].tolist(), strict=True)), "user_idx int, item_idx int"
    )

    def dot_arrays(a, b):
        return pd.Series(np.einsum("ij,ij->i", np.stack(a.to_numpy()), np.stack(b.to_numpy())))

    # Real classes, not the postponed string annotations, tell Spark this is a Series -> Series UDF.
    dot_arrays.__annotations__ = {"a": pd.Series, "b": pd.Series, "return": pd.Series}
    dot = pandas_udf(dot_arrays, "float")

    window = Window.partitionBy("user_idx").orderBy(F.desc("score"), F.col("item_idx"))
    top = (
        u.crossJoin(it)
        .join(seen, on=["user_idx", "item_idx"], how="left_anti")
        .select("user_idx", "item_idx", dot("uf", "itf").alias("score"))
        .withColumn("rank", F.row_number().over(window))
        .filter(F.col("rank") <= spec.k)
    )
    seconds = _timed(lambda: top.write.format("noop").mode("overwrite").save(), spec.runs)
    return {"seconds": seconds, "pairs": nu * ni}


def run_bench(spark, spec: BenchSpec, folder: Path) -> dict[str, Any]:
    """Run every contender of `spec` and return the results (also the input of `format_report`)."""
    from recbatch.score.plan import make_plan

    users, items, rows, cols = make_data(spec)
    _write_inputs(spark, folder, users, items, rows, cols)
    cores = spark.sparkContext.defaultParallelism
    plan = make_plan(
        spec.users, spec.items, spec.dim, spec.k, cores, user_input="files", seen_pairs=len(rows)
    )
    rng = np.random.default_rng(spec.seed + 1)
    sample = np.sort(rng.choice(spec.users, size=min(spec.sample_users, spec.users), replace=False))
    pairs = spec.users * spec.items
    results: dict[str, Any] = {"spec": asdict(spec), "plan": plan.as_dict(), "cores": cores, "contenders": {}}
    found = results["contenders"]
    if "recbatch" in spec.contenders:
        rss = WorkerRss(spark)
        found["recbatch"] = {**_recbatch(spark, spec, folder, items, plan, rss, sample), "pairs": pairs}
        want = brute_force(users, items, rows, cols, sample, spec.k)
        found["recbatch"]["exact_users"] = sum(
            g == w for g, w in zip(found["recbatch"].pop("top"), want, strict=True)
        )
        found["recbatch"]["sampled_users"] = len(sample)
    if "recbatch-spark" in spec.contenders:  # the cluster path: Spark shuffles users to the workers
        spark_plan = make_plan(spec.users, spec.items, spec.dim, spec.k, cores, user_input="spark")

        def spark_input():
            scored = engine_output(spark, spec, folder, items, spark_plan, "identity")
            scored.write.format("noop").mode("overwrite").save()

        found["recbatch-spark"] = {"seconds": _timed(spark_input, spec.runs), "pairs": pairs}
    if "als" in spec.contenders:
        found["als"] = {**_als(spark, spec, users, items), "pairs": pairs}
    if "ceilings" in spec.contenders:
        n = min(spec.ceiling_users, spec.users)
        keep = rows < n
        _write_ceiling_inputs(folder / "ceiling", users[:n], items, rows[keep], cols[keep])
        want = brute_force(users, items, rows, cols, np.arange(min(64, n)), spec.k)
        for kind, block in (("tf", 4096), ("tf-mask", 4096), ("numpy", 4096), ("recbatch", plan.user_block)):
            got = _ceiling(kind, folder, spec, block, os.cpu_count() or 1)
            if "top" in got:
                got["exact_users"] = sum(g == w for g, w in zip(got.pop("top"), want, strict=True))
                got["sampled_users"] = len(want)
            found[f"{kind}-1p" if kind == "recbatch" else kind] = got
    if "naive" in spec.contenders:
        found["naive"] = _naive(spark, spec, users, items, rows, cols)
    return results


def _write_ceiling_inputs(folder: Path, users, items, rows, cols) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in (("users", users), ("items", items), ("seen_rows", rows), ("seen_cols", cols)):
        np.save(folder / f"{name}.npy", array)


def summarise(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Median pairs/s per contender and the ratios the issue's targets are stated in."""
    rates = {}
    for name, got in results["contenders"].items():
        if "seconds" in got:
            rates[name] = got["pairs"] / statistics.median(got["seconds"])
    ceiling = max((rates[n] for n in ("tf", "tf-mask", "numpy", "recbatch-1p") if n in rates), default=None)
    table = {}
    for name, rate in rates.items():
        row = {"pairs_per_s": rate, "median_s": statistics.median(results["contenders"][name]["seconds"])}
        if "als" in rates:
            row["vs_als"] = rate / rates["als"]
        if ceiling:
            row["vs_best_single_process"] = rate / ceiling
        if "tf" in rates:
            row["vs_tf"] = rate / rates["tf"]
        table[name] = row
    return table


def format_report(results: dict[str, Any]) -> str:
    """A Markdown table of the results, with the plan, exactness and worker memory."""
    spec, plan, table = results["spec"], results["plan"], summarise(results)
    lines = [
        f"scoring benchmark: {spec['users']:,} users x {spec['items']:,} items, d={spec['dim']}, K={spec['k']}, "
        f"{spec['seen_per_user']} seen items/user, {results['cores']} cores, median of {spec['runs']} runs "
        "after a warm-up",
        "",
        "| contender | pairs/s | median s | vs ALS | vs TF 1-process | vs best 1-process |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in table.items():
        cells = [
            f"{row.get(c, float('nan')):.2f}x" if c in row else "-"
            for c in ("vs_als", "vs_tf", "vs_best_single_process")
        ]
        lines.append(
            f"| {name} | {row['pairs_per_s'] / 1e6:,.1f} M | {row['median_s']:.2f} | "
            + " | ".join(cells)
            + " |"
        )
    for name, got in results["contenders"].items():
        if "error" in got:
            lines.append(f"| {name} | failed: {got['error'][:80]} | | | | |")
    lines.append("")
    mine = results["contenders"].get("recbatch")
    if mine:
        peak = mine["worker_peak_rss_bytes"]
        limit = plan["item_bytes"] + 256 * MIB
        lines.append(
            f"recbatch plan: block {plan['user_block']} users, tile {plan['item_tile']} items, "
            f"{plan['partitions']} partitions, users by {plan['user_input']}, items by {plan['item_transport']}; "
            f"peak Python worker RSS {peak / MIB:,.0f} MiB (target <= item factors + 256 MiB = "
            f"{limit / MIB:,.0f} MiB: {'met' if peak <= limit else 'NOT met'})"
        )
        lines.append(
            f"exact: {mine['exact_users']}/{mine['sampled_users']} sampled users identical to numpy brute force"
        )
        rerun = mine.get("rerun")
        if rerun:
            lines.append(
                f"rerun: scored twice to Parquet, {rerun['rows']:,} rows "
                f"{'identical' if rerun['rows_identical'] else 'DIFFERENT'}, {rerun['part_files']} part files "
                f"{'byte-identical' if rerun['files_byte_identical'] else 'NOT byte-identical'}"
            )
    for name in ("tf", "tf-mask", "numpy", "recbatch-1p"):
        got = results["contenders"].get(name, {})
        if "maxrss_bytes" in got:
            lines.append(
                f"{name}: process peak RSS {got['maxrss_bytes'] / MIB:,.0f} MiB, "
                f"{got.get('exact_users')}/{got.get('sampled_users')} users identical to brute force"
            )
    return "\n".join(lines) + "\n"


def bench_score(size: str, runs: int, workdir: Path, contenders: list[str] | None = None) -> tuple[dict, str]:
    """Build a local[*] session, run the benchmark at a named size, save JSON + Markdown; return both."""

    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    users, items = SIZES[size]
    spec = BenchSpec(users=users, items=items, runs=runs)
    if size == "tiny":
        spec.ceiling_users, spec.naive_users, spec.naive_items, spec.sample_users = 2_000, 200, 100, 64
    if contenders:
        spec.contenders = contenders
    spark = bench_session("recbatch-bench-score")
    folder = Path(workdir) / f"score-{size}"
    results = run_bench(spark, spec, folder)
    return results, save_results(folder, results, summarise, format_report)


def save_results(folder: Path, results: dict[str, Any], summarise, format_report) -> str:
    """Add the load average and summary to `results`, write results.json and report.md; return the report."""
    results["load_average"] = os.getloadavg()
    results["summary"] = summarise(results)
    report = format_report(results)
    (folder / "results.json").write_text(
        json.dumps(results, indent=2, default=float) + "\n", encoding="utf-8"
    )
    (folder / "report.md").write_text(report, encoding="utf-8")
    return report
