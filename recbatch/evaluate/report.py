"""report.md and PNG plots from metrics.json: the comparison a reader of an evaluation needs.

Plots (matplotlib, Agg backend, no display needed): training_curves.png (loss and
validation NDCG per epoch of every trained model), metric_bars.png (HR/NDCG/MRR at the
primary K, models beside baselines), recall_at_k.png and long_tail.png (share of
recommendations per popularity decile). Everything is read from the metrics dict, so a
report can be rebuilt from metrics.json alone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from recbatch.core.metrics import BEYOND_ACCURACY, METRIC_NAMES

SAMPLED_WARNING = (
    "> **Warning: sampled protocol.** Each test item was ranked among a sample of unseen items "
    "(as in the NCF paper), not among all items. Sampled metrics are inflated and can even reorder "
    "models relative to full ranking (Krichene & Rendle, *On Sampled Metrics for Item "
    "Recommendation*, KDD 2020); use them only to compare with published tables."
)


def _plots(metrics: dict[str, Any], out: Path) -> list[tuple[str, str]]:
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = metrics["primary_k"]
    names = list(metrics["models"])
    made: list[tuple[str, str]] = []

    histories = {m: h for m, h in metrics.get("histories", {}).items() if h.get("loss")}
    if histories:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        for name, hist in histories.items():
            ax1.plot(range(1, len(hist["loss"]) + 1), hist["loss"], marker=".", label=name)
            if hist.get("val_ndcg"):
                ax2.plot(range(1, len(hist["val_ndcg"]) + 1), hist["val_ndcg"], marker=".", label=name)
        ax1.set(title="training loss", xlabel="epoch")
        ax2.set(title="validation NDCG (early stopping)", xlabel="epoch")
        ax1.legend()
        if any(h.get("val_ndcg") for h in histories.values()):
            ax2.legend()
        fig.tight_layout()
        fig.savefig(out / "training_curves.png", dpi=100)
        plt.close(fig)
        made.append(("Training curves", "training_curves.png"))

    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(names)), 4))
    shown = ("hr", "ndcg", "mrr")
    width = 0.8 / len(shown)
    for j, metric in enumerate(shown):
        values = [metrics["models"][n].get(f"{metric}@{k}", 0.0) for n in names]
        ax.bar([i + j * width for i in range(len(names))], values, width, label=f"{metric}@{k}")
    ax.set_xticks([i + width for i in range(len(names))], names, rotation=20)
    ax.set(title=f"models vs baselines at K={k}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "metric_bars.png", dpi=100)
    plt.close(fig)
    made.append(("Metrics of every model and baseline", "metric_bars.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    for name in names:
        ax.plot(
            metrics["k"],
            [metrics["models"][name][f"recall@{kk}"] for kk in metrics["k"]],
            marker="o",
            label=name,
        )
    ax.set(title="recall@K", xlabel="K")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "recall_at_k.png", dpi=100)
    plt.close(fig)
    made.append(("Recall at every K", "recall_at_k.png"))

    tails = metrics.get("long_tail", {})
    if tails:
        fig, ax = plt.subplots(figsize=(7, 4))
        for name, shares in tails.items():
            ax.plot(range(1, len(shares) + 1), shares, marker="o", label=name)
        ax.set(
            title=f"long tail: share of top-{k} slots per item-popularity decile",
            xlabel="popularity decile (1 = most popular 10% of items)",
            ylabel="share of recommendations",
        )
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "long_tail.png", dpi=100)
        plt.close(fig)
        made.append(("Long-tail coverage", "long_tail.png"))
    return made


def _table(metrics: dict[str, Any], columns: list[str]) -> list[str]:
    lines = ["| model | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, scores in metrics["models"].items():
        cells = [f"{scores[c]:.4f}" if c in scores else "–" for c in columns]
        label = f"**{name}**" if name in metrics.get("trained_models", []) else name
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def render_markdown(metrics: dict[str, Any], plots: list[tuple[str, str]]) -> str:
    """The report text: protocol, comparison tables, personalisation, plots."""
    k = metrics["primary_k"]
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
    trained = [m for m in metrics.get("trained_models", []) if m in metrics["models"]]
    if trained:
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
        lines += [line + ".", ""]
    lines += [f"## Metrics at K = {k}", ""]
    lines += _table(metrics, [f"{m}@{k}" for m in (*METRIC_NAMES, *BEYOND_ACCURACY)])
    lines += ["", "## HR and NDCG at every K", ""]
    lines += _table(metrics, [f"{m}@{kk}" for kk in metrics["k"] for m in ("hr", "ndcg")])
    personal = metrics.get("personalisation", {})
    if personal:
        lines += [
            "",
            "## Does the model personalise?",
            "",
            "For random pairs of users: Kendall's tau between their scores of a random subset of items "
            f"(1 = the same order for everyone) and the share of pairs whose unmasked top-{k} lists are identical. "
            "The `seed` model's logit is a user term plus an item term, `a·e_u + b·e_i + c`, so it orders every "
            "user's items identically (tau = 1, identical lists): it is a learned popularity ranking and "
            "cannot personalise.",
            "",
            f"| model | Kendall tau | identical top-{k} share | pairs |",
            "|---|---|---|---|",
        ]
        for name, row in personal.items():
            lines.append(
                f"| {name} | {row['kendall_tau']:.3f} | {row['identical_top_k']:.2f} | {row['pairs']} |"
            )
    two_stage = metrics.get("two_stage", {})
    if two_stage:
        lines += [
            "",
            "## Two-stage scoring: what retrieval costs",
            "",
            "Each user's top-N unseen items by a dot-product retriever, re-ranked by the network model, against "
            "the network model's exact ranking of every unseen item (same users, same split). In batch scoring "
            "the same pipeline is a retriever run with `score.k = N` whose published table is the next run's "
            "`score.candidates`.",
            "",
            f"| pipeline | recall@{k} exact | recall@{k} two-stage | cost | exact top-{k} kept |",
            "|---|---|---|---|---|",
        ]
        for name, row in two_stage.items():
            lines.append(
                f"| {name} | {row['exact_recall']:.4f} | {row['recall']:.4f} | {row['recall_cost']:+.4f} "
                f"| {row['overlap']:.1%} |"
            )
    lines += ["", "## Plots", ""]
    for title, file in plots:
        lines += [f"### {title}", "", f"![{title}]({file})", ""]
    lines += [
        "Metric definitions: `recbatch/metrics.py` (binary relevance, averaged over users; coverage over the "
        "catalogue; novelty = mean self-information of recommended items; popularity_bias = share of "
        "recommendations from the 10% most popular items).",
        "",
    ]
    return "\n".join(lines)


def write_report(metrics: dict[str, Any], out_dir: Path) -> Path:
    """Write report.md and the PNG plots into `out_dir`; returns the report path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = _plots(metrics, out_dir)
    path = out_dir / "report.md"
    tmp = path.with_name(".report.md.tmp")
    tmp.write_text(render_markdown(metrics, plots), encoding="utf-8")
    os.replace(tmp, path)
    return path
