"""Typed configuration: one pydantic model per stage, loaded from TOML with `--set` overrides.

Defaults live here, so the installed package works without the repository's `conf/`
folder; `conf/default.toml` documents every key with these same values (a test keeps
the two in step). Validation happens before Spark starts: a wrong key or value raises
`ConfigError` naming the key, the bad value and what is allowed.

Longer than the ~300-line guide on purpose: it is the one contract of every key, each
section a small model whose fields carry their documentation (`recbatch config
--template` prints them), and splitting the sections across files would scatter that
contract without making any one section shorter.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from recbatch.errors import ConfigError

# Kept in step with recbatch.models.registry by a test; listed here so that validating a
# config never has to import TensorFlow.
MODEL_NAMES = ("seed", "mf", "gmf", "mlp", "neumf", "two_tower")


class Section(BaseModel):
    """Base for every config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SparkConfig(Section):
    """How the SparkSession is built (ignored where spark-submit already chose a master)."""

    master: str = Field("local[*]", description="Spark master for embedded runs; spark-submit's wins.")
    app_name: str = Field("recbatch", description="Application name shown in the Spark UI.")
    driver_memory: str = Field("2g", description="Driver JVM heap for embedded runs, e.g. '2g'.")
    shuffle_partitions: int = Field(8, ge=1, description="spark.sql.shuffle.partitions.")
    log_level: Literal["ERROR", "WARN", "INFO", "DEBUG"] = Field("WARN", description="Spark log level.")
    threads_per_task: int = Field(
        1, ge=1, description="TensorFlow/BLAS threads per Python worker, so tasks do not oversubscribe cores."
    )
    conf: dict[str, str] = Field(
        default_factory=dict,
        description="Extra spark.* settings (metastore ones too); under spark-submit its own values win.",
    )
    catalog: Literal["auto", "in-memory", "hive"] = Field(
        "auto",
        description="Spark catalog: 'hive' (a metastore: embedded Derby under <workdir>/catalog unless "
        "[spark].conf or the platform names one), 'in-memory', or 'auto' (hive when publish.catalog_table is set).",
    )
    jvm: Literal["auto", "short-run", "long-run"] = Field(
        "auto",
        description="Tuning of an embedded driver JVM: 'short-run' (C1 JIT only, serial GC: starts and "
        "warms up about twice as fast on small inputs), 'long-run' (the JVM's defaults, for big inputs), or "
        "'auto' (short-run when the master is local and input.path is local files under 256 MiB). "
        "spark-submit's driver JVM is already running when recbatch starts: ignored there.",
    )
    class_cache: bool = Field(
        True,
        description="Start embedded JVMs from the class-data archive `recbatch jvm-cache` builds (a few "
        "seconds less per start), when one exists for this Java and Spark.",
    )
    preflight: Literal["auto", "always", "off"] = Field(
        "auto",
        description="Before the stages, a tiny Spark job checks that executors import recbatch, numpy, pyarrow "
        "and pandas at the driver's versions and reach the workdir: 'auto' (when the master is not local), "
        "'always', or 'off'.",
    )
    preflight_timeout_s: float = Field(
        300.0,
        gt=0,
        description="The pre-flight job fails if no executor has answered within this many seconds.",
    )


class PathsConfig(Section):
    """Where artifacts go."""

    workdir: str = Field(
        "out/recbatch",
        description="Root for runs/, published/ and locks/: a local folder (relative ones are made absolute "
        "at load) or a storage URI: file://, hdfs://, s3a://, gs://, abfs://.",
    )
    lock_stale_minutes: float = Field(
        30.0,
        gt=0,
        description="A lock whose holder stopped heartbeating this long ago is taken over (logged). "
        "On the holder's own host a dead process frees it at once.",
    )

    @field_validator("workdir")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        # An empty workdir would put runs/, published/ and locks/ in whatever folder cron starts in.
        if not value.strip():
            raise ValueError("must name a folder or storage URI, e.g. out/recbatch")
        from recbatch.storage import location

        # Qualified once, here: a relative workdir means the same folder to every stage and to
        # executors whose working directory is not the driver's.
        return location(value).uri


class InputConfig(Section):
    """The raw interaction log and how its columns map onto recbatch's names."""

    @field_validator("user_id_pattern", "item_id_pattern")
    @classmethod
    def _valid_pattern(cls, value: str | None) -> str | None:
        if value:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression ({exc}); e.g. '[0-9]+'") from None
        return value or None

    path: str = Field("data/demo/events.csv", description="A file, a directory of part files, or a glob.")
    format: Literal["csv", "tsv", "jsonl", "parquet"] = Field("csv", description="File format.")
    header: bool = Field(True, description="CSV/TSV: the first line holds column names.")
    delimiter: str | None = Field(
        None, description="CSV/TSV field separator; default ',' (csv) or tab (tsv)."
    )
    names: list[str] | None = Field(
        None, description="CSV/TSV without a header: the column names, in file order."
    )
    user_col: str = Field("user_id", description="Column holding the user id.")
    item_col: str = Field("item_id", description="Column holding the item id.")
    user_id_pattern: str | None = Field(
        None,
        description="Regular expression a user id must match whole, e.g. '[0-9]+' for numeric ids; "
        "others are quarantined as bad_user_id (none: any non-blank id).",
    )
    item_id_pattern: str | None = Field(None, description="The same for item ids (bad_item_id).")
    rating_col: str | None = Field(
        "rating", description='Column holding an explicit rating; "" if the input has none.'
    )
    timestamp_col: str | None = Field(
        "timestamp", description='Column holding the event time; "" if the input has none.'
    )
    event_col: str | None = Field(
        "event", description='Column holding the event type; "" if the input has none.'
    )
    weight_col: str | None = Field(
        None,
        description="Optional column with a per-event weight (> 0), multiplied by the event type weight.",
    )
    timestamp_unit: Literal["s", "ms", "iso"] = Field(
        "s", description="Timestamps as unix seconds, unix milliseconds, or ISO-8601 strings."
    )

    @field_validator("rating_col", "timestamp_col", "event_col", "weight_col", mode="before")
    @classmethod
    def _empty_means_none(cls, value: str | None) -> str | None:
        # TOML has no null: an empty string says "this input has no such column".
        return None if value == "" else value

    @field_validator("delimiter")
    @classmethod
    def _one_char(cls, value: str | None) -> str | None:
        if value is not None and len(value.encode("unicode_escape").decode()) == 0:
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _names_when_headerless(self) -> InputConfig:
        if self.format in ("csv", "tsv") and not self.header and not self.names:
            raise ValueError("a CSV/TSV file without a header needs input.names (the columns in order)")
        return self

    def effective_delimiter(self) -> str:
        """The field separator actually used for CSV/TSV."""
        if self.delimiter is not None:
            return self.delimiter
        return "\t" if self.format == "tsv" else ","


