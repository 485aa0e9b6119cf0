"""What one score run ranks, for whom, from which items: resolved once, used twice.

`resolve_request` reads and checks every input of a run a single time (the manifest,
item factors, vocabularies, score.users, the allow/deny lists, the candidate table, seen
interactions, network weights), decides who is ranked by the model and who gets the
popularity fallback, and plans the job. The stage (recbatch.score.stage) builds both the
recommendations and the publish gate's expected rows per user from the one ScoreRequest,
so a rule changed for one cannot be missed by the other.

Missing inputs are DataError naming the command to run (exit 3); a model that does not
match the prepared data, or broken network weights, are PipelineError (exit 4).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from recbatch.artifacts import factor_shape, read_factors, read_manifest, read_network
from recbatch.errors import DataError, PipelineError
from recbatch.score.filters import allowed_items, cold_start, listed_users, selected_users
from recbatch.score.plan import ScorePlan, plan_for
from recbatch.storage import count_rows

if TYPE_CHECKING:
    import numpy as np
    from pyspark.sql import DataFrame, SparkSession

    from recbatch.config import Config, ScoreConfig
    from recbatch.core.network import NetworkWeights
    from recbatch.core.rules import ListRules
    from recbatch.layout import RunLayout

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)  # holds DataFrames and arrays: identity, not field equality
class ScoreRequest:
    """One score run's inputs, each read and checked once. DataFrames are lazy, except `cold`."""

    score: ScoreConfig
    layout: RunLayout
    manifest: dict[str, Any]
    items: np.ndarray  # item factors: row r holds item_idx r
    user_vocab: DataFrame  # user_id, user_idx
    item_vocab: DataFrame  # item_id, item_idx
    n_model_users: int  # rows of the user-factor file, equal to the user vocabulary's
    listed: DataFrame | None  # user_id of the score.users table (None: every user)
    subset: DataFrame | None  # user_idx, user_id of the listed users the model knows (None: every user)
    seen: DataFrame | None  # user_idx, item_idx never recommended (None: score.exclude_seen is off)
    allowed: np.ndarray | None  # ascending item indices that may be recommended (None: every item)
    candidates: DataFrame | None  # eligible (user_idx, item_idx) pairs of score.candidates (None: catalogue)
    network: NetworkWeights | None  # mlp/neumf dense weights (None: a dot-product model)
    plan: ScorePlan | None  # the catalogue job's plan (None in candidate mode: no blocks to size)
    train: DataFrame | None  # the rows the model was fitted on: the fallback ranks by their popularity
    cold: DataFrame | None  # cached user_id, user_idx (null if unknown) of the fallback's users, or None
    filtered: DataFrame | None = None  # user_id, item_idx of users prepare's filters removed (fallback)
    rules: ListRules | None = None  # the category cap / MMR re-rank the workers apply (None: by score)

    @property
    def model(self) -> str:
        """The model's name, as the published rows carry it."""
        return str(self.manifest["model"])

    @property
    def activation(self) -> str:
        """The manifest's score activation (validated by recbatch.artifacts.read_manifest)."""
        return str(self.manifest["score_activation"])

    @property
    def n_items(self) -> int:
        """Catalogue size: item factor rows, equal to the item vocabulary's."""
        return int(self.items.shape[0])

    @property
    def per_user(self) -> int | None:
        """Rows kept per user: score.k, or None when every candidate is kept (candidates_output "all")."""
        if self.candidates is not None and self.score.candidates_output == "all":
            return None
        return self.score.k

    @property
    def fallback(self) -> bool:
        """Whether users without a trained vector get popular items (never in candidate mode)."""
        return cold_start(self.score)

    def user_factors(self, spark: SparkSession) -> DataFrame:
        """user_idx, factors of the users the model ranks: listed ones (if any), minus fallback users."""
        factors = spark.read.parquet(str(self.layout.user_factors))
        if self.subset is not None:
            factors = factors.join(self.subset.select("user_idx"), on="user_idx", how="left_semi")
        if self.cold is not None:
            factors = factors.join(self.cold.select("user_idx"), on="user_idx", how="left_anti")
        return factors

    def release(self) -> None:
        """Drop the cached fallback users; call once the recommendations are written."""
        if self.cold is not None:
            self.cold.unpersist()


def resolve_request(spark: SparkSession, config: Config, layout: RunLayout) -> ScoreRequest:
    """Read and check everything one score run needs; the only place the stage reads its inputs."""
    s = config.score
    _require(layout, s.exclude_seen, cold_start(s))
    manifest = read_manifest(layout.model_manifest)
    items = read_factors(layout.item_factors, "item_idx")
    user_vocab = spark.read.parquet(str(layout.user_vocab))
    item_vocab = spark.read.parquet(str(layout.item_vocab))
    n_model_users = count_rows(layout.user_vocab)
    _check_counts("items", items.shape[0], count_rows(layout.item_vocab))
    _check_counts("users", factor_shape(layout.user_factors)[0], n_model_users)
    listed = listed_users(spark, s)
    subset = selected_users(s, listed, user_vocab)
    seen = (
        spark.read.parquet(str(layout.interactions)).select("user_idx", "item_idx")
        if s.exclude_seen
        else None
    )
    allowed = allowed_items(spark, s, item_vocab, items.shape[0])
    allowed, rules = _business_rules(s, layout, allowed, items.shape[0], network_model=_is_network(manifest))
    candidates = None
    if s.candidates is not None:
        from recbatch.score.candidates import eligible_candidates, read_candidates

        pairs, _ = read_candidates(spark, str(s.candidates), user_vocab, item_vocab)
        candidates = eligible_candidates(pairs, seen, allowed)
    network = _network(layout, manifest, items.shape[1])  # mlp/neumf: ranked by their network
    plan = None
    if candidates is None:
        n_users = n_model_users if subset is None else subset.count()
        seen_pairs = count_rows(layout.interactions) if seen is not None else 0
        plan = _plan(spark, config, n_users, items, network, seen_pairs)
    train = spark.read.parquet(str(fitted_rows(layout, manifest))) if cold_start(s) else None
    filtered = _filtered_users(spark, layout) if cold_start(s) and listed is None else None
    # Last: nothing after it can fail, so the cached frame is always handed to the caller.
    cold = None if train is None else _cold_users(listed, user_vocab, train, filtered)
    return ScoreRequest(
        score=s,
        layout=layout,
        manifest=manifest,
        items=items,
        user_vocab=user_vocab,
        item_vocab=item_vocab,
        n_model_users=n_model_users,
        listed=listed,
        subset=subset,
        seen=seen,
        allowed=allowed,
        candidates=candidates,
        network=network,
        plan=plan,
        train=train,
        cold=cold,
        filtered=filtered,
        rules=rules,
    )


