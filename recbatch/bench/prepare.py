"""`recbatch bench prepare`: time `recbatch prepare` beside the same cleaning in DuckDB SQL.

Both run as child processes on the same synthetic CSV files. Wall time is measured around
each child; peak memory is the largest sum of resident set sizes over the child's whole
process tree (the Python driver and its JVM, or the DuckDB process), sampled from /proc.
DuckDB applies the same value rules, exact-duplicate merge, aggregation per (user, item),
min_user_interactions filter, dense indexing and leave-last-1-out split, and writes
interactions Parquet: a single-machine reference, not a feature-for-feature copy (it does
no per-line quoting/field checks beyond DuckDB's own CSV reader).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from recbatch.bench.harness import measure_command, median, synthetic_events, write_bench_config, write_json

RUN_DATE = "2026-01-02"
SAMPLE_SECONDS = 0.2
KEYS = ("rows_read", "rows_quarantined", "rows_clean", "interactions", "test_rows")


DUCKDB_SQL = """
CREATE TEMP TABLE ev AS
WITH raw AS (
  SELECT * FROM read_csv('{glob}', header = true, all_varchar = true, null_padding = true,
                         ignore_errors = true, filename = true)
), typed AS (
  SELECT *, TRY_CAST(trim(rating) AS DOUBLE) AS r, TRY_CAST(trim("timestamp") AS DOUBLE) AS t FROM raw
)
SELECT trim(user_id) AS user_id, trim(item_id) AS item_id, trim(event) AS event, r AS rating,
       CAST(floor(t) AS BIGINT) AS ts,
       CASE trim(event) WHEN 'view' THEN 1.0 WHEN 'click' THEN 2.0 WHEN 'purchase' THEN 5.0 END AS weight,
       CASE
         WHEN user_id IS NULL OR trim(user_id) = '' THEN 'missing_user'
         WHEN item_id IS NULL OR trim(item_id) = '' THEN 'missing_item'
         WHEN rating IS NOT NULL AND trim(rating) <> '' AND (r IS NULL OR isnan(r) OR isinf(r)) THEN 'bad_rating'
         WHEN r < 0 OR r > 5 THEN 'rating_out_of_range'
         WHEN "timestamp" IS NULL OR trim("timestamp") = '' THEN 'missing_timestamp'
         WHEN t IS NULL OR isnan(t) OR abs(t) >= 1e13 THEN 'bad_timestamp'
         WHEN t > {day_end} THEN 'future_timestamp'
         WHEN t < {floor} THEN 'timestamp_too_old'
         WHEN event IS NULL OR trim(event) NOT IN ('view', 'click', 'purchase') THEN 'unknown_event'
       END AS reason
