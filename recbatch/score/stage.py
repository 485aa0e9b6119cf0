"""The score stage: top-K recommendations for every user, and what the publish gate expects of them.

`run_score` resolves one ScoreRequest (recbatch.score.request) and derives both outputs
from it: the rows to publish (the Spark engine for the catalogue or the candidate table,
plus the popularity fallback) and each user's expected row count. Nothing is written:
the recommendations are lazy and are computed by the publish step's write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyspark.sql import functions as F

from recbatch.score.engine import attach_ids, score_users, user_indices
from recbatch.score.request import ScoreRequest, resolve_request
from recbatch.score.user_files import UserFiles

if TYPE_CHECKING:
    from types import TracebackType

    from pyspark.sql import DataFrame, SparkSession

    from recbatch.config import Config
    from recbatch.layout import RunLayout


@dataclass(frozen=True, eq=False)
class ScoreResult:
    """The stage's output: the table to publish, the publish gate's expectations, the request.

    `release()` (or leaving a `with` block) drops what the request cached; call it once the
    recommendations are written.
    """

    recommendations: DataFrame  # user_id, item_id, score, rank, source, model, run_id (lazy)
    expected: DataFrame  # user_id, expected: how many items each published user could get
    k_bound: int  # the most rows any user may get: score.k, or the longest candidate list
    request: ScoreRequest

    @property
    def manifest(self) -> dict[str, Any]:
        """The model manifest the rows were scored with."""
        return self.request.manifest

    def release(self) -> None:
        """Unpersist the cached fallback users (the recommendations need them until written)."""
        self.request.release()

    def __enter__(self) -> ScoreResult:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()


def run_score(spark: SparkSession, config: Config, layout: RunLayout, run_id: str) -> ScoreResult:
    """The score stage: top-K recommendations with original ids, and the expected rows per user.

    With score.exclude_seen every item the user interacted with (train and test) is excluded.
    With score.fallback = "popularity", users without a trained vector get popular items
    (source "fallback", recbatch.score.fallback); with score.candidates only the given pairs
    are ranked (recbatch.score.candidates).
    """
    request = resolve_request(spark, config, layout)
    try:
        recommendations = recommend(spark, request, run_id)
        expected = expected_rows(spark, request)
        return ScoreResult(recommendations, expected, k_bound(request, expected), request)
    except BaseException:
        request.release()  # nobody else holds the request to release it
        raise


def recommend(spark: SparkSession, request: ScoreRequest, run_id: str) -> DataFrame:
    """user_id, item_id, score, rank, source, model, run_id: the rows `request` asks for (lazy)."""
    if request.candidates is not None:
        scored = _rank_candidates(spark, request, request.candidates)
    else:
        scored = _rank_catalogue(spark, request)
    rows = attach_ids(scored, request.user_vocab, request.item_vocab, request.model, run_id)
    if request.cold is None:
        return rows
    fallback = _fallback(spark, request)
    return rows.unionByName(attach_ids(fallback, None, request.item_vocab, request.model, run_id, "fallback"))


def _rank_catalogue(spark: SparkSession, request: ScoreRequest) -> DataFrame:
    """user_idx, item_idx, score, rank: exact top-k over the (allowed) catalogue for the model's users."""
    plan = request.plan
    if plan is None:
        raise ValueError("a catalogue job needs a ScoreRequest with a plan (see resolve_request)")
    from_files = plan.user_input == "files"
    return score_users(
        spark,
        _user_files(request) if from_files else request.user_factors(spark),
        request.items,
        None if from_files else request.seen,
        k=request.score.k,
        user_block=plan.user_block,
        activation=request.activation,
        partitions=plan.partitions,
        item_tile=plan.item_tile,
        item_transport=plan.item_transport,
        allowed_items=request.allowed,
        network=request.network,
        rules=request.rules,
    )


def _user_files(request: ScoreRequest) -> UserFiles:
    """The files input: the same users as `ScoreRequest.user_factors`, as index arrays."""
    layout, cold = request.layout, request.cold
    return UserFiles(
        str(layout.user_factors),
        None if request.seen is None else str(layout.interactions),
        request.n_model_users,
        only=None if request.subset is None else user_indices(request.subset),
        skip=None if cold is None else user_indices(cold.filter(F.col("user_idx").isNotNull())),
    )


def _rank_candidates(spark: SparkSession, request: ScoreRequest, candidates: DataFrame) -> DataFrame:
    """user_idx, item_idx, score, rank of each user's eligible `candidates` (score.candidates)."""
    from recbatch.score.candidates import score_candidates

    return score_candidates(
        spark,
        request.user_factors(spark),
        request.items,
        candidates,
        request.per_user,
        request.activation,
        request.network,
    )


def _fallback(spark: SparkSession, request: ScoreRequest) -> DataFrame:
    """user_id, item_idx, score, rank: the most popular allowed unseen train items for the cold users."""
    from recbatch.score.fallback import fallback_recommendations, popularity_order

    order, share = popularity_order(spark, request.train, request.n_items, request.allowed)
    by_id = request.filtered if request.seen is not None else None
    rules = request.rules
    categories, cap = (rules.categories, rules.cap) if rules is not None else (None, 0)
    return fallback_recommendations(
        spark, request.cold, request.seen, order, share, request.score.k, by_id, categories, cap
    )