def _is_network(manifest: dict[str, Any]) -> bool:
    return str(manifest.get("model")) in ("mlp", "neumf")


def _business_rules(
    s: ScoreConfig, layout: RunLayout, allowed: np.ndarray | None, n_items: int, network_model: bool
) -> tuple[np.ndarray | None, ListRules | None]:
    """[score.rules]: the allowed items less the unavailable ones, and the list rules (recbatch.score.rules)."""
    from recbatch.io.item_metadata import list_rules, read_rules_metadata
    from recbatch.score.rules import check_fill, with_availability

    metadata = read_rules_metadata(s.rules, layout.item_vocab)
    allowed = with_availability(allowed, metadata, s.rules, layout.date, n_items)
    rules = list_rules(s.rules, metadata)
    if s.candidates is None:
        check_fill(rules, allowed, n_items, s.k)
    if rules is not None and rules.mmr and network_model:
        log.info("score.rules.mmr_lambda: item similarity is the cosine of the network's item embedding rows")
    return allowed, rules


def _require(layout: RunLayout, exclude_seen: bool, fallback: bool) -> None:
    """DataError naming the command to run when an input of the stage does not exist yet."""
    needed = {
        "user factors": (layout.user_factors, "train"),
        "item factors": (layout.item_factors, "train"),
        "model manifest": (layout.model_manifest, "train"),
        "user vocabulary": (layout.user_vocab, "prepare"),
        "item vocabulary": (layout.item_vocab, "prepare"),
    }
    if exclude_seen:
        needed["interactions"] = (layout.interactions, "prepare")
    if fallback:
        needed["train split"] = (layout.train, "prepare")
    for what, (path, stage) in needed.items():
        if not path.exists():
            raise DataError(
                f"{what} not found at {path}; run `recbatch {stage} --date {layout.date}` first"
                f" (or `recbatch run --date {layout.date}`)"
            )


def _check_counts(what: str, model_rows: int, vocab_rows: int) -> None:
    if model_rows != vocab_rows:
        raise PipelineError(
            f"the model has {model_rows} {what} but the prepared vocabulary has {vocab_rows}; "
            "the model was trained on other data, rerun `recbatch train`"
        )


def _network(layout: RunLayout, manifest: dict[str, Any], dim: int) -> NetworkWeights | None:
    """The mlp/neumf network weights, checked against the factors' width; None for dot models."""
    network = read_network(layout.model_dir, manifest)
    if network is not None:
        try:
            network.check(dim)
        except ValueError as exc:  # broken artifacts, not a caller's mistake: exit code 4
            raise PipelineError(str(exc)) from None
    return network


def _plan(
    spark: SparkSession,
    config: Config,
    n_users: int,
    items: np.ndarray,
    network: NetworkWeights | None,
    seen_pairs: int,
) -> ScorePlan:
    """The memory plan of the catalogue job, logged; `seen_pairs`: interactions excluded (0: none)."""
    widths = None if network is None else network.widths
    plan = plan_for(spark, config, n_users, items.shape[0], items.shape[1], widths, seen_pairs)
    log.info("%s", plan.describe())
    return plan


def fitted_rows(layout: RunLayout, manifest: dict[str, Any]) -> Any:
    """The prepared rows the model saw: every interaction (manifest fit_data "all") or the train split."""
    return layout.interactions if manifest.get("fit_data") == "all" else layout.train


def _filtered_users(spark: SparkSession, layout: RunLayout) -> DataFrame | None:
    """user_id, item_idx (null: an item outside the vocabulary) of the users prepare's filters
    removed, or None when prepare wrote none (earlier runs) or removed nobody."""
    if not layout.filtered_users.exists():
        return None
    return spark.read.parquet(str(layout.filtered_users))


def _cold_users(
    listed: DataFrame | None, user_vocab: DataFrame, train: DataFrame, filtered: DataFrame | None = None
) -> DataFrame | None:
    """user_id, user_idx (null if unknown) of the requested users without a trained vector, or None.

    With `filtered`, the users prepare's filters removed join them with a null user_idx.
    Cached: the engine skips these users, the fallback ranks them, and both read the frame.
    """
    from pyspark.sql import functions as F

    from recbatch.score.fallback import users_without_vectors

    cold = users_without_vectors(listed, user_vocab, train)
    if filtered is not None:
        removed = filtered.select(F.col("user_id").cast("string").alias("user_id")).distinct()
        cold = cold.unionByName(removed.select("user_id", F.lit(None).cast("int").alias("user_idx")))
    cold = cold.cache()
    n_cold = cold.count()
    if n_cold == 0:
        cold.unpersist()
        return None
    log.info("score: %d users have no trained vector; they get the popularity fallback", n_cold)
    return cold
