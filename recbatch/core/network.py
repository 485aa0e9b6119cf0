"""NCF network weights (mlp / neumf) as one typed value, and their exact scores in numpy only.

The train stage writes, for mlp and neumf, the embedding rows as user/item "factors" and
the network's dense weights (`NetworkWeights`) as `network.npz` beside model.keras
(manifest "scoring": "network"; `recbatch.artifacts` reads and writes it). This module
turns those into scores without TensorFlow, so evaluation and the Spark scoring workers
can use it:

    user row = [p_gmf (gmf_dim) ⧺ p_mlp],  item row = [q_gmf ⧺ q_mlp]
    h_0  = relu(p_mlp W0[:m] + q_mlp W0[m:] + b0)          (m = len(p_mlp))
    h_l  = relu(h_{l-1} W_l + b_l)
    logit = out_w · [p_gmf ⊙ q_gmf ⧺ h_L] + out_b           (score = sigmoid(logit))

The first layer is linear in the concatenation, so it is split into a user part and an item
part computed once per row: a block of b users against n items costs b·n·width floats,
so choose b with that in mind (`block_users_for`). `network_logits` is the plain reference;
`recbatch.core.network_topk` is the fast exact kernel the scoring workers run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class NetworkWeights:
    """The dense part of an NCF model: hidden layers (kernel, bias) and the output unit.

    `gmf_dim` leading columns of a factor row belong to the GMF branch (0: no GMF branch,
    the MLP model); the rest feed the first hidden layer, user half then item half.
    """

    gmf_dim: int
    kernels: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    out_w: np.ndarray  # (gmf_dim + last hidden width,), or (gmf_dim + 2 m,) without hidden layers
    out_b: float

    @property
    def n_layers(self) -> int:
        """Number of hidden Dense layers."""
        return len(self.kernels)

    @property
    def widths(self) -> tuple[int, ...]:
        """Widths of the hidden layers, first to last (empty for a network without hidden layers)."""
        return tuple(int(w.shape[1]) for w in self.kernels)

    def check(self, dim: int) -> None:
        """Raise ValueError unless these weights are a network over factor rows of length `dim`."""
        g, widths = self.gmf_dim, self.widths
        m = dim - g
        first_in = int(self.kernels[0].shape[0]) if widths else 2 * m
        out_in = int(np.size(self.out_w))
        chained = all(
            int(a.shape[1]) == int(b.shape[0]) for a, b in zip(self.kernels, self.kernels[1:], strict=False)
        )
        biases = all(np.size(b) == w for b, w in zip(self.biases, widths, strict=True))
        if m < 1 or first_in != 2 * m or out_in != g + (widths[-1] if widths else 2 * m) or not chained:
            raise ValueError(
                f"network weights (gmf_dim={g}, first layer {first_in} inputs, output {out_in} inputs) do not "
                f"fit factor rows of length {dim}; the factors and network.npz come from different models, "
                "rerun `recbatch train`"
            )
        if not biases:
            raise ValueError(
                "network weights have a bias whose size differs from its layer; rerun `recbatch train`"
            )

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The flat npz layout: gmf_dim, n_layers, w<l>, b<l>, out_w, out_b."""
        arrays = {
            "gmf_dim": np.array(self.gmf_dim),
            "n_layers": np.array(self.n_layers),
            "out_w": np.asarray(self.out_w, dtype=np.float32),
            "out_b": np.array([self.out_b], dtype=np.float32),
        }
        for n, (w, b) in enumerate(zip(self.kernels, self.biases, strict=True)):
            arrays[f"w{n}"], arrays[f"b{n}"] = w, b
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> NetworkWeights:
        """Weights from the flat npz layout; ValueError naming what is missing."""
        missing = [key for key in ("gmf_dim", "n_layers", "out_w", "out_b") if key not in arrays]
        n_layers = int(arrays["n_layers"]) if "n_layers" in arrays else 0
        missing += [f"{p}{n}" for n in range(n_layers) for p in "wb" if f"{p}{n}" not in arrays]
        if missing:
            raise ValueError(f"network weights lack {', '.join(missing)}; rerun `recbatch train`")

        def f32(key: str) -> np.ndarray:
            return np.ascontiguousarray(arrays[key], dtype=np.float32)

        return cls(
            gmf_dim=int(arrays["gmf_dim"]),
            kernels=tuple(f32(f"w{n}") for n in range(n_layers)),
            biases=tuple(f32(f"b{n}").ravel() for n in range(n_layers)),
            out_w=f32("out_w").ravel(),
            out_b=float(np.ravel(arrays["out_b"])[0]),
        )


def block_users_for(weights: NetworkWeights, n_items: int, budget_floats: int = 16_000_000) -> int:
    """Users per block so that one block's hidden activations stay within `budget_floats`."""
    widths = weights.widths or (1,)
    return max(1, budget_floats // max(1, n_items * max(widths)))


def network_logits(weights: NetworkWeights, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Logits [len(users), len(items)] of every (user row, item row) pair."""
    users = np.asarray(users, dtype=np.float32)
    items = np.asarray(items, dtype=np.float32)
    g, n_layers, out_w = weights.gmf_dim, weights.n_layers, weights.out_w
    logits = np.full((len(users), len(items)), weights.out_b, dtype=np.float32)
    if g:
        logits += (users[:, :g] * out_w[:g]) @ items[:, :g].T
    pm, qm = users[:, g:], items[:, g:]
    m = pm.shape[1]
    if n_layers == 0:
        logits += (pm @ out_w[g : g + m])[:, None] + (qm @ out_w[g + m :])[None, :]
        return logits
    w0 = weights.kernels[0]
    h = (pm @ w0[:m])[:, None, :] + ((qm @ w0[m:]) + weights.biases[0])[None, :, :]
    # Flattened to 2-D so each layer is one BLAS matrix multiply (3-D matmul is far slower).
    h = np.maximum(h, 0.0, out=h).reshape(-1, h.shape[-1])
    for layer in range(1, n_layers):
        h = h @ weights.kernels[layer]
        h += weights.biases[layer]
        np.maximum(h, 0.0, out=h)
    logits += (h @ out_w[g:]).reshape(len(users), len(items))
    return logits


def network_pair_logits(weights: NetworkWeights, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Logits of aligned pairs: row r of `users` with row r of `items` (candidate scoring)."""
    users = np.asarray(users, dtype=np.float32)
    items = np.asarray(items, dtype=np.float32)
    g, out_w = weights.gmf_dim, weights.out_w
    logits = np.full(len(users), weights.out_b, dtype=np.float32)
    if g:
        logits += (users[:, :g] * items[:, :g]) @ out_w[:g]
    h = np.concatenate([users[:, g:], items[:, g:]], axis=1)
    for w, b in zip(weights.kernels, weights.biases, strict=True):
        h = np.maximum(h @ w + b, 0.0)
    return logits + h @ out_w[g:]