def expected_rows(spark: SparkSession, request: ScoreRequest) -> DataFrame:
    """user_id, expected: how many items each published user can be recommended (lazy).

    Publishing checks each user got exactly min(k, expected) rows: the allowed unseen
    catalogue, or the user's eligible candidates. Users listed in score.users but unknown
    to the model count when they get the fallback (nothing seen, the whole allowed catalogue).
    """
    if request.candidates is not None:
        from recbatch.score.candidates import expected_candidate_rows

        pairs = request.candidates
        if request.subset is not None:
            pairs = pairs.join(request.subset.select("user_idx"), on="user_idx", how="left_semi")
        return expected_candidate_rows(pairs, request.user_vocab, request.per_user)
    users = _published_users(request)
    if request.rules is not None and request.rules.cap > 0:
        return _capped_expected_rows(spark, request, users)
    n_allowed = request.n_items if request.allowed is None else len(request.allowed)
    if request.seen is None:
        return users.select(F.col("user_id"), F.lit(n_allowed).cast("long").alias("expected"))
    seen, by_id = request.seen, request.filtered
    if request.allowed is not None:
        from recbatch.score.filters import allowed_frame

        # Only seen items that could have been recommended shrink a user's candidate set.
        allowed = F.broadcast(allowed_frame(spark, request.allowed))
        seen = seen.join(allowed, on="item_idx", how="left_semi")
        by_id = None if by_id is None else by_id.join(allowed, on="item_idx", how="left_semi")
    n_seen = seen.groupBy("user_idx").agg(F.countDistinct("item_idx").alias("n_seen"))
    rows = users.join(n_seen, on="user_idx", how="left")
    if by_id is not None:  # users the filters removed: their seen items are known by user_id
        n_by_id = by_id.groupBy(F.col("user_id").cast("string").alias("user_id")).agg(
            F.countDistinct("item_idx").alias("n_seen_by_id")
        )
        rows = rows.join(n_by_id, on="user_id", how="left")
    else:
        rows = rows.withColumn("n_seen_by_id", F.lit(None).cast("long"))
    n = F.coalesce(F.col("n_seen"), F.col("n_seen_by_id"), F.lit(0))
    return rows.select(F.col("user_id"), (F.lit(n_allowed) - n).cast("long").alias("expected"))


def _capped_expected_rows(spark: SparkSession, request: ScoreRequest, users: DataFrame) -> DataFrame:
    """user_id, expected under score.rules.category_cap: the capped list length less what seen items cost.

    The same shape as the uncapped count (by user_idx, else by user_id for users the filters
    removed); users left short of k are counted in a warning (recbatch.score.rules).
    """
    from recbatch.score.rules import cap_losses, capped_list_rows, warn_short

    rules = request.rules
    assert rules is not None
    full = capped_list_rows(rules, request.allowed)
    rows = users.withColumn("lost", F.lit(None).cast("long")).withColumn(
        "lost_by_id", F.lit(None).cast("long")
    )
    if request.seen is not None:
        lost = cap_losses(spark, request.seen, "user_idx", rules, request.allowed)
        rows = users.join(lost, on="user_idx", how="left").withColumn("lost_by_id", F.lit(None).cast("long"))
        if request.filtered is not None:
            by_id = request.filtered.select(F.col("user_id").cast("string").alias("user_id"), "item_idx")
            lost_by_id = cap_losses(spark, by_id, "user_id", rules, request.allowed)
            rows = rows.drop("lost_by_id").join(
                lost_by_id.withColumnRenamed("lost", "lost_by_id"), on="user_id", how="left"
            )
    n = F.coalesce(F.col("lost"), F.col("lost_by_id"), F.lit(0))
    expected = rows.select(F.col("user_id"), (F.lit(full) - n).cast("long").alias("expected"))
    warn_short(expected, request.score.k)
    return expected


def _published_users(request: ScoreRequest) -> DataFrame:
    """user_id, user_idx (null: unknown to the model) of every user the catalogue job gives rows."""
    vocab = request.user_vocab.select("user_idx", "user_id")
    if request.listed is None:
        if request.filtered is None:
            return vocab
        # Users prepare's filters removed get the fallback: a null user_idx.
        removed = request.filtered.select(F.col("user_id").cast("string").alias("user_id")).distinct()
        return vocab.unionByName(removed.select(F.lit(None).cast("int").alias("user_idx"), "user_id"))
    if request.fallback:
        # Unknown listed users get the fallback: a null user_idx, nothing seen.
        return request.listed.join(vocab, on="user_id", how="left")
    return request.subset  # the listed users the model knows: the others get no rows


def k_bound(request: ScoreRequest, expected: DataFrame) -> int:
    """The most rows any user may get: score.k, or with every candidate kept the longest list."""
    if request.per_user is not None:
        return request.per_user
    return int(expected.agg(F.max("expected")).first()[0] or 1)
