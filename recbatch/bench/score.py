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
The peers live in recbatch.bench.score_peers, the summary and report in recbatch.bench.score_report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recbatch.bench.harness import ScoringSpec, bench_session, save_results, size_of, timed, to_noop
from recbatch.bench.score_peers import als, ceilings, naive
from recbatch.bench.score_report import format_report, summarise
from recbatch.bench.spark_engine import engine_output, sampled_top, timed_engine, write_inputs
from recbatch.core.arrays import distinct


@dataclass
class BenchSpec(ScoringSpec):
    """What one `recbatch bench score` run measures."""

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
    pairs = distinct(rows * spec.items + cols)  # sorted by row, duplicates dropped
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


def _part_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("part-*.parquet"), key=lambda p: p.name.split("-")[1])


def rerun_identity(first: Path, second: Path) -> dict[str, Any]:
    """Compare two Parquet outputs of the same scoring: rows (sorted) and part files byte for byte.

    Part files are paired by their task number: Spark's names differ per write job only in a
    random job id, so the bytes are compared, not the names.
    """
    import pyarrow.parquet as pq

    from recbatch.core.files import sha256_file

    tables = [
        pq.read_table(f).sort_by([("user_idx", "ascending"), ("rank", "ascending")]) for f in (first, second)
    ]
    parts = [_part_files(f) for f in (first, second)]
    digests = [[sha256_file(p) for p in files] for files in parts]
    return {
        "rows": tables[0].num_rows,
        "rows_identical": tables[0].equals(tables[1]),
        "part_files": len(parts[0]),
        "files_byte_identical": len(parts[0]) > 0 and digests[0] == digests[1],
    }


def _recbatch(spark, spec, folder: Path, data, plan, sample) -> dict[str, Any]:
    """recbatch timed into the noop sink, then scored twice to Parquet: exactness and rerun identity."""
    users, items, rows, cols = data

    def scored():
        return engine_output(spark, spec, folder, items, plan, "identity")

    got = timed_engine(spark, scored, spec.runs)
    out = folder / "recbatch_out"
    for run in ("run1", "run2"):
        scored().write.mode("overwrite").parquet(str(out / run))
    top = sampled_top(spark, out / "run1", sample)
    got["rerun"] = rerun_identity(out / "run1", out / "run2")
    got["pairs"] = spec.users * spec.items
    want = brute_force(users, items, rows, cols, sample, spec.k)
    got["exact_users"] = sum(g == w for g, w in zip(top, want, strict=True))
    got["sampled_users"] = len(sample)
    return got


def _recbatch_spark(spark, spec, folder: Path, items, cores: int) -> dict[str, Any]:
    """The cluster path: the same engine with Spark shuffling users to the workers."""
    from recbatch.score.plan import make_plan

    plan = make_plan(spec.users, spec.items, spec.dim, spec.k, cores, user_input="spark")
    scored = lambda: engine_output(spark, spec, folder, items, plan, "identity")  # noqa: E731
    return {"seconds": timed(lambda: to_noop(scored()), spec.runs), "pairs": spec.users * spec.items}


def run_bench(spark, spec: BenchSpec, folder: Path) -> dict[str, Any]:
    """Run every contender of `spec` and return the results (also the input of `format_report`)."""
    from recbatch.score.plan import make_plan

    data = make_data(spec)
    users, items, rows, cols = data
    write_inputs(spark, folder, users, items, rows, cols)
    cores = spark.sparkContext.defaultParallelism
    plan = make_plan(
        spec.users, spec.items, spec.dim, spec.k, cores, user_input="files", seen_pairs=len(rows)
    )
    rng = np.random.default_rng(spec.seed + 1)
    sample = np.sort(rng.choice(spec.users, size=min(spec.sample_users, spec.users), replace=False))
    results: dict[str, Any] = {"spec": asdict(spec), "plan": plan.as_dict(), "cores": cores, "contenders": {}}
    found = results["contenders"]
    if "recbatch" in spec.contenders:
        found["recbatch"] = _recbatch(spark, spec, folder, data, plan, sample)
    if "recbatch-spark" in spec.contenders:
        found["recbatch-spark"] = _recbatch_spark(spark, spec, folder, items, cores)
    if "als" in spec.contenders:
        found["als"] = {**als(spark, spec, users, items), "pairs": spec.users * spec.items}
    if "ceilings" in spec.contenders:
        first = np.arange(min(64, spec.ceiling_users, spec.users))  # the users a ceiling reports
        want = brute_force(users, items, rows, cols, first, spec.k)
        found.update(ceilings(spec, folder, data, plan.user_block, want))
    if "naive" in spec.contenders:
        found["naive"] = naive(spark, spec, users, items, rows, cols)
    return results


def bench_score(size: str, runs: int, workdir: Path, contenders: list[str] | None = None) -> tuple[dict, str]:
    """Build a local[*] session, run the benchmark at a named size, save JSON + Markdown; return both."""
    users, items = size_of(size)
    spec = BenchSpec(users=users, items=items, runs=runs)
    if size == "tiny":
        spec.ceiling_users, spec.naive_users, spec.naive_items, spec.sample_users = 2_000, 200, 100, 64
    if contenders:
        spec.contenders = contenders
    spark = bench_session("recbatch-bench-score")
    folder = Path(workdir) / f"score-{size}"
    results = run_bench(spark, spec, folder)
    return results, save_results(folder, results, summarise, format_report)
