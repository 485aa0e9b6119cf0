"""`recbatch bench similar`: similar items for every item against Spark ALS, on identical factors.

Contenders (the same seeded random item factors, L2-normalised so dot = cosine):
  recbatch  recbatch.score.similar.similar_items under Spark local[*] (items as the users'
            side, each item masked as its own seen item; tasks read their item ranges from
            the files), output to the noop sink
  als       Spark MLlib ALSModel.recommendForAllItems with the same matrix as both user and
            item factors (cached, one partition per core), noop sink: the nearest Spark batch
            of "top K rows of a factor matrix for every item"; it cannot exclude the item
            itself, so it does slightly less work. At the full size (10^10 pairs: minutes a run
            for ALS on 2 cores, an hour under load) it ranks a seeded sample of `als_items` (10,000) query items against
            every item (recommendForItemSubset): the same kernel per pair, so pairs/s compare
One warm-up, then `runs` timed runs; medians as pairs/s (query items x items). Exactness: sampled
items' lists equal a numpy float32 brute force (full sort, ties by index). Rerun identity:
two writes of recbatch's output to Parquet compared row for row and part file by bytes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recbatch.bench.harness import bench_session, median, save_results, timed, to_noop
from recbatch.errors import ConfigError

SIZES = {"tiny": 2_000, "quick": 20_000, "full": 100_000}  # items
ALS_ITEMS = {"full": 10_000}  # ALS's query items at the full size: 10x fewer pairs, same kernel


@dataclass
class SimilarSpec:
    """What one `recbatch bench similar` run measures."""

    items: int
    dim: int = 32
    k: int = 20
    runs: int = 3
    seed: int = 0
    sample_items: int = 256
    als_items: int | None = None  # query items ALS ranks (None: every item)
    contenders: list[str] = field(default_factory=lambda: ["recbatch", "als"])


def make_factors(spec: SimilarSpec) -> np.ndarray:
    """Seeded unit-norm item factors (items, dim), float32."""
    from recbatch.score.similar import item_vectors

    rng = np.random.default_rng(spec.seed)
    return item_vectors(rng.standard_normal((spec.items, spec.dim), dtype=np.float32), "cosine")


def _recbatch_output(spark, spec: SimilarSpec, vectors: np.ndarray, inputs, plan):
    from recbatch.score.similar import similar_items

    return similar_items(spark, vectors, inputs, spec.k, plan)


def _part_digests(folder: Path) -> list[str]:
    from recbatch.core.files import sha256_file

    parts = sorted(folder.glob("part-*.parquet"), key=lambda p: p.name.split("-")[1])
    return [sha256_file(p) for p in parts]


def _rerun(spark, spec, vectors, inputs, plan, out: Path) -> dict[str, Any]:
    """Write the output twice; compare the sorted rows and the part files' bytes."""
    import pyarrow.parquet as pq

    for run in ("run1", "run2"):
        _recbatch_output(spark, spec, vectors, inputs, plan).write.mode("overwrite").parquet(str(out / run))
    order = [("item_idx", "ascending"), ("rank", "ascending")]
    tables = [pq.read_table(out / run).sort_by(order) for run in ("run1", "run2")]
    digests = [_part_digests(out / run) for run in ("run1", "run2")]
    return {
        "rows": tables[0].num_rows,
        "rows_identical": tables[0].equals(tables[1]),
        "part_files": len(digests[0]),
        "files_byte_identical": bool(digests[0]) and digests[0] == digests[1],
    }


def _exact(spark, spec, vectors, out: Path) -> dict[str, Any]:
    """Sampled items' lists in the written output against numpy brute force."""
    from pyspark.sql import functions as F

    from recbatch.score.similar import brute_force_similar

    rng = np.random.default_rng(spec.seed + 1)
    sample = np.sort(rng.choice(spec.items, size=min(spec.sample_items, spec.items), replace=False))
    rows = spark.read.parquet(str(out)).filter(F.col("item_idx").isin([int(i) for i in sample])).collect()
    got: dict[int, list[tuple[int, int]]] = {int(i): [] for i in sample}
    for row in rows:
        got[row.item_idx].append((row.rank, row.similar_item_idx))
    want = brute_force_similar(vectors, "dot", sample, spec.k)
    lists = [[j for _, j in sorted(got[int(i)])] for i in sample]
    return {
        "exact_items": sum(g == w for g, w in zip(lists, want, strict=True)),
        "sampled_items": len(sample),
    }


def _recbatch(spark, spec: SimilarSpec, vectors: np.ndarray, folder: Path) -> dict[str, Any]:
    from recbatch.bench.spark_engine import timed_engine
    from recbatch.score.plan import make_plan
    from recbatch.score.similar import write_inputs
    from recbatch.storage import location

    cores = spark.sparkContext.defaultParallelism
    plan = make_plan(
        spec.items, spec.items, spec.dim, spec.k, cores, user_input="files", seen_pairs=spec.items
    )
    inputs = write_inputs(location(folder / "inputs"), vectors, None)
    got = timed_engine(spark, lambda: _recbatch_output(spark, spec, vectors, inputs, plan), spec.runs)
    got["rerun"] = _rerun(spark, spec, vectors, inputs, plan, folder / "out")
    got.update(_exact(spark, spec, vectors, folder / "out" / "run1"))
    got["plan"] = plan.as_dict()
    return got


