"""Keras 3 recommendation models, one per file, registered by name in `registry`.

Input convention shared by every model: a dict of two integer tensors of shape (batch,),
``{"user_idx": ..., "item_idx": ...}`` (the column names of the prepared Parquet), and
the output is the interaction probability, shape (batch, 1).

Every model also exposes ``scoring_factors() -> (user_matrix, item_matrix, activation)``
with ``act(user_matrix[u] @ item_matrix[i]) == model(u, i)``, so the scoring engine can
rank with one matrix multiply per user block and never needs TensorFlow.

This package imports nothing itself; importing `recbatch.models.registry` imports Keras.
"""
