"""A java.sql.Connection opened in Spark's JVM, for the statements the driver program issues itself.

It is made by the same driver class the executors load (from spark.jars, or added to a running
session with ADD JAR), so the DDL of the JDBC export needs no Python database package and works
against any database that has a JDBC driver.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from recbatch.errors import PipelineError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


def first_words(exc: BaseException) -> str:
    """The innermost cause's first line: the database's own words, not Spark's wrapping of them."""
    java = getattr(exc, "java_exception", None) or getattr(exc, "_origin", None)
    if java is None:
        text = str(exc).strip()
        return text.splitlines()[0][:300] if text else type(exc).__name__
    deepest = java
    while deepest.getCause() is not None and not deepest.getCause().equals(deepest):
        deepest = deepest.getCause()
    # A failed batch hides the server's error behind getNextException (SQLException only).
    with contextlib.suppress(Exception):
        deepest = deepest.getNextException() or deepest
    text = str(deepest.getMessage() or deepest.getClass().getName()).strip()
    return text.splitlines()[0][:300] if text else deepest.getClass().getName()


class JvmConnection:
    """A java.sql.Connection in Spark's JVM, made by the same driver class the executors use."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    @classmethod
    def open(
        cls, spark: SparkSession, url: str, driver: str, props: dict[str, str], jar: str | None
    ) -> JvmConnection:
        """Connect to `url` with an instance of `driver` (from `jar` when the session lacks it)."""
        properties = spark._jvm.java.util.Properties()
        for key, value in props.items():
            properties.setProperty(key, value)
        connection = load_driver(spark, driver, jar).connect(url, properties)
        if connection is None:
            raise PipelineError(f"driver {driver} does not accept the URL {url.split('?', 1)[0]}")
        return cls(connection)

    def execute(self, sql: str) -> None:
        statement = self._connection.createStatement()
        try:
            statement.execute(sql)
        finally:
            statement.close()

    def query_longs(self, sql: str) -> list[int]:
        statement = self._connection.createStatement()
        try:
            result = statement.executeQuery(sql)
            result.next()
            return [int(result.getLong(i + 1)) for i in range(result.getMetaData().getColumnCount())]
        finally:
            statement.close()

    def _tables(self, name: str, prefix: bool = False) -> list[str]:
        """Tables called `name` (or starting with it), from the driver's metadata, qualified as given."""
        meta = self._connection.getMetaData()
        escape = meta.getSearchStringEscape()
        schema, _, bare = name.rpartition(".")
        like = bare.replace("_", f"{escape}_").replace("%", f"{escape}%") + ("%" if prefix else "")
        result = meta.getTables(None, schema or self._connection.getSchema(), like, None)
        found = []
        while result.next():
            found.append(str(result.getString("TABLE_NAME")))
        result.close()
        return [
            f"{schema}.{t}" if schema else t for t in found if t == bare or (prefix and t.startswith(bare))
        ]

    def table_exists(self, name: str) -> bool:
        return bool(self._tables(name))

    def tables_with_prefix(self, prefix: str) -> list[str]:
        return self._tables(prefix, prefix=True)

    def transaction(self, statements: list[str]) -> None:
        """Run `statements` as one transaction: all of them commit together, or none does."""
        self._connection.setAutoCommit(False)
        try:
            for sql in statements:
                self.execute(sql)
            self._connection.commit()
        except BaseException:
            self._connection.rollback()
            raise
        finally:
            self._connection.setAutoCommit(True)

    def drop_quietly(self, table: str) -> None:
        """Drop `table` if it exists; a failure is logged (the next export drops what is left)."""
        try:
            if self.table_exists(table):
                self.execute(f"DROP TABLE {table}")
        except Exception as exc:
            log.warning(
                "export jdbc: could not drop %s (%s); the next export drops it", table, type(exc).__name__
            )

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already broken: nothing left to release
            self._connection.close()


def load_driver(spark: SparkSession, name: str, jar: str | None) -> Any:
    """An instance of the driver class `name`, from Spark's JVM classpath (spark.jars, or `jar` added now)."""
    jvm = spark._jvm

    def load() -> Any:
        loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
        return jvm.java.lang.Class.forName(name, True, loader).newInstance()

    try:
        return load()
    except Exception as exc:
        if "ClassNotFoundException" not in str(exc):
            raise
    if jar is None:
        raise PipelineError(f"JDBC driver {name} is not on Spark's classpath: set export.jdbc.driver_jar")
    # A session started without the jar on spark.jars (a notebook's, spark-submit's without --jars).
    log.info("export jdbc: %s is not on spark.jars; adding %s to the running session", name, jar)
    spark.sql(f"ADD JAR '{jar}'")
    return load()