def _als(spark, spec: SimilarSpec, vectors: np.ndarray) -> dict[str, Any]:
    """ALSModel.recommendForAllItems with our matrix as both factor tables, noop sink."""
    from pyspark.ml.recommendation import ALSModel

    cores = spark.sparkContext.defaultParallelism
    rows = [(i, vectors[i].tolist()) for i in range(len(vectors))]
    users = spark.createDataFrame(rows, "id int, features array<float>").repartition(cores).cache()
    items = spark.createDataFrame(rows, "id int, features array<float>").repartition(cores).cache()
    users.count(), items.count()
    jvm = spark.sparkContext._jvm
    # ALSModel's constructor is package-private in Scala, public on the JVM: the model gets our factors.
    jmodel = jvm.org.apache.spark.ml.recommendation.ALSModel("als-bench", spec.dim, users._jdf, items._jdf)
    jmodel = jmodel.setUserCol("user").setItemCol("item").setPredictionCol("prediction").setBlockSize(4096)
    model = ALSModel(jmodel)
    if spec.als_items is None or spec.als_items >= spec.items:
        seconds = timed(lambda: to_noop(model.recommendForAllItems(spec.k)), spec.runs)
        queries = spec.items
    else:
        picked = np.random.default_rng(spec.seed + 1).choice(spec.items, spec.als_items, replace=False)
        subset = spark.createDataFrame([(int(i),) for i in np.sort(picked)], "item int").cache()
        subset.count()
        seconds = timed(lambda: to_noop(model.recommendForItemSubset(subset, spec.k)), spec.runs)
        queries = spec.als_items
        subset.unpersist()
    users.unpersist(), items.unpersist()
    return {"seconds": seconds, "partitions": cores, "query_items": queries}


def run_bench(spark, spec: SimilarSpec, folder: Path) -> dict[str, Any]:
    """Run every contender of `spec`; the results (also the report's input)."""
    vectors = make_factors(spec)
    folder.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "spec": asdict(spec),
        "cores": spark.sparkContext.defaultParallelism,
        "contenders": {},
    }
    found = results["contenders"]
    if "recbatch" in spec.contenders:
        found["recbatch"] = _recbatch(spark, spec, vectors, folder)
    if "als" in spec.contenders:
        found["als"] = _als(spark, spec, vectors)
    for row in found.values():
        row["pairs"] = row.get("query_items", spec.items) * spec.items
        row["pairs_per_s"] = row["pairs"] / median(row["seconds"])
    return results


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """The headline figures: pairs/s of each contender and recbatch's ratio to ALS."""
    found = results["contenders"]
    out: dict[str, Any] = {name: {"pairs_per_s": row["pairs_per_s"]} for name, row in found.items()}
    if "recbatch" in found and "als" in found:
        out["recbatch_vs_als"] = found["recbatch"]["pairs_per_s"] / found["als"]["pairs_per_s"]
    return out


def format_report(results: dict[str, Any]) -> str:
    """results.json as a short Markdown report."""
    spec, found, summary = results["spec"], results["contenders"], results["summary"]
    lines = [
        f"# bench similar: {spec['items']:,} items x d{spec['dim']} x K{spec['k']}, {results['cores']} cores",
        "",
        f"load average {', '.join(f'{x:.1f}' for x in results['load_average'])}; medians of {spec['runs']} runs",
        "",
        "| contender | query items | median s | pairs/s |",
        "|---|---|---|---|",
    ]
    for name, row in found.items():
        queries = row.get("query_items", spec["items"])
        lines.append(
            f"| {name} | {queries:,} | {median(row['seconds']):.2f} | {row['pairs_per_s'] / 1e6:,.1f} M |"
        )
    if "recbatch_vs_als" in summary:
        sampled = found["als"].get("query_items", spec["items"]) < spec["items"]
        peer = "recommendForItemSubset, pairs/s" if sampled else "recommendForAllItems"
        lines += ["", f"recbatch / ALS {peer}: **{summary['recbatch_vs_als']:.2f}x**"]
    rec = found.get("recbatch")
    if rec:
        rerun = rec["rerun"]
        lines += [
            f"exact: {rec['exact_items']}/{rec['sampled_items']} sampled items equal numpy brute force",
            f"rerun: rows identical {rerun['rows_identical']}, {rerun['part_files']} part files "
            f"byte-identical {rerun['files_byte_identical']}",
            f"peak Python worker RSS {rec['worker_peak_rss_bytes'] / (1 << 20):,.0f} MiB",
        ]
    return "\n".join(lines) + "\n"


def bench_similar(
    size: str, runs: int, workdir: Path, contenders: list[str] | None = None
) -> tuple[dict, str]:
    """Build a local[*] session, run at a named size, save results.json + report.md; return both."""
    if size not in SIZES:
        raise ConfigError(f"--size {size!r} is not a benchmark size; choose one of {', '.join(SIZES)}")
    spec = SimilarSpec(items=SIZES[size], runs=runs, als_items=ALS_ITEMS.get(size))
    if size == "tiny":
        spec.sample_items = 64
    if contenders:
        unknown = sorted(set(contenders) - {"recbatch", "als"})
        if unknown:
            raise ConfigError(f"--only {', '.join(unknown)}: unknown; choose from recbatch, als")
        spec.contenders = list(contenders)
    spark = bench_session("recbatch-bench-similar")
    folder = Path(workdir) / f"similar-{size}"
    results = run_bench(spark, spec, folder)
    return results, save_results(folder, results, summarise, format_report)