class SynthConfig(Section):
    """The built-in synthetic interaction generator (`recbatch synth`)."""

    users: int = Field(2000, ge=1, description="Number of distinct users.")
    items: int = Field(1000, ge=1, description="Number of distinct items.")
    events: int = Field(100_000, ge=1, description="Number of event rows to write (before malformed extras).")
    clusters: int = Field(8, ge=1, description="Latent taste clusters users are drawn from.")
    affinity: float = Field(
        0.8, ge=0.0, le=1.0, description="Share of a user's events drawn from their cluster's items."
    )
    popularity_exponent: float = Field(1.0, gt=0.0, description="Zipf exponent of item popularity.")
    days: int = Field(90, ge=1, description="Length of the timestamp window, ending at end_date.")
    end_date: str = Field("2026-01-01", description="Last day of the window (YYYY-MM-DD).")
    malformed_rate: float = Field(0.005, ge=0.0, le=0.5, description="Share of rows made malformed.")
    files: int = Field(1, ge=1, description="Number of part files to write.")
    seed: int = Field(7, description="Random seed: the same seed gives byte-identical files.")
    out: str = Field("data/demo/events.csv", description="Output file (or directory when files > 1).")
    item_metadata: str = Field(
        "",
        description="Also write an item-metadata CSV here (item_id, category = the item's taste cluster), "
        "as score.rules.item_metadata reads it ('': none).",
    )

    @field_validator("end_date")
    @classmethod
    def _iso_date(cls, value: str) -> str:
        import datetime as dt

        try:
            return dt.date.fromisoformat(value).isoformat()
        except ValueError:
            raise ValueError("must be a date written YYYY-MM-DD, e.g. 2026-01-01") from None


class PrepareConfig(Section):
    """Cleaning, aggregation, indexing and the evaluation split."""

    feedback: Literal["implicit", "explicit"] = Field(
        "implicit", description="implicit: events are positives weighted by type; explicit: ratings matter."
    )
    event_weights: dict[str, float] = Field(
        default_factory=lambda: {"view": 1.0, "click": 2.0, "purchase": 5.0},
        description="Weight of each event type; rows with another type are quarantined (unknown_event).",
    )
    default_event: str = Field(
        "interaction", description="Event type assumed when the input has no event column."
    )
    rating_min: float = Field(
        0.0,
        description="Smallest valid rating; smaller ones are quarantined (0.0 keeps half-star scales, 0.5-5).",
    )
    rating_max: float = Field(5.0, description="Largest valid rating; larger ones are quarantined.")
    min_rating: float | None = Field(
        None, description="Explicit feedback: aggregated mean ratings below this are not positives."
    )
    min_user_interactions: int = Field(
        2, ge=1, description="Users with fewer distinct items are filtered out (reported)."
    )
    min_item_interactions: int = Field(
        1, ge=1, description="Items with fewer distinct users are filtered out (reported)."
    )
    test_per_user: int = Field(
        1, ge=0, description="Leave-last-N-out: each user's N latest items go to test (0: no test split)."
    )
    max_line_bytes: int = Field(
        1_048_576, ge=16, description="Lines (records) longer than this are quarantined (line_too_long)."
    )
    timestamp_floor: str | None = Field(
        "1990-01-01",
        description='Events before this date (YYYY-MM-DD, UTC) are quarantined (timestamp_too_old); "": none.',
    )
    reject_future: bool = Field(
        True, description="Quarantine events after the end of the run date (--date, UTC) (future_timestamp)."
    )
    near_duplicate_seconds: int = Field(
        0,
        ge=0,
        description="Merge an event into the previous one of the same user, item and type when at most "
        "this many seconds apart (counted as near_duplicates_merged; 0: off).",
    )
    window_days: int | None = Field(
        None, ge=1, description="Keep only events of the last N days up to the run date (none: all)."
    )
    outlier_user_quantile: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="Remove users whose event count is above this quantile of users (outlier_user).",
    )
    outlier_user_max: int | None = Field(
        None, ge=1, description="Remove users with more events than this (outlier_user), e.g. bots."
    )
    outlier_item_quantile: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="Remove items whose event count is above this quantile (outlier_item).",
    )
    outlier_item_max: int | None = Field(
        None, ge=1, description="Remove items with more events than this (outlier_item)."
    )
    kcore_max_rounds: int = Field(
        50,
        ge=1,
        description="Iterate the min_user/min_item filters until both hold (k-core), at most this many rounds.",
    )
    log_weights: bool = Field(False, description="Replace each pair's summed weight w by log(1 + w).")
    center_ratings: bool = Field(
        False, description="Explicit feedback: subtract each user's mean rating from their ratings."
    )
    split: Literal["leave_last_n", "time_cutoff", "random"] = Field(
        "leave_last_n",
        description="leave_last_n: each user's latest test_per_user items (no timestamp column: that many "
        "seeded random items, with a warning); time_cutoff: interactions in the last split_days days; random: "
        "a seeded test_fraction of each user's items.",
    )
    split_days: int = Field(
        7, ge=1, description="time_cutoff split: days before the run date's end held out."
    )
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="random split: share of pairs held out.")
    split_seed: int = Field(42, description="random split: the seed (same seed and data, same split).")
    previous_vocab: str = Field(
        "",
        description='Keep id -> index stable across runs: "auto" (the latest earlier dt= run in the workdir), '
        'a prepared/ folder of an earlier run, or "" (fresh vocabularies in id order).',
    )

    quarantine_warn: float = Field(
        0.005,
        ge=0.0,
        le=1.0,
        description="A quarantined share of rows above this is a warning in the summary, naming each "
        "reason and the key that decides it.",
    )
    quarantine_fail: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="A quarantined share of rows above this fails prepare and run (exit 3) once the report "
        "is written; 1.0: never fail.",
    )

    @field_validator("event_weights")
    @classmethod
    def _positive_weights(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if v <= 0}
        if bad:
            raise ValueError(f"event weights must be > 0, got {bad}")
        return value

    @field_validator("timestamp_floor", mode="before")
    @classmethod
    def _floor_date(cls, value: str | None) -> str | None:
        import datetime as dt

        if value in (None, ""):
            return None
        try:
            return dt.date.fromisoformat(value).isoformat()
        except (TypeError, ValueError):
            raise ValueError("must be a date written YYYY-MM-DD, or empty for no floor") from None

    @model_validator(mode="after")
    def _rating_range(self) -> PrepareConfig:
        if self.rating_min > self.rating_max:
            raise ValueError(f"rating_min ({self.rating_min}) is above rating_max ({self.rating_max})")
        if self.quarantine_warn > self.quarantine_fail:
            raise ValueError(
                f"quarantine_warn ({self.quarantine_warn}) is above quarantine_fail ({self.quarantine_fail})"
            )
        return self


