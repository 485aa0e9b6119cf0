"""Batch scoring: per-block top-K kernels and the Spark engine that runs them per partition."""
