"""Keras 3 recommendation models, one per file, registered by name in `registry`:
seed, mf, gmf, mlp, neumf, two_tower.

Input convention shared by every model: a dict of two integer tensors of shape (batch,),
``{"user_idx": ..., "item_idx": ...}`` (the column names of the prepared Parquet), and
the output is the interaction probability, shape (batch, 1); ``logit(inputs)`` is the
raw score, shape (batch,), and ``penalty(users, items)`` the batch rows' squared norms
(see `common`).

Dot-product models (seed, mf, gmf, two_tower) expose
``scoring_factors() -> (user_matrix, item_matrix, activation)`` with
``act(user_matrix[u] @ item_matrix[i]) == model(u, i)``, so the scoring engine can rank
with one matrix multiply per user block and never needs TensorFlow. Network models (mlp,
neumf) expose ``embedding_factors()`` and ``network_weights()`` instead, scored exactly
by `recbatch.core.network` (numpy only).

This package imports nothing itself; importing `recbatch.models.registry` imports Keras.
"""