FROM typed;
COPY (SELECT * FROM ev WHERE reason IS NOT NULL) TO '{out}/quarantine.parquet' (FORMAT parquet);
COPY (
  WITH d AS (
    SELECT user_id, item_id, event, weight, rating, ts, count(*) AS copies FROM ev WHERE reason IS NULL
    GROUP BY ALL
  ), p AS (
    SELECT user_id, item_id, count(*) AS count, sum(weight) AS weight, avg(rating) AS rating,
           max(ts) AS last_ts FROM d GROUP BY ALL
  ), k AS (
    SELECT * FROM p QUALIFY count(*) OVER (PARTITION BY user_id) >= 2
  ), ix AS (
    SELECT CAST(dense_rank() OVER (ORDER BY user_id) - 1 AS INT) AS user_idx,
           CAST(dense_rank() OVER (ORDER BY item_id) - 1 AS INT) AS item_idx, count, weight, rating, last_ts
    FROM k
  )
  SELECT *, row_number() OVER (PARTITION BY user_idx ORDER BY last_ts DESC, item_idx DESC) <= 1
            AND count(*) OVER (PARTITION BY user_idx) > 1 AS is_test
  FROM ix
) TO '{out}/interactions.parquet' (FORMAT parquet);
"""


def duckdb_prepare(glob: str, out: str, threads: int) -> dict[str, Any]:
    """The DuckDB reference: clean, merge, aggregate, filter, index and split; returns its counts."""
    import calendar
    import datetime as dt

    import duckdb

    day_end = calendar.timegm(dt.date.fromisoformat(RUN_DATE).timetuple()) + 86_399
    floor = calendar.timegm(dt.date(1990, 1, 1).timetuple())
    Path(out).mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    con.execute(DUCKDB_SQL.format(glob=glob, day_end=day_end, floor=floor, out=out))
    rows_read = con.execute("SELECT count(*) FROM ev").fetchone()[0]
    quarantined = con.execute("SELECT count(*) FROM ev WHERE reason IS NOT NULL").fetchone()[0]
    inter = con.execute(
        f"SELECT count(*), sum(count), sum(is_test::INT) FROM '{out}/interactions.parquet'"
    ).fetchone()
    return {
        "rows_read": rows_read,
        "rows_quarantined": quarantined,
        "interactions": inter[0],
        "rows_clean": int(inter[1]),
        "test_rows": int(inter[2]),
    }


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    walls = [r["wall_s"] for r in runs]
    return {
        "wall_s": walls,
        "median_wall_s": round(median(walls), 2),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
    }


def _events(events: int, workdir: Path, files: int, seed: int, reuse_data: bool) -> tuple[Path, dict, float]:
    """The synthetic CSV files (reused when the last run made the same ones); their folder, the
    generator's summary and the seconds it took."""
    start = time.perf_counter()
    data, written = synthetic_events(events, workdir, events // 40, events // 400, files, seed, reuse_data)
    return data, written, round(time.perf_counter() - start, 2)


def _commands(workdir: Path, data: Path, threads: int) -> dict[str, list[str]]:
    """The two child commands: `recbatch prepare` on a config written here, and the DuckDB reference."""
    config = write_bench_config(workdir, data, threads, '\n[evaluate]\nbaselines = ["popularity"]\n')
    return {
        "spark": [sys.executable, "-m", "recbatch", "prepare", "--config", str(config), "--date", RUN_DATE],
        "duckdb": [
            sys.executable,
            "-c",
            "import json, sys; from recbatch.bench.prepare import duckdb_prepare; "
            "print('RESULT ' + json.dumps(duckdb_prepare(sys.argv[1], sys.argv[2], int(sys.argv[3]))))",
            str(data / "*.csv"),
            str(workdir / "duckdb"),
            str(threads),
        ],
    }


def _measured_runs(commands: dict[str, list[str]], workdir: Path, repeats: int) -> dict[str, list[dict]]:
    """Each command `repeats` times, the engines taking turns; a failed run stops the benchmark."""
    names = {"spark": "recbatch prepare", "duckdb": "duckdb reference"}
    runs: dict[str, list[dict]] = {"spark": [], "duckdb": []}
    for _ in range(repeats):
        for engine, cmd in commands.items():
            log = workdir / f"{engine}.log"
            runs[engine].append(measure_command(cmd, log, SAMPLE_SECONDS))
            if runs[engine][-1]["rc"] != 0:
                raise RuntimeError(f"{names[engine]} failed (rc {runs[engine][-1]['rc']}), see {log}")
    return runs


def run_bench(
    events: int,
    workdir: Path,
    repeats: int = 1,
    files: int = 8,
    threads: int = 2,
    seed: int = 7,
    reuse_data: bool = True,
) -> dict[str, Any]:
    """Generate `events` synthetic events under `workdir`, then time both engines `repeats` times each."""
    workdir.mkdir(parents=True, exist_ok=True)
    data, written, gen_s = _events(events, workdir, files, seed, reuse_data)
    runs = _measured_runs(_commands(workdir, data, threads), workdir, repeats)
    report_path = workdir / "work" / "runs" / f"dt={RUN_DATE}" / "prepared" / "report.json"
    report = json.loads(report_path.read_text(encoding="utf-8"))
    duck_line = next(ln for ln in runs["duckdb"][-1]["tail"].splitlines() if ln.startswith("RESULT "))
    spark_s, duck_s = _summary(runs["spark"]), _summary(runs["duckdb"])
    return {
        "events": events,
        "rows_written": written["rows"],
        "files": files,
        "cores": threads,
        "generate_s": gen_s,
        "spark": {**spark_s, "timings": report.get("timings"), **{k: report[k] for k in KEYS}},
        "duckdb": {**duck_s, **json.loads(duck_line.removeprefix("RESULT "))},
        "ratio_wall_spark_over_duckdb": round(spark_s["median_wall_s"] / duck_s["median_wall_s"], 2),
        "ratio_rss_spark_over_duckdb": round(spark_s["peak_rss_mib"] / max(duck_s["peak_rss_mib"], 1), 2),
    }


def format_result(result: dict[str, Any]) -> str:
    """A side-by-side table of the two engines."""
    rows = [
        ("", "recbatch (Spark)", "DuckDB"),
        ("median wall s", result["spark"]["median_wall_s"], result["duckdb"]["median_wall_s"]),
        ("peak RSS MiB", result["spark"]["peak_rss_mib"], result["duckdb"]["peak_rss_mib"]),
        ("rows read", result["spark"]["rows_read"], result["duckdb"]["rows_read"]),
        ("quarantined", result["spark"]["rows_quarantined"], result["duckdb"]["rows_quarantined"]),
        ("interactions", result["spark"]["interactions"], result["duckdb"]["interactions"]),
        ("test rows", result["spark"]["test_rows"], result["duckdb"]["test_rows"]),
    ]
    lines = [
        f"prepare benchmark: {result['events']:,} events, {result['files']} files, {result['cores']} cores"
    ]
    lines += [f"{a:<16}{b!s:>18}{c!s:>14}" for a, b, c in rows]
    lines.append(
        f"Spark / DuckDB: wall x{result['ratio_wall_spark_over_duckdb']}, "
        f"peak memory x{result['ratio_rss_spark_over_duckdb']}"
    )
    return "\n".join(lines)


def bench_prepare(events: int, workdir: Path, runs: int, files: int, cores: int) -> str:
    """Run the benchmark, write results.json under `workdir`; return the table and where the JSON went."""
    result = run_bench(events, workdir, repeats=runs, files=files, threads=cores)
    write_json(workdir / "results.json", result)
    return format_result(result) + f"\nresults -> {workdir / 'results.json'}"