class TrainConfig(Section):
    """Model choice and fitting."""

    model: str = Field("mf", description=f"Registered model name: one of {', '.join(MODEL_NAMES)}.")
    embedding_dim: int = Field(32, ge=1, le=4096, description="Embedding size.")
    epochs: int = Field(10, ge=1, description="Passes over the training positives.")
    batch_size: int = Field(2048, ge=1, description="Examples per gradient step.")
    batch_size_max: int = Field(
        16_384,
        ge=1,
        description="bce/bpr: an epoch of more than 256 batches of batch_size examples takes bigger "
        "batches, up to this, keeping 256 steps an epoch (on a CPU a step of 8,192 examples costs little "
        "more than one of 2,048). softmax batches never grow (their size is the in-batch negatives). "
        "Set it to batch_size to keep the batch fixed.",
    )
    learning_rate: float = Field(0.005, gt=0.0, description="Adam learning rate.")
    l2: float = Field(0.0, ge=0.0, description="L2 penalty on embeddings.")
    negatives: int = Field(4, ge=1, description="Sampled negatives per positive (bce, bpr).")
    seed: int = Field(42, description="Seed for initialisation, shuffling and negative sampling.")
    loss: Literal["bce", "bpr", "softmax"] = Field(
        "bce",
        description="bce: binary cross-entropy on sampled negatives; bpr: pairwise BPR; "
        "softmax: in-batch sampled softmax with logQ correction (dot-product models only).",
    )
    negative_sampling: Literal["uniform", "popularity"] = Field(
        "uniform", description="Negatives drawn uniformly, or in proportion to popularity^negative_alpha."
    )
    negative_alpha: float = Field(0.75, ge=0.0, description="Exponent of popularity-based negative sampling.")
    logq_correction: bool = Field(
        True, description="softmax: subtract log(item sampling probability) from in-batch logits."
    )
    temperature: float = Field(1.0, gt=0.0, description="softmax: logits are divided by this.")
    mlp_layers: list[int] = Field(
        default_factory=lambda: [64, 32, 16], description="mlp/neumf: widths of the ReLU tower."
    )
    tower_layers: list[int] = Field(
        default_factory=list, description="two_tower: dense layers after each embedding (last is linear)."
    )
    pretrain: bool = Field(False, description="neumf: pre-train GMF and MLP first and start from them.")
    optimizer: Literal["auto", "lazy_adam", "adam"] = Field(
        "auto",
        description="adam: Keras' Adam, which updates every row of every embedding table at each step; "
        "lazy_adam: Adam on the rows each batch uses only (a step costs what its batch does, whatever "
        "the number of users and items; unused rows' moments do not decay; a table no bigger than a "
        "batch gets Adam itself; each positive's negatives share its batch, so a step touches fewer "
        "user rows); auto: lazy_adam above 100,000 embedding rows (users + items), where the dense "
        "update dominates each step, else adam.",
    )
    validation: bool = Field(
        True,
        description="Hold out each user's latest train item to pick the epoch count (never test); "
        "a seeded sample of 20,000 of these users is ranked where there are more.",
    )
    validation_k: int = Field(10, ge=1, description="Early stopping watches validation NDCG at this K.")
    validation_negatives: int = Field(
        0,
        ge=0,
        description="0: validation ranks every item the user has not seen; N: each validation item "
        "among N seeded unseen items drawn uniformly (the NCF protocol, evaluate.protocol = 'sampled'), so "
        "early stopping, `recbatch tune` and the ALS grid pick for that protocol. `recbatch backtest "
        "--negatives N` sets it to N for its visible run when it is 0.",
    )
    patience: int = Field(
        3, ge=1, description="Stop after this many epochs without a better validation NDCG."
    )
    refit: bool = Field(
        True,
        description="Within the fit on the train split: after early stopping, retrain on all of train for "
        "the best epoch count (train.final_fit decides what the published model sees).",
    )
    warm_start: str = Field(
        "off",
        description='Initialise from an earlier model: "auto" (the latest earlier dt= run of the workdir whose '
        "model is verified and of the same model, loss and shape; rows are matched by id, new ids start fresh), "
        'a model/ folder, or "off". Off by default so that a run stays a function of its own inputs; falls '
        "back to a cold start, with one log line saying why, when nothing usable is found.",
    )
    final_fit: Literal["all", "train"] = Field(
        "all",
        description="The published model: 'all' refits it on every prepared interaction (train + test) once "
        "evaluation is done, for the epochs chosen on validation; 'train' publishes the evaluated model.",
    )
    weighting: Literal["none", "log", "confidence"] = Field(
        "none",
        description="How much each positive counts in the loss: none (once each), log (1 + log(1 + s)), "
        "confidence (1 + weight_alpha * s, as ALS); s = the pair's train.strength; scaled to mean 1.",
    )
    strength: Literal["weight", "count", "rating"] = Field(
        "weight",
        description="The strength s of a pair for train.weighting: its summed event weight (play counts via "
        "input.weight_col), its event count, or its mean rating.",
    )
    weight_alpha: float = Field(
        1.0, gt=0.0, description="weighting = 'confidence': the alpha of 1 + alpha * s."
    )
    recency_half_life: float | None = Field(
        None,
        gt=0.0,
        description="Weigh each positive by 0.5^(n / half_life), n = the user's interactions newer than it, so "
        "what a user did last counts most (none: off; ignored, with a warning, without timestamps).",
    )
    input: Literal["auto", "memory", "stream"] = Field(
        "auto",
        description="memory: read the train positives into numpy; stream: tf.data from the Parquet record "
        "batch by record batch (the table never held whole); auto: stream above memory_limit_mb.",
    )
    memory_limit_mb: int = Field(
        2048, ge=1, description="input = auto: stream when the in-memory input would need more than this."
    )
    shuffle_buffer: int = Field(
        100_000, ge=1, description="input = stream: positives held in the seeded shuffle buffer."
    )
    search: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="`recbatch tune`: train keys and the values to try, e.g. { l2 = [0.0, 0.01] }.",
    )
    search_trials: int = Field(
        0, ge=0, description="`recbatch tune`: random trials from the grid (0: every combination)."
    )

    @field_validator("recency_half_life", mode="before")
    @classmethod
    def _empty_is_off(cls, value: Any) -> Any:
        # TOML has no null: `--set train.recency_half_life=""` turns a config's setting off.
        return None if value == "" else value

    @field_validator("warm_start")
    @classmethod
    def _warm_start_setting(cls, value: str) -> str:
        if not value.strip():
            raise ValueError('must be "off", "auto" or the path of an earlier run\'s model/ folder')
        return value.strip()

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if value not in MODEL_NAMES:
            raise ValueError(f"unknown model {value!r}; choose one of {', '.join(MODEL_NAMES)}")
        return value

    @model_validator(mode="after")
    def _softmax_needs_dot_model(self) -> TrainConfig:
        if self.loss == "softmax" and self.model in ("mlp", "neumf"):
            raise ValueError(
                f"loss = 'softmax' needs a dot-product model (mf, gmf, two_tower), not {self.model!r}; "
                "use loss = 'bce' or 'bpr'"
            )
        unknown = set(self.search) - set(type(self).model_fields) - {"search", "search_trials"}
        if unknown:
            raise ValueError(f"search: {sorted(unknown)} are not [train] keys")
        return self


