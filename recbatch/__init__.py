"""recbatch: batch top-K recommendations on Apache Spark.

Nothing heavy is imported here: `recbatch --help` must stay instant, so Spark and
TensorFlow are imported inside the functions that need them.
"""

__version__ = "0.1.0"
