"""Entry point shared by the spark-submit scripts in jobs/.

Under spark-submit the master, deploy mode and resources come from spark-submit; this
only parses recbatch's own arguments, builds the session through the one factory and
calls the same stage functions as the CLI. Errors exit with the CLI's codes.
"""

from __future__ import annotations

import argparse
import logging
import sys

from recbatch.config import load_config
from recbatch.errors import RecbatchError

STAGES = ("run", "prepare", "train", "evaluate", "score")


def main(stage: str, argv: list[str] | None = None) -> int:
    """Run one stage (or `run` for all) as a spark-submit application; returns the exit code."""
    parser = argparse.ArgumentParser(prog=f"spark-submit jobs/{'pipeline' if stage == 'run' else stage}.py")
    parser.add_argument("--config", "-c", help="TOML config file")
    parser.add_argument(
        "--set", "-s", action="append", default=[], dest="overrides", help="section.key=value"
    )
    parser.add_argument("--date", "-d", help="run date YYYY-MM-DD (default: today, UTC)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return _run(stage, args)
    except RecbatchError as exc:
        print(f"recbatch: error: {exc}", file=sys.stderr)
        return exc.exit_code


def _run(stage: str, args: argparse.Namespace) -> int:
    from recbatch import pipeline
    from recbatch.ops.run_id import parse_date, workdir_lock
    from recbatch.session import build_session

    config = load_config(args.config, args.overrides)
    date = parse_date(args.date)
    layout = pipeline.layout_for(config, date)
    needs_spark = stage in ("run", "prepare", "score") or (
        stage == "evaluate" and "als" in config.evaluate.baselines
    )
    spark = build_session(config.spark) if needs_spark else None
    try:
        if stage == "run":
            from recbatch.summary import render_run

            with workdir_lock(layout.lock_file, f"spark-submit run --date {date}"):
                result = pipeline.run_all(spark, config, date)
            print(render_run(spark, result))
        elif stage == "prepare":
            pipeline.prepare(spark, config, layout)
        elif stage == "train":
            pipeline.train(config, layout)
        elif stage == "evaluate":
            pipeline.evaluate(config, layout, spark)
        elif stage == "score":
            manifest = pipeline.score_and_publish(spark, config, layout)
            print(f"published {manifest['rows']} rows -> {manifest['path']}")
    finally:
        if spark is not None:
            spark.stop()
    return 0
