"""The prepare stage: raw log -> validated, deduplicated, aggregated, indexed and split Parquet.

Modules hold pure DataFrame -> DataFrame transforms (parse, clean, aggregate, vocab,
split) and the report arithmetic; `stage.run_prepare` is the one function doing I/O.
"""
