"""The published table into Redis: one key per user in a versioned key space, one atomic pointer swap.

    <prefix>:<version>:<user_id>  the user's items in rank order, as a JSON array of [item_id, score]
                                  pairs, e.g. [["i7",0.9132],["i3",0.88]] (recbatch.io.redis_values)
    <prefix>:current              the version readers use (set with MULTI/EXEC, with the metadata)
    <prefix>:meta:<version>       hash: version, run_id, date, rows, users, k, model, exported_at
    <prefix>:versions             sorted set of the versions whose keys have no expiry yet (the current
                                  one, and one being written or left by an export that did not finish)

`<version>` is the publish version (`<run_id>-<UTC time>`, from the publish manifest): run ids
repeat when a date is rerun, versions never do, so a version's keys are written once and never
change under a reader. A reader does GET <prefix>:current, then GET <prefix>:<version>:<user_id>.
Writing: MSETs of `batch_size` keys, pipelined. `writer = "executors"`: each Spark task reading
the table sends its users over its own connection. `writer = "driver"`: this process reads the
version's part files itself (each holds whole users), one thread and connection per core; `auto`
(default) picks the driver for tables up to `driver_max_rows`, where starting a Spark job costs
more than the writing (at 100K users: ~2.5 s against ~0.4 s). The pointer moves only once every key is acknowledged and their count equals the
manifest's users; the replaced version's keys then get EXPIRE `ttl_seconds`, so a reader that
resolved the old pointer still finds them. A failure before the swap leaves the pointer as it
was and deletes the unfinished version. Needs one Redis server (SCAN runs on it), not a Cluster.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from recbatch.errors import ConfigError, PipelineError
from recbatch.io.secrets import read_password, redact

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from recbatch.config import RedisExportConfig
    from recbatch.storage import Location

log = logging.getLogger(__name__)

SCAN_COUNT = 10_000


def current_key(prefix: str) -> str:
    return f"{prefix}:current"


def meta_key(prefix: str, version: str) -> str:
    return f"{prefix}:meta:{version}"


def versions_key(prefix: str) -> str:
    return f"{prefix}:versions"


def user_key(prefix: str, version: str, user_id: str) -> str:
    return f"{prefix}:{version}:{user_id}"


def export_redis(
    spark: SparkSession,
    table: DataFrame,
    manifest: dict[str, Any],
    config: RedisExportConfig,
    date: str,
    folder: Location | None = None,
) -> dict[str, Any]:
    """Write the published `table` (publish manifest `manifest`) as a new version and make it current.

    `folder` is the version's folder (its part files are what the driver writer reads); without
    it the executors write.
    """
    import redis

    password = read_password("export.redis", config.password_env, config.password_file)
    version = str(manifest.get("version") or manifest["run_id"])
    prefix, step = config.prefix, "connect"
    client = redis.Redis.from_url(config.url, password=password)
    try:
        client.ping()
        step = "register"
        client.zadd(versions_key(prefix), {version: datetime.now(UTC).timestamp()})
        step = "write"
        writer = choose_writer(config, manifest, folder)
        if writer == "driver":
            assert folder is not None
            written, rows = _write_keys_from_files(folder, manifest, config, password, version)
        else:
            written, rows = _write_keys(table, config, password, version), manifest["rows"]
        step = "validate"
        if written != manifest["users"] or rows != manifest["rows"]:
            raise PipelineError(
                f"{written:,} keys from {rows:,} rows were written but the published table has "
                f"{manifest['users']:,} users in {manifest['rows']:,} rows"
            )
        step = "swap"
        old = swap_pointer(client, prefix, version, _metadata(manifest, version, date, written))
    except BaseException as exc:
        if step not in ("connect", "register"):
            _forget_unfinished(client, prefix, version)
        client.close()
        if isinstance(exc, (ConfigError, KeyboardInterrupt)):
            raise
        raise PipelineError(
            f"export redis to {config.url} prefix {prefix}: step '{step}' failed: "
            f"{redact(_first_line(exc), password)}; {current_key(prefix)} is unchanged"
        ) from None
    expired = expire_replaced(client, prefix, version, config.ttl_seconds)
    client.close()
    log.info(
        "export redis: %s -> %s (%s keys from the %s; replaced %s, expiring %s)",
        current_key(prefix),
        version,
        written,
        writer,
        old,
        expired,
    )
    return {
        "target": f"{config.url} {prefix}:{version}:<user_id>",
        "writer": writer,
        "rows": rows,
        "users": written,
        "version": version,
        "replaced": old,
        "expiring": expired,
    }


def choose_writer(config: RedisExportConfig, manifest: dict[str, Any], folder: Location | None) -> str:
    """'driver' or 'executors', from export.redis.writer (a driver write needs the version's folder)."""
    if config.writer == "driver" and folder is None:
        raise ConfigError("export.redis.writer = 'driver' needs the published version's folder")
    if config.writer != "auto":
        return config.writer
    small = manifest["rows"] <= config.driver_max_rows
    return "driver" if folder is not None and small and manifest.get("files") else "executors"


def _write_keys_from_files(
    folder: Location, manifest: dict[str, Any], config: RedisExportConfig, password: str | None, version: str
) -> tuple[int, int]:
    """(keys acknowledged, rows read) with the version's part files read and sent by this process."""
    import os

    from recbatch.io.redis_values import write_part_files

    files = [folder / part["path"] for part in manifest["files"]]
    threads = min(len(files), os.cpu_count() or 1)
    key_prefix = f"{config.prefix}:{version}:"
    return write_part_files(files, config.url, password, key_prefix, config.batch_size, threads)


def _write_keys(table: DataFrame, config: RedisExportConfig, password: str | None, version: str) -> int:
    """Every user's key, from the executors (boundary users from the driver); returns the keys acknowledged."""
    import pyarrow.compute as pc

    from recbatch.io.redis_values import (
        RESULT_SCHEMA,
        ROW_COLUMNS,
        connection_to,
        encode_users,
        partition_writer,
        send,
    )

    key_prefix = f"{config.prefix}:{version}:"
    writer = partition_writer(config.url, password, key_prefix, config.batch_size)
    results = table.select(*ROW_COLUMNS).mapInArrow(writer, RESULT_SCHEMA).toArrow()
    counted = pc.is_valid(results.column("written"))
    held = results.filter(pc.invert(counted)).select(list(ROW_COLUMNS))
    with connection_to(config.url, password) as connection:
        from_driver = send(connection, *encode_users(held, key_prefix), config.batch_size)
    return int(pc.sum(results.column("written")).as_py() or 0) + from_driver


def _metadata(manifest: dict[str, Any], version: str, date: str, written: int) -> dict[str, str]:
    return {
        "version": version,
        "run_id": str(manifest["run_id"]),
        "date": date,
        "rows": str(manifest["rows"]),
        "users": str(written),
        "k": str(manifest.get("k", "")),
        "model": str(manifest.get("model", "")),
        "exported_at": datetime.now(UTC).isoformat(),
    }


def swap_pointer(client: Any, prefix: str, version: str, metadata: dict[str, str]) -> str | None:
    """Make `version` current, with its metadata, in one MULTI/EXEC; returns the version it replaced."""
    pipe = client.pipeline(transaction=True)
    pipe.get(current_key(prefix))
    pipe.hset(meta_key(prefix, version), mapping=metadata)
    pipe.set(current_key(prefix), version)
    old = pipe.execute()[0]
    return old.decode() if old else None


def expire_replaced(client: Any, prefix: str, current: str, ttl_seconds: int) -> list[str]:
    """Give every version but `current` listed in <prefix>:versions an expiry; returns those versions.

    A failure here is logged, not raised: the new version is already current, and the next
    export retries what is still listed.
    """
    expired = []
    try:
        for raw in client.zrange(versions_key(prefix), 0, -1):
            version = raw.decode()
            if version == current:
                continue
            _for_each_key(client, f"{prefix}:{_glob_escape(version)}:*", ttl_seconds)
            client.expire(meta_key(prefix, version), ttl_seconds)
            client.zrem(versions_key(prefix), version)
            expired.append(version)
    except Exception as exc:
        log.warning("export redis: giving old versions an expiry failed (%s); the next export retries", exc)
    return expired


def _forget_unfinished(client: Any, prefix: str, version: str) -> None:
    """Delete a version that did not become current (never the current one); failures are logged."""
    try:
        current = client.get(current_key(prefix))
        if current is not None and current.decode() == version:
            return
        _for_each_key(client, f"{prefix}:{_glob_escape(version)}:*", 0)
        client.zrem(versions_key(prefix), version)
    except Exception as exc:
        log.warning("export redis: could not delete unfinished version %s (%s)", version, type(exc).__name__)


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


# One SCAN page, and EXPIRE (ttl > 0) or UNLINK (ttl = 0) of its keys, inside the server: no
# per-key round trip or packing on the driver. A single Redis server, not Redis Cluster.
_SCAN_APPLY = """
local page = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
for _, key in ipairs(page[2]) do
  if tonumber(ARGV[4]) > 0 then redis.call('EXPIRE', key, ARGV[4]) else redis.call('UNLINK', key) end
end
return page[1]
"""


def _for_each_key(client: Any, pattern: str, ttl_seconds: int) -> None:
    """EXPIRE every key matching `pattern` after `ttl_seconds`, or UNLINK it when `ttl_seconds` is 0."""
    script = client.register_script(_SCAN_APPLY)
    cursor = b"0"
    while True:
        cursor = script(args=[cursor, pattern, SCAN_COUNT, ttl_seconds])
        if cursor in (b"0", "0", 0):
            return


def _first_line(exc: BaseException) -> str:
    java = getattr(exc, "java_exception", None) or getattr(exc, "_origin", None)
    text = str(java.getMessage() if java is not None else exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
