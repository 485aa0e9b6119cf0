"""The PNG plots of the evaluation report (matplotlib, Agg backend: no display needed).

training_curves.png (loss and validation NDCG per epoch of every trained model),
metric_bars.png (HR/NDCG/MRR at the primary K, models beside baselines), recall_at_k.png
and long_tail.png (share of recommendations per popularity decile). Each is drawn from the
metrics dict alone, so plots can be rebuilt from metrics.json.
"""

from __future__ import annotations

import io
import os
from typing import Any

from recbatch.storage import Location, location


def _pyplot() -> Any:
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, path: Location) -> None:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    location(path).write_bytes(buffer.getvalue())


def training_curves(plt: Any, metrics: dict[str, Any], path: Location) -> bool:
    """Loss and validation NDCG per epoch of every trained model with a history; False if none."""
    histories = {m: h for m, h in metrics.get("histories", {}).items() if h.get("loss")}
    if not histories:
        return False
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
    _save(plt, fig, path)
    return True


def metric_bars(plt: Any, metrics: dict[str, Any], path: Location) -> bool:
    """HR, NDCG and MRR at the primary K of every model and baseline, as grouped bars."""
    k, names = metrics["primary_k"], list(metrics["models"])
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(names)), 4))
    shown = ("hr", "ndcg", "mrr")
    width = 0.8 / len(shown)
    for j, metric in enumerate(shown):
        values = [metrics["models"][n].get(f"{metric}@{k}", 0.0) for n in names]
        ax.bar([i + j * width for i in range(len(names))], values, width, label=f"{metric}@{k}")
    ax.set_xticks([i + width for i in range(len(names))], names, rotation=20)
    ax.set(title=f"models vs baselines at K={k}")
    ax.legend()
    _save(plt, fig, path)
    return True


def recall_at_k(plt: Any, metrics: dict[str, Any], path: Location) -> bool:
    """Recall at every K, one line per model and baseline."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in metrics["models"]:
        ax.plot(
            metrics["k"],
            [metrics["models"][name][f"recall@{kk}"] for kk in metrics["k"]],
            marker="o",
            label=name,
        )
    ax.set(title="recall@K", xlabel="K")
    ax.legend()
    _save(plt, fig, path)
    return True


def long_tail(plt: Any, metrics: dict[str, Any], path: Location) -> bool:
    """Share of top-K slots per item-popularity decile; False without long-tail figures."""
    tails = metrics.get("long_tail", {})
    if not tails:
        return False
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, shares in tails.items():
        ax.plot(range(1, len(shares) + 1), shares, marker="o", label=name)
    ax.set(
        title=f"long tail: share of top-{metrics['primary_k']} slots per item-popularity decile",
        xlabel="popularity decile (1 = most popular 10% of items)",
        ylabel="share of recommendations",
    )
    ax.legend()
    _save(plt, fig, path)
    return True


PLOTS = (
    ("Training curves", "training_curves.png", training_curves),
    ("Metrics of every model and baseline", "metric_bars.png", metric_bars),
    ("Recall at every K", "recall_at_k.png", recall_at_k),
    ("Long-tail coverage", "long_tail.png", long_tail),
)


def write_plots(metrics: dict[str, Any], out: Location) -> list[tuple[str, str]]:
    """Draw every plot the metrics allow into `out`; returns (title, file name) of those made."""
    plt = _pyplot()
    return [(title, file) for title, file, draw in PLOTS if draw(plt, metrics, out / file)]
