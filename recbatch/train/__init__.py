"""Training internals: prepared-data readers and the in-memory input (`data`), the streaming
Parquet input (`stream`, with its Bloom filter in `bloom`), the loop (`loop`), the validation
split (`validation`), the terminal progress bar (`progress`) and artifacts (`artifacts`).

The stage entry point is `recbatch.train.run_train`.
"""
