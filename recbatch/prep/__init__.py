"""The prepare stage: raw log -> validated, deduplicated, aggregated, indexed and split Parquet.

Modules hold pure DataFrame -> DataFrame transforms (parse, quarantine, aggregate, filters,
vocab, split) and the report's statistics and arithmetic (report); `stage.run_prepare`
runs them as named steps and decides every read and write.
"""
