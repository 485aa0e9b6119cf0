"""The `recbatch` command line: one command per stage, plus `run` for all of them.

This is the only place errors become exit codes (see recbatch.errors): every command is
wrapped by `handles_errors`, which prints one line (`--verbose` adds the traceback). The
spark-submit scripts in jobs/ call `main` with their stage's command, so a failure exits
with the same code and message whichever way recbatch was launched. Spark and TensorFlow
are imported only inside commands, so `recbatch --help` is instant.

Longer than the ~300-line guide on purpose: each command is a thin typer signature (its
options are the user-facing contract) that hands over to pipeline, a stage or bench;
keeping them in one module keeps one error mapping and one `--help` tree.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from recbatch.config import Config, load_config
from recbatch.errors import EXIT_CODES, SPARK_ERROR_NAMES, RecbatchError, describe_spark_failure

app = typer.Typer(
    name="recbatch",
    help="Batch top-K recommendations on Apache Spark: synth, prepare, train, evaluate, score, run.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
bench_app = typer.Typer(help="Benchmarks: recbatch against its peers, measured in the same run.")
app.add_typer(bench_app, name="bench")

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML config file (see conf/default.toml).")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override one key, e.g. --set train.epochs=5 (repeatable)."),
]
DateOpt = Annotated[
    str | None, typer.Option("--date", "-d", help="Run date YYYY-MM-DD (default: today, UTC).")
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging and full tracebacks.")]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="Publish even when the quality gate fails (recorded in the manifest).")
]
# Shared by the scoring benchmarks (bench score, bench network).
BenchSizeOpt = Annotated[str, typer.Option(help="tiny (2K x 500), quick (20K x 5K) or full (100K x 20K).")]
BenchRunsOpt = Annotated[int, typer.Option(min=1, help="Timed runs per contender, after one warm-up.")]
BenchOutOpt = Annotated[Path, typer.Option(help="Folder for inputs, results.json and report.md.")]

F = TypeVar("F", bound=Callable[..., Any])


class _CurrentStderr(logging.StreamHandler):
    """A log handler that writes to whatever sys.stderr is when a record is emitted.

    A plain StreamHandler keeps the stream it was built with; when a caller swaps
    sys.stderr per command (typer's CliRunner, a notebook), later records would go to a
    closed stream and print "Logging error" tracebacks instead.
    """

    @property
    def stream(self) -> Any:  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        handlers=[_CurrentStderr()],
        force=True,
    )
    for noisy in ("py4j", "matplotlib", "absl", "tensorflow", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _fail(code: int, message: str, verbose: bool) -> None:
    if verbose:
        traceback.print_exc()
    typer.echo(f"recbatch: error: {message}", err=True)
    raise typer.Exit(code)


def _full_text(exc: BaseException) -> str:
    """An exception's message with the Java side's causes (Py4J keeps them on java_exception)."""
    parts = [str(exc)]
    java = getattr(exc, "java_exception", None)
    while java is not None and len(parts) < 20:
        try:
            parts.append(f"Caused by: {java.toString()}")
            java = java.getCause()
        except Exception:  # the gateway may be gone; what we have is enough
            break
    return "\n".join(parts)


def handles_errors(command: F) -> F:
    """Turn recbatch, Spark and unexpected errors into one line and a documented exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        verbose = bool(kwargs.get("verbose"))
        _setup_logging(verbose)
        try:
            return command(*args, **kwargs)
        except typer.Exit:
            raise
        except RecbatchError as exc:
            _fail(exc.exit_code, str(exc), verbose)
        except KeyboardInterrupt:
            _fail(130, "interrupted", verbose)
        except Exception as exc:
            name = type(exc).__name__
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else name
            if name in SPARK_ERROR_NAMES:
                _fail(4, describe_spark_failure(_full_text(exc)), verbose)
            _fail(1, f"unexpected {name}: {first[:500]} (a bug: rerun with --verbose and report it)", verbose)
        return None

    return wrapper  # type: ignore[return-value]


def _load(config: Path | None, overrides: list[str] | None) -> Config:
    return load_config(config, overrides or [])


def _spark(cfg: Config):
    from recbatch.io.export_jdbc import with_driver_jar
    from recbatch.io.input_files import local_input_bytes
    from recbatch.session import build_session, catalog_dir

    # A JDBC export's driver jar must be on spark.jars when the session starts.
    spark_config = cfg.spark.model_copy(update={"conf": with_driver_jar(cfg.spark.conf, cfg.export)})
    return build_session(spark_config, catalog_dir(cfg), local_input_bytes(cfg.input.path))


@contextlib.contextmanager
def _locked(cfg: Config, layout: Any, what: str) -> Iterator[None]:
    """Hold the work directory's lock while a stage writes into it (exit 5 when another run has it).

    Every command that writes under the workdir takes it, not only `run`: a `train` during
    a cron `score` could otherwise mix two models' factors, and two `score`s both publish.
    """
    from recbatch.ops.lock import workdir_lock

    stale = cfg.paths.lock_stale_minutes * 60
    with workdir_lock(layout.lock_dir, f"{what} --date {layout.date}", stale_after=stale):
        yield


def _layout(cfg: Config, date: str | None):
    from recbatch.ops.run_id import parse_date
    from recbatch.pipeline import layout_for

    return layout_for(cfg, parse_date(date))


@app.command()
@handles_errors
def synth(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    users: Annotated[int | None, typer.Option(help="Distinct users (synth.users).")] = None,
    items: Annotated[int | None, typer.Option(help="Distinct items (synth.items).")] = None,
    events: Annotated[int | None, typer.Option(help="Event rows (synth.events).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (synth.seed).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output file or folder (synth.out).")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Write a deterministic synthetic interaction log (long-tail items, taste clusters, some bad rows)."""
    flags = {"users": users, "items": items, "events": events, "seed": seed, "out": out}
    overrides = list(set_ or []) + [f"synth.{k}={_toml(v)}" for k, v in flags.items() if v is not None]
    cfg = _load(config, overrides)
    from recbatch.synth import generate

    summary = generate(cfg.synth)
    typer.echo(
        f"wrote {summary['rows']:,} rows ({summary.get('malformed', 0):,} deliberately malformed) "
        f"to {summary['path']}"
    )


@app.command("jvm-cache")
@handles_errors
def jvm_cache(
    rebuild: Annotated[bool, typer.Option(help="Build it again even where one exists.")] = False,
    remove: Annotated[bool, typer.Option(help="Delete the cached archives instead.")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Build the class-data archive embedded Spark sessions start from (seconds faster per command).

    Once per machine and Java/Spark version (about a minute): a no-op where it exists.
    """
    from recbatch.errors import PipelineError
    from recbatch.ops import jvm_cache as cache

    if remove:
        removed = cache.remove_archives()
        typer.echo(f"removed {len(removed)} class archive(s) from {cache.cache_dir() / 'jvm'}")
        return
    existing = cache.usable_archive()
    if existing and not rebuild:
        typer.echo(f"class archive {existing} exists (--rebuild to build it again)")
        return
    try:
        path, seconds = cache.build_archive()
    except RuntimeError as exc:
        raise PipelineError(f"jvm-cache: {exc}") from None
    size = path.stat().st_size / 2**20
    typer.echo(
        f"class archive {path} ({size:.0f} MiB) built in {seconds:.0f} s; embedded sessions start from it"
    )


def _toml(value: Any) -> str:
    return f'"{value}"' if isinstance(value, (str, Path)) else str(value)


@app.command()
@handles_errors
def prepare(
    config: ConfigOpt = None, set_: SetOpt = None, date: DateOpt = None, verbose: VerboseOpt = False
) -> None:
    """Clean, deduplicate, aggregate, index and split the raw log into Parquet."""
    from recbatch import pipeline
    from recbatch.io.readers import check_input_path
    from recbatch.summary import render_report

    cfg = _load(config, set_)
    layout = _layout(cfg, date)
    with _locked(cfg, layout, "prepare"):
        check_input_path(cfg.input)  # before a JVM starts for it
        report = pipeline.prepare(_spark(cfg), cfg, layout)
    typer.echo(render_report(report, layout))


@app.command()
@handles_errors
def train(
    config: ConfigOpt = None, set_: SetOpt = None, date: DateOpt = None, verbose: VerboseOpt = False
) -> None:
    """Fit the configured Keras model on the prepared train split."""
    from recbatch import pipeline

    cfg = _load(config, set_)
    layout = _layout(cfg, date)
    with _locked(cfg, layout, "train"):
        manifest = pipeline.train(cfg, layout)
    fit = "every interaction" if manifest.get("fit_data") == "all" else "the train split"
    typer.echo(
        f"trained {manifest['model']} on {fit} in {manifest.get('train_seconds', 0):.1f}s -> {layout.model_dir}"
    )


@app.command()
@handles_errors
def evaluate(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    date: DateOpt = None,
    protocol: Annotated[
        str | None, typer.Option(help="full (rank all unseen items) or sampled (evaluate.protocol).")
    ] = None,
    negatives: Annotated[
        int | None, typer.Option(help="Sampled protocol: negatives per test item (evaluate.negatives).")
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Rank held-out items for the model(s) and the baselines; print and save metrics, report.md, plots."""
    from recbatch import pipeline
    from recbatch.evaluate.table import format_metrics_table
    from recbatch.summary import rules_lines

    flags = {"protocol": protocol, "negatives": negatives}
    overrides = list(set_ or []) + [f"evaluate.{k}={_toml(v)}" for k, v in flags.items() if v is not None]
    cfg = _load(config, overrides)
    layout = _layout(cfg, date)
    with _locked(cfg, layout, "evaluate"):
        spark = _spark(cfg) if "als" in cfg.evaluate.baselines else None
        metrics = pipeline.evaluate(cfg, layout, spark)
    typer.echo(format_metrics_table(metrics))
    for line in rules_lines(metrics.get("rules") or {}):
        typer.echo(line)
    if cfg.evaluate.protocol == "sampled":
        typer.echo("warning: sampled metrics can reorder models (Krichene & Rendle, KDD 2020); see report.md")
    typer.echo(f"metrics -> {layout.metrics}")


@app.command()
@handles_errors
def tune(
    config: ConfigOpt = None, set_: SetOpt = None, date: DateOpt = None, verbose: VerboseOpt = False
) -> None:
    """Search train.search on the validation split (never test); print the trials and the best config."""
    from recbatch.train.tune import format_best, run_tune

    cfg = _load(config, set_)
    layout = _layout(cfg, date)
    with _locked(cfg, layout, "tune"):
        result = run_tune(cfg, layout)
    typer.echo(format_best(result))
    typer.echo(f"trials -> {layout.eval_dir / 'tune.json'}")


@app.command()
@handles_errors
def score(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    date: DateOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the scoring plan and expected memory; score nothing.")
    ] = False,
    force: ForceOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Score every user against every unseen item and publish the top-K table atomically (gated)."""
    from recbatch import pipeline

    cfg = _load(config, set_)
    layout = _layout(cfg, date)
    if dry_run:
        from recbatch.score.plan import plan_from_artifacts

        typer.echo(plan_from_artifacts(cfg, layout).describe())
        return
    with _locked(cfg, layout, "score"):
        manifest = pipeline.score_and_publish(_spark(cfg), cfg, layout, force=force)
    typer.echo(f"published {manifest['rows']:,} rows for {manifest['users']:,} users -> {manifest['path']}")
    from recbatch.summary import source_lines

    for line in source_lines(manifest):
        typer.echo(line)


@app.command()
@handles_errors
def similar(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    date: DateOpt = None,
    k: Annotated[int | None, typer.Option(min=1, help="Similar items per item (similar.k).")] = None,
    metric: Annotated[str | None, typer.Option(help="cosine or dot (similar.metric).")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Top-K similar items of every item by the model's item factors, published as its own table."""
    from recbatch import pipeline

    flags = {"k": k, "metric": metric}
    overrides = list(set_ or []) + [f"similar.{n}={_toml(v)}" for n, v in flags.items() if v is not None]
    cfg = _load(config, overrides)
    layout = _layout(cfg, date)
    with _locked(cfg, layout, "similar"):
        manifest = pipeline.similar_and_publish(_spark(cfg), cfg, layout)
    typer.echo(
        f"published {manifest['rows']:,} similar items for {manifest['keys']:,} items "
        f"({manifest['model']}, {manifest['metric']}) -> {manifest['path']}"
    )
    report = manifest.get("report") or {}
    for name, row in report.get("contenders", {}).items():
        hits = ", ".join(f"HR@{k_} {row[f'hr@{k_}']:.4f}" for k_ in report["ks"])
        typer.echo(f"  {name}: {hits} over {row['users']:,} test users")
    if "skipped" in report:
        typer.echo(f"  hit rate: {report['skipped']}")


@app.command()
@handles_errors
def audience(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    date: DateOpt = None,
    k: Annotated[int | None, typer.Option(min=1, help="Users per item (audience.k).")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Top-N users of every item by the model's score (never one who interacted), published as a table."""
    from recbatch import pipeline

    cfg = _load(config, list(set_ or []) + ([f"audience.k={k}"] if k is not None else []))
    layout = _layout(cfg, date)
    with _locked(cfg, layout, "audience"):
        manifest = pipeline.audience_and_publish(_spark(cfg), cfg, layout)
    typer.echo(
        f"published {manifest['rows']:,} audience rows for {manifest['keys']:,} items "
        f"({manifest['model']}) -> {manifest['path']}"
    )


@app.command()
@handles_errors
def export(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    date: DateOpt = None,
    format_: Annotated[
        list[str] | None,
        typer.Option(
            "--format", "-f", help="csv, jsonl, sqlite, jdbc or redis (repeatable; default: export.formats)."
        ),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Export (or re-export) the published table of a date: CSV, JSON lines, SQLite, a JDBC table, Redis."""
    import json

    from recbatch import pipeline
    from recbatch.errors import ConfigError
    from recbatch.io.export_step import FORMATS
    from recbatch.summary import export_lines

    cfg = _load(config, set_)
    formats = format_ or cfg.export.formats
    if not formats:
        raise ConfigError(f"nothing to export: pass --format {'|'.join(FORMATS)} or set export.formats")
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ConfigError(f"--format {', '.join(unknown)}: unknown; choose from {', '.join(FORMATS)}")
    if format_:  # validated as export.formats, so [export.jdbc] / [export.redis] are checked for them
        cfg = _load(config, [*(set_ or []), f"export.formats={json.dumps(format_)}"])
    layout = _layout(cfg, date)
    with _locked(cfg, layout, "export"):
        exported = pipeline.export(_spark(cfg), cfg, layout, formats)
    for line in export_lines(exported):
        typer.echo(line)


@app.command()
@handles_errors
def run(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    date: DateOpt = None,
    from_: Annotated[str | None, typer.Option("--from", help="Backfill: first date YYYY-MM-DD.")] = None,
    to: Annotated[
        str | None, typer.Option("--to", help="Backfill: last date YYYY-MM-DD (inclusive).")
    ] = None,
    force: ForceOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Run every stage for one date (or each date of --from/--to in order): idempotent, locked, gated."""
    from recbatch import cron
    from recbatch.errors import ConfigError
    from recbatch.io.readers import check_input_path
    from recbatch.ops.run_id import parse_date
    from recbatch.summary import render_run

    cfg = _load(config, set_)
    if (from_ is None) != (to is None) or (from_ is not None and date is not None):
        raise ConfigError("a backfill takes both --from and --to (and no --date); a single run takes --date")
    dates = cron.date_range(parse_date(from_), parse_date(to)) if from_ else [parse_date(date)]
    layout = _layout(cfg, dates[0])
    with _locked(cfg, layout, "run" if len(dates) == 1 else f"backfill to {dates[-1]}"):
        check_input_path(cfg.input)  # before a JVM starts for it
        spark = _spark(cfg)
        if len(dates) == 1:
            typer.echo(render_run(spark, cron.run_recorded(spark, cfg, dates[0], force)))
            return
        done = cron.backfill(spark, cfg, dates, force)
        typer.echo(done.summary())
        if done.error is not None:
            raise done.error


@app.command()
@handles_errors
def backtest(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    date: DateOpt = None,
    holdout: Annotated[
        int,
        typer.Option(min=1, help="Interactions hidden per user: the latest by time (seeded random without)."),
    ] = 1,
    negatives: Annotated[
        int | None,
        typer.Option(min=1, help="NCF protocol: rank each hidden item among this many sampled unseen items."),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Hide each user's latest interactions, run the pipeline on the rest, score the published table on them."""
    from recbatch import pipeline
    from recbatch.evaluate.backtest import format_backtest
    from recbatch.io.readers import check_input_path

    cfg = _load(config, set_)
    layout = _layout(cfg, date)
    with _locked(cfg, layout, "backtest"):
        check_input_path(cfg.input)  # before a JVM starts for it
        doc = pipeline.backtest(_spark(cfg), cfg, layout.date, holdout, negatives)
    typer.echo(format_backtest(doc))
    typer.echo(f"backtest -> {layout.backtest_dir / 'metrics.json'}, {layout.backtest_dir / 'report.md'}")


@app.command()
@handles_errors
def runs(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    date: Annotated[str | None, typer.Option("--date", "-d", help="Only this date (YYYY-MM-DD).")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per line (machine-readable).")
    ] = False,
    verbose: VerboseOpt = False,
) -> None:
    """List past runs: date, status, run id, stage times, metric, rows and the version published."""
    import json

    from recbatch.ops import history
    from recbatch.ops.run_id import parse_date
    from recbatch.storage import location

    cfg = _load(config, set_)
    records = history.read_records(location(cfg.paths.workdir), parse_date(date) if date else None)
    if as_json:
        for record in records:
            typer.echo(json.dumps(record, sort_keys=True))
    else:
        typer.echo(history.format_records(records) if records else "no runs recorded yet")


@app.command()
@handles_errors
def rollback(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    date: Annotated[str, typer.Option("--date", "-d", help="The date to re-point (YYYY-MM-DD).")] = "",
    to: Annotated[
        str | None,
        typer.Option("--to", help="Version or run id to serve (default: the one before the current)."),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Serve an earlier published version of a date again, with one atomic commit."""
    from recbatch import cron
    from recbatch.errors import ConfigError

    if not date:
        raise ConfigError("rollback needs --date YYYY-MM-DD (the date whose table to re-point)")
    cfg = _load(config, set_)
    layout = _layout(cfg, date)
    with _locked(cfg, layout, "rollback"):
        spark = _spark(cfg) if cfg.publish.catalog_table else None
        entry = cron.rollback(cfg, layout.date, to, spark)
    typer.echo(f"dt={layout.date} now serves {entry['version']} (was {entry['previous']})")


@app.command()
@handles_errors
def gc(config: ConfigOpt = None, set_: SetOpt = None, verbose: VerboseOpt = False) -> None:
    """Remove published versions beyond publish.keep_versions and unfinished ones left by killed runs."""
    from recbatch import cron

    cfg = _load(config, set_)
    with _locked(cfg, _layout(cfg, None), "gc"):
        removed = cron.collect_garbage(cfg)
    typer.echo(f"removed {len(removed['pruned'])} old and {len(removed['unfinished'])} unfinished version(s)")
    for name in removed["pruned"] + removed["unfinished"]:
        typer.echo(f"  {name}")


@app.command("config")
@handles_errors
def show_config(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    template: Annotated[
        bool, typer.Option("--template", help="Print every key with its default and meaning, as TOML.")
    ] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Validate the configuration and print the effective values as JSON (or a documented template)."""
    import json

    if template:
        from recbatch.config_doc import defaults_template

        typer.echo(defaults_template(), nl=False)
        return
    cfg = _load(config, set_)
    typer.echo(json.dumps(cfg.model_dump(mode="json"), indent=2))


def main(argv: list[str] | None = None, prog_name: str = "recbatch") -> int:
    """Run the command line on `argv` (default: sys.argv[1:]) and return its exit code.

    The entry point of jobs/*.py under spark-submit: the same parsing, the same error
    handling and the same exit codes as the `recbatch` command.
    """
    try:
        app(args=argv, prog_name=prog_name)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return int(exc.code or 0)
        print(exc.code, file=sys.stderr)
        return 1
    return 0


@app.command("exit-codes")
def exit_codes() -> None:
    """List the exit codes recbatch uses."""
    for code, meaning in EXIT_CODES.items():
        typer.echo(f"{code:>3}  {meaning}")


@app.command("paths")
def paths() -> None:
    """Print where the package, the spark-submit entry points (jobs/) and the shipped configs (conf/) are."""
    from recbatch import __version__
    from recbatch.ops.ship import resource_dirs

    typer.echo(f"recbatch {__version__}")
    for name, where in resource_dirs().items():
        typer.echo(f"{name:<8} {where}")


@bench_app.command("score")
@handles_errors
def bench_score(
    size: BenchSizeOpt = "quick",
    runs: BenchRunsOpt = 3,
    out: BenchOutOpt = Path("out/bench"),
    only: Annotated[
        list[str] | None,
        typer.Option(help="Contenders to run: recbatch, recbatch-spark, als, ceilings, naive (repeatable)."),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Exact top-K scoring vs Spark ALS recommendForAllUsers, single-process ceilings and a naive cross join."""
    from recbatch.bench.score import bench_score as run_bench_score

    _, report = run_bench_score(size, runs, out, only)
    typer.echo(report, nl=False)


@bench_app.command("network")
@handles_errors
def bench_network(
    size: BenchSizeOpt = "quick",
    runs: BenchRunsOpt = 3,
    out: BenchOutOpt = Path("out/bench"),
    only: Annotated[
        list[str] | None,
        typer.Option(
            help="Contenders: recbatch, recbatch-1p, keras-call, keras-predict, keras-function (repeatable)."
        ),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Exact NeuMF top-K scoring (Spark and one process) vs the Keras model evaluated on every pair."""
    from recbatch.bench.network import bench_network as run_bench_network

    _, report = run_bench_network(size, runs, out, only)
    typer.echo(report, nl=False)


@bench_app.command("similar")
@handles_errors
def bench_similar(
    size: Annotated[str, typer.Option(help="tiny (2K items), quick (20K), full (100K); d32, K20.")] = "quick",
    runs: BenchRunsOpt = 3,
    out: BenchOutOpt = Path("out/bench"),
    only: Annotated[list[str] | None, typer.Option(help="Contenders: recbatch, als (repeatable).")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Similar items for every item vs Spark ALS recommendForAllItems on the same factors."""
    from recbatch.bench.similar import bench_similar as run_bench_similar

    _, report = run_bench_similar(size, runs, out, only)
    typer.echo(report, nl=False)


@bench_app.command("audience")
@handles_errors
def bench_audience(
    size: Annotated[
        str,
        typer.Option(help="tiny (5K users x 1K items), quick (50K x 10K), full (100K x 20K); top 100 users."),
    ] = "quick",
    runs: BenchRunsOpt = 3,
    out: BenchOutOpt = Path("out/bench"),
    only: Annotated[
        list[str] | None, typer.Option(help="Contenders: recbatch, als, recbatch-users (repeatable).")
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Each item's top users vs Spark ALS recommendForAllItems and vs user scoring, on the same factors."""
    from recbatch.bench.audience import bench_audience as run_bench_audience

    _, report = run_bench_audience(size, runs, out, only)
    typer.echo(report, nl=False)


@bench_app.command("prepare")
@handles_errors
def bench_prepare(
    events: Annotated[int, typer.Option(min=100, help="Synthetic events to generate.")] = 20_000_000,
    runs: Annotated[int, typer.Option(min=1, help="Timed runs per engine (the median is reported).")] = 1,
    files: Annotated[int, typer.Option(min=1, help="CSV part files to split the events over.")] = 8,
    cores: Annotated[
        int, typer.Option(min=1, help="Cores for both engines (Spark local[N], DuckDB threads).")
    ] = 2,
    out: Annotated[Path, typer.Option(help="Folder for data, runs and results.json.")] = Path(
        "out/bench-prepare"
    ),
    verbose: VerboseOpt = False,
) -> None:
    """Time `recbatch prepare` (wall, peak RSS of driver + JVM) beside the same cleaning in DuckDB SQL."""
    from recbatch.bench.prepare import bench_prepare as run_bench_prepare

    typer.echo(run_bench_prepare(events, out, runs, files, cores))


def _bench_sizes(events: str) -> list[int]:
    """--events "1000000,10000000" as numbers; a ConfigError (exit 2) says what is wrong."""
    from recbatch.errors import ConfigError

    try:
        sizes = [int(part.replace("_", "")) for part in events.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(
            f"--events {events!r}: give whole numbers separated by commas, e.g. 1000000,10000000"
        ) from None
    if not sizes or min(sizes) < 1000:
        raise ConfigError(f"--events {events!r}: each size must be at least 1000 events")
    return sizes


@bench_app.command("train")
@handles_errors
def bench_train(
    events: Annotated[
        str, typer.Option(help="Synthetic events per size, comma-separated (users = events/40).")
    ] = "1000000,10000000",
    cores: Annotated[int, typer.Option(min=1, help="Cores for both (Spark local[N]; TF threads).")] = 2,
    als_memory: Annotated[str, typer.Option(help="Driver memory of the ALS session.")] = "4g",
    out: Annotated[Path, typer.Option(help="Folder for data, runs, results.json and report.md.")] = Path(
        "out/bench-train"
    ),
    verbose: VerboseOpt = False,
) -> None:
    """Train the shipped mf and fit Spark ALS (implicit, same rank) on the same prepared split."""
    from recbatch.bench.train import bench_train as run_bench_train

    typer.echo(run_bench_train(_bench_sizes(events), out, cores, als_memory), nl=False)


@bench_app.command("pipeline")
@handles_errors
def bench_pipeline(
    events: Annotated[
        str,
        typer.Option(
            help="Synthetic events per size, comma-separated (users = events/20, items = events/200)."
        ),
    ] = "1000000,20000000",
    cores: Annotated[int, typer.Option(min=1, help="Spark local[N].")] = 2,
    budget_min: Annotated[
        float, typer.Option(min=1, help="The whole run's budget at the largest size.")
    ] = 30,
    out: Annotated[Path, typer.Option(help="Folder for data, runs, results.json and report.md.")] = Path(
        "out/bench-pipeline"
    ),
    verbose: VerboseOpt = False,
) -> None:
    """`recbatch run` end to end at each size: each stage's wall time and the driver's, JVM's and workers' peak memory."""
    from recbatch.bench.pipeline import bench_pipeline as run_bench_pipeline

    typer.echo(run_bench_pipeline(_bench_sizes(events), out, cores, budget_min * 60), nl=False)


@bench_app.command("export")
@handles_errors
def bench_export(
    users: Annotated[int, typer.Option(min=10, help="Users in the published table.")] = 100_000,
    k: Annotated[int, typer.Option(min=1, help="Recommendations per user (rows = users x k).")] = 10,
    runs: BenchRunsOpt = 3,
    connections: Annotated[int, typer.Option(min=1, help="Parallel writers of the recbatch exports.")] = 2,
    out: Annotated[Path, typer.Option(help="Folder for the data, results.json and report.md.")] = Path(
        "out/bench-export"
    ),
    only: Annotated[
        list[str] | None,
        typer.Option(
            help="Contenders: recbatch-jdbc, driver-copy, naive-insert, recbatch-redis, recbatch-redis-executors, redis-driver (repeatable)."
        ),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """JDBC export into PostgreSQL vs driver-side COPY and INSERT; Redis export vs one driver connection."""
    from recbatch.bench.export import CONTENDERS, ExportSpec
    from recbatch.bench.export import bench_export as run_bench_export
    from recbatch.errors import ConfigError

    unknown = sorted(set(only or []) - set(CONTENDERS))
    if unknown:
        raise ConfigError(f"--only {', '.join(unknown)}: unknown; choose from {', '.join(CONTENDERS)}")
    spec = ExportSpec(users=users, k=k, runs=runs, connections=connections)
    if only:
        spec.contenders = list(only)
    _, report = run_bench_export(spec, out)
    typer.echo(report, nl=False)


@bench_app.command("shapes")
@handles_errors
def bench_shapes(
    source: Annotated[Path, typer.Option(help="MovieLens-100K's u.data.")] = Path(
        "../shared/data/ml-100k/u.data"
    ),
    out: Annotated[
        Path, typer.Option(help="Folder for the derived files (conf/ml100k-*.toml read them).")
    ] = Path("data/derived"),
    verbose: VerboseOpt = False,
) -> None:
    """Derive MovieLens-100K in other data shapes (half-star ratings with a header; play counts, no time)."""
    from recbatch.bench.shapes import derive_shapes
    from recbatch.errors import DataError

    if not source.is_file():
        raise DataError(f"{source} not found: pass --source with the path of MovieLens-100K's u.data")
    for name, done in derive_shapes(source, out).items():
        typer.echo(f"wrote {done['rows']:,} rows -> {done['path']}  ({name})")