class EvaluateConfig(Section):
    """Ranking evaluation on the held-out split."""

    ks: list[int] = Field(default_factory=lambda: [5, 10, 20], description="Cut-offs K for metrics@K.")
    primary_k: int = Field(10, ge=1, description="The K used in summaries and comparisons.")
    baselines: list[Literal["popularity", "popularity_recent", "als"]] = Field(
        default_factory=lambda: ["popularity", "popularity_recent", "als"],
        description="Baselines evaluated beside the model: popularity (all train), popularity_recent "
        "(last window_days of train), als (Spark MLlib, see [als]).",
    )
    max_users: int = Field(
        100_000,
        ge=0,
        description="Evaluate a seeded sample of at most this many test users (0: every one). A "
        "sample of 100,000 users puts NDCG@10's standard error near 0.001; ranking 1M users x 100K "
        "items for every model and baseline would take the driver tens of minutes.",
    )
    protocol: Literal["full", "sampled"] = Field(
        "full",
        description="full: rank every unseen item; sampled: the test item among `negatives` sampled "
        "unseen items (comparable with papers, but can reorder models).",
    )
    negatives: int = Field(99, ge=1, description="sampled protocol: sampled unseen items per test item.")
    window_days: int = Field(
        30, ge=1, description="popularity_recent baseline: popularity over the last N days of train."
    )
    extra_models: list[str] = Field(
        default_factory=list,
        description="Other models trained here with the same [train] settings and evaluated side by side "
        "(mlp/neumf fall back to bce when train.loss is softmax).",
    )
    report: bool = Field(True, description="Write report.md and PNG plots beside metrics.json.")
    two_stage_retriever: str | None = Field(
        None,
        description="Measure two-stage scoring: retrieve each user's top two_stage_n items with this "
        "dot-product model (one of extra_models, or als) and re-rank them with every mlp/neumf model; "
        "the report gives the recall@K it costs against exact scoring (none: skip).",
    )
    two_stage_n: int = Field(100, ge=1, description="Two-stage scoring: items retrieved per user.")

    @field_validator("two_stage_retriever", mode="before")
    @classmethod
    def _known_retriever(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if value not in (*MODEL_NAMES, "als"):
            raise ValueError(
                f"unknown retriever {value!r}; choose a dot-product model (mf, gmf, two_tower) or als"
            )
        return value

    @field_validator("extra_models")
    @classmethod
    def _known_models(cls, value: list[str]) -> list[str]:
        unknown = [m for m in value if m not in MODEL_NAMES]
        if unknown:
            raise ValueError(f"unknown model(s) {unknown}; choose from {', '.join(MODEL_NAMES)}")
        return value

    @field_validator("ks")
    @classmethod
    def _positive_ks(cls, value: list[int]) -> list[int]:
        if not value or any(k < 1 for k in value):
            raise ValueError("ks must be a non-empty list of positive integers")
        return sorted(set(value))


class AlsConfig(Section):
    """Spark MLlib ALS with implicit preferences, the baseline evaluated beside recbatch's models."""

    rank: int = Field(32, ge=1, description="Number of latent factors.")
    reg: float = Field(0.01, ge=0.0, description="Regularisation (regParam).")
    alpha: float = Field(
        10.0, gt=0.0, description="Confidence scaling of implicit feedback: c = 1 + alpha * weight."
    )
    max_iter: int = Field(15, ge=1, description="ALS sweeps.")
    seed: int = Field(42, description="Seed of the initial factors.")
    grid_rank: list[int] = Field(default_factory=list, description="Grid: ranks to try (empty: rank only).")
    grid_reg: list[float] = Field(default_factory=list, description="Grid: regParams to try (empty: reg).")
    grid_alpha: list[float] = Field(default_factory=list, description="Grid: alphas to try (empty: alpha).")


class ScoreRulesConfig(Section):
    """Business rules on each user's list, applied inside selection (recbatch.core.rules).

    The kernel picks each user's top `pool` allowed unseen items, then the cap and the
    re-rank choose k of them; the pool widens for a user whose cap cannot be met from it.
    """

    item_metadata: str | None = Field(
        None,
        description="Parquet or CSV table of item_id, category and optional available_from, available_to "
        "(YYYY-MM-DD, inclusive; empty: open-ended): needed by category_cap and the availability windows.",
    )
    category_cap: int = Field(
        0, ge=0, description="At most this many items of one category per user's list (0: no cap)."
    )
    mmr_lambda: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="Diversity re-rank (maximal marginal relevance): each pick maximises "
        "lambda * relevance - (1 - lambda) * max cosine to the items already picked, relevance being the "
        "user's pool scores scaled to 0..1 (1.0: off, rank by score).",
    )
    pool: int = Field(
        50,
        ge=1,
        description="Candidates per user the rules choose from (at least k; widened when the cap needs it).",
    )
    unlisted_items: Literal["keep", "exclude"] = Field(
        "keep",
        description="Items absent from item_metadata: 'keep' (always available, in no category, never "
        "capped) or 'exclude' (never recommended).",
    )

    @field_validator("item_metadata", mode="before")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return None if value == "" else value

    @model_validator(mode="after")
    def _cap_needs_metadata(self) -> ScoreRulesConfig:
        if self.category_cap > 0 and self.item_metadata is None:
            raise ValueError(
                "score.rules.category_cap needs score.rules.item_metadata (a table of item_id, category)"
            )
        return self

    @property
    def reranks(self) -> bool:
        """Whether lists are chosen by the cap or MMR rather than by score alone."""
        return self.category_cap > 0 or self.mmr_lambda < 1.0


