"""Exact NCF (mlp / neumf) scores for a block of users against many items, in numpy only.

The train stage writes, for mlp and neumf, the embedding rows as user/item "factors" and
the network's dense weights as `network.npz` beside model.keras (manifest "scoring":
"network"). This module turns those into scores without TensorFlow, so evaluation and the
Spark scoring workers can use it:

    user row = [p_gmf (gmf_dim) ⧺ p_mlp],  item row = [q_gmf ⧺ q_mlp]
    h_0  = relu(p_mlp W0[:m] + q_mlp W0[m:] + b0)          (m = len(p_mlp))
    h_l  = relu(h_{l-1} W_l + b_l)
    logit = out_w · [p_gmf ⊙ q_gmf ⧺ h_L] + out_b           (score = sigmoid(logit))

The first layer is linear in the concatenation, so it is split into a user part and an item
part computed once per row: a block of b users against n items costs b·n·width floats,
so choose b with that in mind (`block_users_for`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

NETWORK_FILE = "network.npz"


def save_network(path: Path, weights: dict[str, np.ndarray]) -> None:
    """Write the weights dict (gmf_dim, n_layers, w<l>, b<l>, out_w, out_b) as an .npz file."""
    import os

    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, **weights)
    os.replace(tmp, path)


def load_network(path: Path) -> dict[str, np.ndarray]:
    """The weights written by `save_network`."""
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def block_users_for(weights: dict[str, Any], n_items: int, budget_floats: int = 16_000_000) -> int:
    """Users per block so that one block's hidden activations stay within `budget_floats`."""
    widths = [weights[f"w{i}"].shape[1] for i in range(int(weights["n_layers"]))] or [1]
    return max(1, budget_floats // max(1, n_items * max(widths)))


def network_logits(weights: dict[str, Any], users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Logits [len(users), len(items)] of every (user row, item row) pair."""
    users = np.asarray(users, dtype=np.float32)
    items = np.asarray(items, dtype=np.float32)
    g = int(weights["gmf_dim"])
    n_layers = int(weights["n_layers"])
    out_w = np.asarray(weights["out_w"], dtype=np.float32).ravel()
    logits = np.full((len(users), len(items)), float(np.ravel(weights["out_b"])[0]), dtype=np.float32)
    if g:
        logits += (users[:, :g] * out_w[:g]) @ items[:, :g].T
    pm, qm = users[:, g:], items[:, g:]
    m = pm.shape[1]
    if n_layers == 0:
        logits += (pm @ out_w[g : g + m])[:, None] + (qm @ out_w[g + m :])[None, :]
        return logits
    w0 = weights["w0"]
    h = (pm @ w0[:m])[:, None, :] + ((qm @ w0[m:]) + weights["b0"])[None, :, :]
    # Flattened to 2-D so each layer is one BLAS matrix multiply (3-D matmul is far slower).
    h = np.maximum(h, 0.0, out=h).reshape(-1, h.shape[-1])
    for layer in range(1, n_layers):
        h = h @ weights[f"w{layer}"]
        h += weights[f"b{layer}"]
        np.maximum(h, 0.0, out=h)
    logits += (h @ out_w[g:]).reshape(len(users), len(items))
    return logits


def network_pair_logits(weights: dict[str, Any], users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Logits of aligned pairs: row r of `users` with row r of `items` (candidate scoring)."""
    users = np.asarray(users, dtype=np.float32)
    items = np.asarray(items, dtype=np.float32)
    g = int(weights["gmf_dim"])
    out_w = np.asarray(weights["out_w"], dtype=np.float32).ravel()
    logits = np.full(len(users), float(np.ravel(weights["out_b"])[0]), dtype=np.float32)
    if g:
        logits += (users[:, :g] * items[:, :g]) @ out_w[:g]
    h = np.concatenate([users[:, g:], items[:, g:]], axis=1)
    for layer in range(int(weights["n_layers"])):
        h = np.maximum(h @ weights[f"w{layer}"] + weights[f"b{layer}"], 0.0)
    return logits + h @ out_w[g:]
