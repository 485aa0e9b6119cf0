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
from recbatch.errors import EXIT_CODES, RecbatchError

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
            if name in ("AnalysisException", "Py4JJavaError", "PythonException", "SparkRuntimeException"):
                _fail(4, f"Spark failed: {first[:500]} (rerun with --verbose for details)", verbose)
            _fail(1, f"unexpected {name}: {first[:500]} (a bug: rerun with --verbose and report it)", verbose)
        return None

    return wrapper  # type: ignore[return-value]


def _load(config: Path | None, overrides: list[str] | None) -> Config:
    return load_config(config, overrides or [])


def _spark(cfg: Config):
    from recbatch.session import build_session

    return build_session(cfg.spark)


@contextlib.contextmanager
def _locked(layout: Any, what: str) -> Iterator[None]:
    """Hold the work directory's lock while a stage writes into it (exit 5 when another run has it).

    Every command that writes under the workdir takes it, not only `run`: a `train` during
    a cron `score` could otherwise mix two models' factors, and two `score`s both publish.
    """
    from recbatch.ops.lock import workdir_lock

    with workdir_lock(layout.lock_file, f"{what} --date {layout.date}"):
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
    with _locked(layout, "prepare"):
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
    with _locked(layout, "train"):
        manifest = pipeline.train(cfg, layout)
    typer.echo(
        f"trained {manifest['model']} in {manifest.get('train_seconds', 0):.1f}s -> {layout.model_dir}"
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

    flags = {"protocol": protocol, "negatives": negatives}
    overrides = list(set_ or []) + [f"evaluate.{k}={_toml(v)}" for k, v in flags.items() if v is not None]
    cfg = _load(config, overrides)
    layout = _layout(cfg, date)
    with _locked(layout, "evaluate"):
        spark = _spark(cfg) if "als" in cfg.evaluate.baselines else None
        metrics = pipeline.evaluate(cfg, layout, spark)
    typer.echo(format_metrics_table(metrics))
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
    with _locked(layout, "tune"):
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
    verbose: VerboseOpt = False,
) -> None:
    """Score every user against every unseen item and publish the top-K table atomically."""
    from recbatch import pipeline

    cfg = _load(config, set_)
    layout = _layout(cfg, date)
    if dry_run:
        from recbatch.score.plan import plan_from_artifacts

        typer.echo(plan_from_artifacts(cfg, layout).describe())
        return
    with _locked(layout, "score"):
        manifest = pipeline.score_and_publish(_spark(cfg), cfg, layout)
    typer.echo(f"published {manifest['rows']:,} rows for {manifest['users']:,} users -> {manifest['path']}")
    from recbatch.summary import source_lines

    for line in source_lines(manifest):
        typer.echo(line)


@app.command()
@handles_errors
def export(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    date: DateOpt = None,
    format_: Annotated[
        list[str] | None,
        typer.Option("--format", "-f", help="csv, jsonl or sqlite (repeatable; default: export.formats)."),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Export the published table of a date as CSV, JSON lines (one user per line) or SQLite."""
    from recbatch import pipeline
    from recbatch.errors import ConfigError

    cfg = _load(config, set_)
    formats = format_ or cfg.export.formats
    if not formats:
        raise ConfigError("nothing to export: pass --format csv|jsonl|sqlite or set export.formats")
    unknown = sorted(set(formats) - {"csv", "jsonl", "sqlite"})
    if unknown:
        raise ConfigError(f"--format {', '.join(unknown)}: unknown; choose from csv, jsonl, sqlite")
    layout = _layout(cfg, date)
    with _locked(layout, "export"):
        exported = pipeline.export(_spark(cfg), cfg, layout, formats)
    for fmt, path in exported.items():
        typer.echo(f"exported {fmt} -> {path}")


@app.command()
@handles_errors
def run(
    config: ConfigOpt = None, set_: SetOpt = None, date: DateOpt = None, verbose: VerboseOpt = False
) -> None:
    """Run every stage for one date: prepare, train, evaluate, score and publish (idempotent, locked)."""
    from recbatch import pipeline
    from recbatch.io.readers import check_input_path
    from recbatch.summary import render_run

    cfg = _load(config, set_)
    layout = _layout(cfg, date)
    with _locked(layout, "run"):
        check_input_path(cfg.input)  # before a JVM starts for it
        spark = _spark(cfg)
        result = pipeline.run_all(spark, cfg, layout.date)
        typer.echo(render_run(spark, result))


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