class ScoreConfig(Section):
    """Batch top-K scoring."""

    k: int = Field(10, ge=1, description="Recommendations per user.")
    exclude_seen: bool = Field(True, description="Never recommend items the user interacted with.")
    user_block: int | None = Field(
        None,
        ge=1,
        description="Users per matrix multiply (none: from the memory plan; buffer: user_block × item_tile × 4 B).",
    )
    item_tile: int | None = Field(
        None,
        ge=1,
        description="Items per matrix multiply (none: from the memory plan, the whole catalogue if it fits).",
    )
    partitions: int | None = Field(
        None, ge=1, description="User partitions (none: from the plan, 2 × Spark's parallelism or more)."
    )
    worker_memory_mb: int = Field(
        256,
        ge=32,
        description="Memory a Python worker may use beyond the item factors; the plan fits blocks to it.",
    )
    broadcast_limit_mb: int = Field(
        256,
        ge=0,
        description="Item factors up to this size are broadcast; larger ones go as a memory-mapped file.",
    )
    user_input: Literal["auto", "files", "spark"] = Field(
        "auto",
        description=(
            "How users reach the Python workers: 'files' (each task reads its user range from the factor "
            "and interaction files: faster, needs the driver's paths on every executor), 'spark' (Spark "
            "shuffles them to the workers: any cluster), 'auto' (files in local mode, else spark)."
        ),
    )
    allow_items: str | None = Field(
        None, description="Parquet table with an item_id column: recommend only these items (none: all)."
    )
    deny_items: str | None = Field(
        None, description="Parquet table with an item_id column: never recommend these items (none: no list)."
    )
    users: str | None = Field(
        None, description="Parquet table with a user_id column: score only these users (none: every user)."
    )
    fallback: Literal["popularity", "none"] = Field(
        "popularity",
        description=(
            "Users without a trained vector (listed in score.users but unknown to the model, or without "
            "train rows): 'popularity' gives them the most popular unseen items (source = fallback), "
            "'none' leaves them out."
        ),
    )
    candidates: str | None = Field(
        None,
        description=(
            "Parquet table with user_id and item_id columns: score only these pairs (candidates from an "
            "upstream system) instead of the whole catalogue (none: every item)."
        ),
    )
    candidates_output: Literal["top_k", "all"] = Field(
        "top_k",
        description="With score.candidates: each user's k best candidates, or every candidate ranked.",
    )
    rules: ScoreRulesConfig = Field(default_factory=ScoreRulesConfig)

    @field_validator("allow_items", "deny_items", "users", "candidates", mode="before")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return None if value == "" else value

    @model_validator(mode="after")
    def _rules_on_the_catalogue(self) -> ScoreConfig:
        if self.candidates is not None and self.rules.reranks:
            raise ValueError(
                "score.rules.category_cap and mmr_lambda apply to catalogue scoring, not to score.candidates: "
                "unset one (availability windows do apply to candidates)"
            )
        return self


