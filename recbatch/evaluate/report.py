"""report.md and PNG plots from metrics.json: the comparison a reader of an evaluation needs.

The report: protocol, the best trained model against Spark ALS, metric tables, the
personalisation check, the cost of two-stage scoring, then the plots
(`recbatch.evaluate.plots`). Everything is read from the metrics dict, so a report can be
rebuilt from metrics.json alone.
"""

from __future__ import annotations

from typing import Any

from recbatch.core.metrics import BEYOND_ACCURACY, METRIC_NAMES
from recbatch.evaluate.plots import write_plots
from recbatch.storage import Location, location

SAMPLED_WARNING = (
    "> **Warning: sampled protocol.** Each test item was ranked among a sample of unseen items "
    "(as in the NCF paper), not among all items. Sampled metrics are inflated and can even reorder "
    "models relative to full ranking (Krichene & Rendle, *On Sampled Metrics for Item "
    "Recommendation*, KDD 2020); use them only to compare with published tables."
)

PERSONALISATION_TEXT = (
    "For random pairs of users: Kendall's tau between their scores of a random subset of items "
    "(1 = the same order for everyone) and the share of pairs whose unmasked top-{k} lists are identical. "
    "The `seed` model's logit is a user term plus an item term, `a·e_u + b·e_i + c`, so it orders every "
    "user's items identically (tau = 1, identical lists): it is a learned popularity ranking and "
    "cannot personalise."
)

TWO_STAGE_TEXT = (
    "Each user's top-N unseen items by a dot-product retriever, re-ranked by the network model, against "
    "the network model's exact ranking of every unseen item (same users, same split). In batch scoring "
    "the same pipeline is a retriever run with `score.k = N` whose published table is the next run's "
    "`score.candidates`."
)

DEFINITIONS = (
    "Metric definitions: `recbatch/core/metrics.py` (binary relevance, averaged over users; coverage over the "
    "catalogue; novelty = mean self-information of recommended items; popularity_bias = share of "
    "recommendations from the 10% most popular items)."
)


