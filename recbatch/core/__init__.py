"""The lowest layer: numpy/pyarrow code that every stage shares and that imports no stage.

topk (exact top-K kernel), network and network_topk (NCF weights and their exact kernel),
ranking (scorers and per-user ranking), metrics, validation (the validation carve and its
NDCG) and files (atomic writes, hashing, Parquet listing and row counts).
"""