class PublishConfig(Section):
    """Atomic publishing of the recommendation table."""

    table: str = Field("recommendations", description="Table name under <workdir>/published/.")
    keep_versions: int = Field(3, ge=1, description="Versions kept per date; older ones are removed.")
    catalog_table: str | None = Field(
        None,
        description="Also register each published version in this Spark catalog table, '[db.]name' "
        "(Parquet, partitioned by dt; one metastore call swaps a date's partition). None: no catalog table.",
    )

    @field_validator("catalog_table", mode="before")
    @classmethod
    def _catalog_name(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not isinstance(value, str) or not re.fullmatch(
            r"([A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*", value
        ):
            raise ValueError("must be [db.]name of letters, digits and '_', e.g. 'db.recommendations'")
        return value

    @field_validator("table")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not value or "/" in value or value.startswith("."):
            raise ValueError("table must be a plain name without '/' and not starting with '.'")
        return value


class JdbcExportConfig(Section):
    """`export.formats = ["jdbc"]`: the table written into a database over JDBC, swapped in whole."""

    url: str = Field("", description="JDBC URL, e.g. jdbc:postgresql://db:5432/app; never a password in it.")
    table: str = Field(
        "recommendations",
        description="The live table the application reads: [schema.]name, lower-case letters, digits, _.",
    )
    user: str | None = Field(None, description="Database user (none: the driver's default).")
    password_env: str | None = Field(
        None, description="Environment variable holding the password (never put it in the TOML)."
    )
    password_file: str | None = Field(None, description="File whose first line is the password.")
    driver: str | None = Field(
        None, description="JDBC driver class (none: org.postgresql.Driver for jdbc:postgresql: URLs)."
    )
    driver_jar: str | None = Field(
        None,
        description="The driver's jar, put on spark.jars (none: Debian's /usr/share/java/postgresql.jar "
        "for PostgreSQL URLs, when it exists).",
    )
    batch_size: int = Field(10_000, ge=1, description="Rows per JDBC batch insert.")
    connections: int = Field(
        2, ge=1, description="Parallel connections writing the staging table (Spark's numPartitions)."
    )
    keep_previous: bool = Field(
        True, description="Keep the replaced table as <table>__previous (false: drop it in the swap)."
    )
    column_types: str | None = Field(
        None,
        description="Column types of the created table (Spark's createTableColumnTypes), "
        "e.g. 'user_id VARCHAR(64), item_id VARCHAR(64)' (none: the database dialect's defaults).",
    )
    properties: dict[str, str] = Field(
        default_factory=dict,
        description="Extra driver connection properties; PostgreSQL gets reWriteBatchedInserts=true "
        "unless set here.",
    )

    @model_validator(mode="after")
    def _no_password_in_url(self) -> JdbcExportConfig:
        # A model-level check: the error names the section, never echoes the URL (and its secret).
        if "password" in self.url.lower() or any(k.lower() == "password" for k in self.properties):
            raise ValueError(
                "export.jdbc.url and properties must not hold the password: use password_env or password_file"
            )
        if self.url and not self.url.startswith("jdbc:"):
            raise ValueError("export.jdbc.url must start with jdbc:, e.g. jdbc:postgresql://db:5432/app")
        return self

    @field_validator("table")
    @classmethod
    def _plain_identifier(cls, value: str) -> str:
        import re

        # Unquoted lower-case identifiers mean the same table in every SQL dialect; 30 characters
        # leave room for the staging suffix within PostgreSQL's 63.
        if not re.fullmatch(r"([a-z_][a-z0-9_]{0,29}\.)?[a-z_][a-z0-9_]{0,29}", value):
            raise ValueError(
                "must be [schema.]name of lower-case letters, digits and _ (30 characters at most)"
            )
        return value


class RedisExportConfig(Section):
    """`export.formats = ["redis"]`: one key per user in a versioned key space, one pointer swapped."""

    url: str = Field(
        "redis://127.0.0.1:6379/0", description="redis://host:port/db (or rediss://); never a password in it."
    )
    prefix: str = Field(
        "recbatch:recommendations",
        description="Key prefix: keys are <prefix>:<run_id>:<user_id>, the pointer <prefix>:current.",
    )
    ttl_seconds: int = Field(
        86_400, ge=1, description="How long a replaced version's keys stay readable after the pointer moves."
    )
    password_env: str | None = Field(None, description="Environment variable holding the password.")
    password_file: str | None = Field(None, description="File whose first line is the password.")
    batch_size: int = Field(
        1_000,
        ge=1,
        description="Keys per MSET command; each Spark task pipelines its commands on one connection.",
    )
    writer: Literal["auto", "executors", "driver"] = Field(
        "auto",
        description="Who sends the keys: 'executors' (Spark tasks reading the table), 'driver' (this process "
        "reads the published part files with pyarrow, one thread and connection per core), or 'auto': the "
        "driver up to driver_max_rows rows, where a Spark job's fixed cost outweighs the work.",
    )
    driver_max_rows: int = Field(
        5_000_000, ge=0, description="writer = 'auto': the largest table the driver writes itself."
    )

    @model_validator(mode="after")
    def _redis_url(self) -> RedisExportConfig:
        from urllib.parse import urlsplit

        # A model-level check: the error names the section, never echoes the URL (and its secret).
        parts = urlsplit(self.url)
        if parts.password or "password=" in parts.query.lower():
            raise ValueError("export.redis.url must not hold the password: use password_env or password_file")
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ValueError("export.redis.url must be redis://host:port/db or rediss://host:port/db")
        return self

    @field_validator("prefix")
    @classmethod
    def _plain_prefix(cls, value: str) -> str:
        import re

        # No glob characters: the prefix goes into SCAN MATCH patterns unescaped.
        if not re.fullmatch(r"[A-Za-z0-9_.:-]+", value) or value.endswith(":"):
            raise ValueError("must be letters, digits and _ . : - (not ending in ':')")
        return value


class ExportConfig(Section):
    """Exports of the published table for serving systems (`recbatch export`, and `run` when set)."""

    formats: list[Literal["csv", "jsonl", "sqlite", "jdbc", "redis"]] = Field(
        default_factory=list,
        description="csv: one row per recommendation; jsonl: one line per user with its ranked items; "
        "sqlite: a database file with an indexed table; jdbc: a database table over JDBC ([export.jdbc]); "
        "redis: one key per user ([export.redis]). Empty: `run` exports nothing.",
    )
    dir: str | None = Field(None, description="Where file exports go (none: <workdir>/exports).")
    jdbc: JdbcExportConfig = Field(default_factory=JdbcExportConfig)
    redis: RedisExportConfig = Field(default_factory=RedisExportConfig)

    @model_validator(mode="after")
    def _targets_named(self) -> ExportConfig:
        if "jdbc" in self.formats and not self.jdbc.url:
            raise ValueError(
                "export.formats has 'jdbc' but export.jdbc.url is empty: set it, "
                "e.g. jdbc:postgresql://db:5432/app"
            )
        if self.jdbc.url and not self.jdbc.url.startswith("jdbc:postgresql:") and not self.jdbc.driver:
            raise ValueError(
                "export.jdbc.driver is needed for a non-PostgreSQL URL, e.g. com.mysql.cj.jdbc.Driver"
            )
        return self


class GateConfig(Section):
    """The quality gate a new table must pass before it replaces the current one (recbatch.ops.gate)."""

    enabled: bool = Field(
        True, description="Compare each publish with the current table; refuse on a failed check."
    )
    max_metric_drop: float = Field(
        0.2, ge=0.0, description="Largest relative drop of the model's evaluation NDCG@primary_k."
    )
    max_rows_drop: float = Field(0.5, ge=0.0, description="Largest relative drop of the row count.")
    max_users_drop: float = Field(0.2, ge=0.0, description="Largest relative drop of the users covered.")
    max_coverage_drop: float = Field(
        0.5, ge=0.0, description="Largest relative drop of the distinct items recommended."
    )
    min_mean_overlap: float = Field(
        0.05, ge=0.0, le=1.0, description="Smallest mean Jaccard overlap of users' lists with the baseline's."
    )
    max_replaced_share: float = Field(
        0.95,
        ge=0.0,
        le=1.0,
        description="Largest share of users whose list shares no item with the baseline's.",
    )


class MonitoringConfig(Section):
    """Files monitoring reads after each run: a Prometheus textfile and the run records."""

    textfile: str | None = Field(
        None,
        description="Prometheus textfile-collector file to write after each run, e.g. "
        "/var/lib/node_exporter/textfile_collector/recbatch.prom (none: <workdir>/monitoring/recbatch.prom "
        "on a local workdir, nothing on a remote one).",
    )


class SimilarConfig(Section):
    """Similar items (`recbatch similar`, and a stage of `run` when enabled): top-K other items per item."""

    enabled: bool = Field(False, description="Also compute and publish similar items in `recbatch run`.")
    k: int = Field(20, ge=1, description="Similar items per item.")
    metric: Literal["cosine", "dot"] = Field(
        "cosine", description="Item-to-item score over the model's item factors: cosine or raw dot product."
    )
    items: str | None = Field(
        None, description="Parquet table with an item_id column: similar items for these only (none: all)."
    )
    table: str = Field("similar_items", description="Table name under <workdir>/published/.")
    baseline: bool = Field(
        True,
        description="Also compute the co-occurrence baseline (cosine of item co-occurrence counts, in Spark) "
        "and the hit-rate report beside the model's lists.",
    )
    max_items_per_user: int = Field(
        500,
        ge=2,
        description="Co-occurrence baseline: only each user's most recent N items pair up "
        "(bounds the self-join's sum of squared user activity).",
    )

    @field_validator("items", mode="before")
    @classmethod
    def _empty_items_is_none(cls, value: str | None) -> str | None:
        return None if value == "" else value

    @field_validator("table")
    @classmethod
    def _plain_table(cls, value: str) -> str:
        if not value or "/" in value or value.startswith("."):
            raise ValueError("table must be a plain name without '/' and not starting with '.'")
        return value


class AudienceConfig(Section):
    """Audiences (`recbatch audience`): the top-N users of every item, users who interacted excluded."""

    k: int = Field(100, ge=1, description="Users per item.")
    items: str | None = Field(
        None,
        description="Parquet table with an item_id column (the items of a campaign): audiences for these only "
        "(none: every item).",
    )
    table: str = Field("audiences", description="Table name under <workdir>/published/.")

    @field_validator("table")
    @classmethod
    def _plain_table(cls, value: str) -> str:
        if not value or "/" in value or value.startswith("."):
            raise ValueError("table must be a plain name without '/' and not starting with '.'")
        return value


class Config(Section):
    """The whole configuration; each stage reads its own section."""

    spark: SparkConfig = Field(default_factory=SparkConfig)
    paths: PathsConfig = Field(default_factory=PathsConfig)
    input: InputConfig = Field(default_factory=InputConfig)
    synth: SynthConfig = Field(default_factory=SynthConfig)
    prepare: PrepareConfig = Field(default_factory=PrepareConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    als: AlsConfig = Field(default_factory=AlsConfig)
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    similar: SimilarConfig = Field(default_factory=SimilarConfig)
    audience: AudienceConfig = Field(default_factory=AudienceConfig)

    @model_validator(mode="after")
    def _explicit_needs_ratings(self) -> Config:
        if self.prepare.feedback == "explicit" and self.input.rating_col is None:
            raise ValueError(
                "prepare.feedback = 'explicit' needs input.rating_col (the column holding ratings)"
            )
        return self

    @model_validator(mode="after")
    def _time_settings_need_timestamps(self) -> Config:
        # Without a timestamp column every event has ts 0: a time cutoff or window would hold out
        # or drop everything. leave_last_n switches to a seeded random draw instead (prep/split.py).
        if self.input.timestamp_col is not None:
            return self
        if self.prepare.split == "time_cutoff":
            raise ValueError(
                "prepare.split = 'time_cutoff' needs input.timestamp_col; without timestamps use "
                "split = 'leave_last_n' (N seeded random items per user) or 'random'"
            )
        if self.prepare.window_days is not None:
            raise ValueError("prepare.window_days needs input.timestamp_col (the input has no event times)")
        return self

    @model_validator(mode="after")
    def _rating_strength_needs_ratings(self) -> Config:
        if (
            self.train.weighting != "none"
            and self.train.strength == "rating"
            and self.input.rating_col is None
        ):
            raise ValueError("train.strength = 'rating' needs input.rating_col (the input has no ratings)")
        return self

    @model_validator(mode="after")
    def _catalog_table_needs_hive(self) -> Config:
        # An in-memory catalog forgets its tables when the session ends: readers would find nothing.
        if self.publish.catalog_table and self.spark.catalog == "in-memory":
            raise ValueError(
                "publish.catalog_table needs a persistent catalog: set spark.catalog = 'hive' or 'auto'"
            )
        return self

    def fingerprint(self) -> str:
        """A short stable hash of the effective configuration."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. --set train.epochs=5")
    key, raw = item.split("=", 1)
    parts = [p.strip() for p in key.strip().split(".")]
    if len(parts) < 2 or not all(parts):
        raise ConfigError(f"--set {item!r}: the key must be section.key, e.g. train.epochs")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word: take it as a string, as users expect of `--set train.model=mf`
    return parts, value


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if (
            isinstance(value, dict)
            and isinstance(out.get(key), dict)
            and key not in ("conf", "event_weights")
        ):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _describe(error: dict[str, Any], source: str) -> str:
    key = ".".join(str(p) for p in error["loc"])
    if error["type"] == "extra_forbidden":
        section = _section_model(error["loc"][:-1])
        allowed = ", ".join(section.model_fields) if section else "?"
        return f"{source}: unknown key {key!r} (allowed here: {allowed})"
    value = error.get("input")
    msg = error["msg"].removeprefix("Value error, ")
    if not error["loc"]:
        return f"{source}: {msg}"
    if isinstance(value, dict):
        return f"{source}: [{key}] is invalid: {msg}"
    return f"{source}: {key} = {value!r} is invalid: {msg}"


def _section_model(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = Config
    for part in loc:
        field = model.model_fields.get(str(part))
        if (
            field is None
            or not isinstance(field.annotation, type)
            or not issubclass(field.annotation, BaseModel)
        ):
            return None
        model = field.annotation
    return model


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load defaults, then the TOML file (if any), then `section.key=value` overrides; validate all."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        file = Path(path)
        source = str(file)
        if not file.is_file():
            raise ConfigError(
                f"config file {file} does not exist (pass --config with a TOML file, e.g. conf/demo.toml)"
            )
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    for item in overrides or []:
        parts, value = _parse_override(item)
        patch: dict[str, Any] = {parts[-1]: value}
        for part in reversed(parts[:-1]):
            patch = {part: patch}
        data = _merge(data, patch)
    if overrides:
        source = f"{source} + --set"
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("; ".join(_describe(e, source) for e in exc.errors())) from None