def _table(metrics: dict[str, Any], columns: list[str]) -> list[str]:
    lines = ["| model | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, scores in metrics["models"].items():
        cells = [f"{scores[c]:.4f}" if c in scores else "–" for c in columns]
        label = f"**{name}**" if name in metrics.get("trained_models", []) else name
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def _header(metrics: dict[str, Any]) -> list[str]:
    lines = [
        "# recbatch evaluation report",
        "",
        f"- protocol: {metrics['protocol']}",
        f"- users evaluated: {metrics['users_evaluated']} (of {metrics.get('users_with_test', '?')} with test "
        f"items), catalogue: {metrics['num_items']} items",
        "- trained models in **bold**; the rest are baselines computed in the same run on the same split",
        "",
    ]
    if metrics.get("protocol_name") == "sampled":
        lines += [SAMPLED_WARNING, ""]
    return lines


def _verdict(metrics: dict[str, Any]) -> list[str]:
    """The best trained model by NDCG@k and whether it beats Spark ALS (when ALS ran)."""
    k = metrics["primary_k"]
    trained = [m for m in metrics.get("trained_models", []) if m in metrics["models"]]
    if not trained:
        return []
    best = max(trained, key=lambda m: metrics["models"][m][f"ndcg@{k}"])
    scores = metrics["models"][best]
    line = f"Best trained model by NDCG@{k}: **{best}** (HR@{k} {scores[f'hr@{k}']:.4f}, NDCG@{k} {scores[f'ndcg@{k}']:.4f})"
    if "als" in metrics["models"]:
        als = metrics["models"]["als"]
        verdict = (
            "beats"
            if scores[f"ndcg@{k}"] > als[f"ndcg@{k}"] and scores[f"hr@{k}"] > als[f"hr@{k}"]
            else "does not beat"
        )
        line += f"; it {verdict} Spark ALS (HR@{k} {als[f'hr@{k}']:.4f}, NDCG@{k} {als[f'ndcg@{k}']:.4f})"
    return [line + ".", ""]


def _tables(metrics: dict[str, Any]) -> list[str]:
    k = metrics["primary_k"]
    lines = [f"## Metrics at K = {k}", ""]
    lines += _table(metrics, [f"{m}@{k}" for m in (*METRIC_NAMES, *BEYOND_ACCURACY)])
    lines += ["", "## HR and NDCG at every K", ""]
    lines += _table(metrics, [f"{m}@{kk}" for kk in metrics["k"] for m in ("hr", "ndcg")])
    return lines


def _personalisation(metrics: dict[str, Any]) -> list[str]:
    personal = metrics.get("personalisation", {})
    if not personal:
        return []
    k = metrics["primary_k"]
    lines = ["", "## Does the model personalise?", "", PERSONALISATION_TEXT.format(k=k), ""]
    lines += [f"| model | Kendall tau | identical top-{k} share | pairs |", "|---|---|---|---|"]
    for name, row in personal.items():
        lines.append(f"| {name} | {row['kendall_tau']:.3f} | {row['identical_top_k']:.2f} | {row['pairs']} |")
    return lines


def _two_stage(metrics: dict[str, Any]) -> list[str]:
    two_stage = metrics.get("two_stage", {})
    if not two_stage:
        return []
    k = metrics["primary_k"]
    lines = ["", "## Two-stage scoring: what retrieval costs", "", TWO_STAGE_TEXT, ""]
    lines += [
        f"| pipeline | recall@{k} exact | recall@{k} two-stage | cost | exact top-{k} kept |",
        "|---|---|---|---|---|",
    ]
    for name, row in two_stage.items():
        lines.append(
            f"| {name} | {row['exact_recall']:.4f} | {row['recall']:.4f} | {row['recall_cost']:+.4f} "
            f"| {row['overlap']:.1%} |"
        )
    return lines


RULES_TEXT = (
    "The trained model's lists for the same users by score alone and through [score.rules] (the "
    "selection the scoring workers run), on the evaluation split. Intra-list diversity: mean cosine "
    "distance between a list's item vectors; categories: distinct categories per list; max per "
    "category: the most items one category takes in any list."
)


def _rules(metrics: dict[str, Any]) -> list[str]:
    effect = metrics.get("rules") or {}
    if not effect:
        return []
    k = effect["k"]
    settings = f"category_cap = {effect['category_cap']}, mmr_lambda = {effect['mmr_lambda']}, pool = {effect['pool']}"
    lines = [
        "",
        f"## Business rules: what they cost at K = {k}",
        "",
        f"{RULES_TEXT} Settings: {settings}.",
        "",
    ]
    columns = [
        ("hr", f"HR@{k}"),
        ("ndcg", f"NDCG@{k}"),
        ("coverage", "coverage"),
        ("intra_list_diversity", "intra-list diversity"),
        ("categories", "categories"),
        ("max_per_category", "max per category"),
    ]
    shown = [(key, title) for key, title in columns if key in effect["by_score"]]
    lines += ["| lists | " + " | ".join(t for _, t in shown) + " |", "|---" * (len(shown) + 1) + "|"]
    for label, key in (("by score", "by_score"), ("with rules", "with_rules")):
        row = effect[key]
        cells = [str(row[c]) if c == "max_per_category" else f"{row[c]:.4f}" for c, _ in shown]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"NDCG@{k} cost of the rules: {effect['ndcg_cost']:+.4f} ({effect['ndcg_cost_share']:+.1%}).",
    ]
    return lines


def render_markdown(metrics: dict[str, Any], plots: list[tuple[str, str]]) -> str:
    """The report text: protocol, comparison tables, personalisation, plots."""
    lines = _header(metrics) + _verdict(metrics) + _tables(metrics)
    lines += _personalisation(metrics) + _two_stage(metrics) + _rules(metrics)
    lines += ["", "## Plots", ""]
    for title, file in plots:
        lines += [f"### {title}", "", f"![{title}]({file})", ""]
    lines += [DEFINITIONS, ""]
    return "\n".join(lines)


def write_report(metrics: dict[str, Any], out_dir: Location) -> Location:
    """Write report.md and the PNG plots into `out_dir`; returns the report path."""
    out_dir = location(out_dir)
    plots = write_plots(metrics, out_dir)
    path = out_dir / "report.md"
    path.write_text(render_markdown(metrics, plots))
    return path
