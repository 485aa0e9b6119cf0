"""Training internals: prepared-data readers and input pipeline (`data`), artifacts (`artifacts`).

The stage entry point is `recbatch.train.run_train`.
"""
