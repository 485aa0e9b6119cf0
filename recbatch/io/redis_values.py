"""What the Redis export's executors run: per-user values built with Arrow, sent as pipelined MSETs.

Value of `<prefix>:<version>:<user_id>`: a JSON array of [item_id, score] pairs in rank order,
e.g. [["i7",0.9132],["i3",0.88]]; the score is the published float32 in its shortest form that
reads back to the same float32 (Arrow's float-to-string cast: 0.9132, 0.00001, 3, 1e+10).

No shuffle: the published table is hash-partitioned by user and sorted by (user_id, rank)
inside each part file (recbatch.io.publish), so a task sees each user's rows together. Only a
task's first and last user can continue in another task (when Spark splits a file between
tasks); those rows are handed back to the driver, which merges and writes them. Within a chunk
rows are sorted again by (user_id, rank), so values never depend on the read order; a user
whose rows were scattered across chunks would be counted twice and fail the count check.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

# What the executors hand back: held-over rows of boundary users (written null), one count row each.
RESULT_SCHEMA = "user_id string, item_id string, score float, rank int, written long"
ROW_COLUMNS = ("user_id", "item_id", "score", "rank")


def _json_strings(values: pa.Array) -> pa.Array:
    """Each string as a JSON string literal."""
    # One scan decides: ids almost never need escaping, and then quoting them is all there is.
    if not pc.any(pc.match_substring_regex(values, r'[\x00-\x1f"\\]')).as_py():
        return pc.binary_join_element_wise('"', values, '"', "")
    if pc.any(pc.match_substring_regex(values, r"[\x00-\x1f]")).as_py():
        return pa.array([json.dumps(v, ensure_ascii=False) for v in values.to_pylist()])
    escaped = pc.replace_substring(pc.replace_substring(values, "\\", "\\\\"), '"', '\\"')
    return pc.binary_join_element_wise('"', escaped, '"', "")


def _grouped_in_rank_order(rows: pa.Table) -> bool:
    """Whether rows are already sorted by (user_id, rank), as every published part file is."""
    if rows.num_rows < 2:
        return True
    users = rows.column("user_id").combine_chunks()
    ranks = rows.column("rank").combine_chunks()
    head, tail = users.slice(0, len(users) - 1), users.slice(1)
    same = pc.equal(tail, head)
    ordered = pc.or_(
        pc.greater(tail, head), pc.and_(same, pc.greater(ranks.slice(1), ranks.slice(0, len(ranks) - 1)))
    )
    return bool(pc.all(ordered).as_py())


def user_starts(user_ids: pa.Array) -> list[int]:
    """Row indices where a new user begins (the first row included), in a table grouped by user."""
    import numpy as np

    if len(user_ids) == 0:
        return []
    changed = pc.not_equal(user_ids[1:], user_ids[:-1]).to_numpy(zero_copy_only=False)
    return [0, *(np.flatnonzero(changed) + 1).tolist()]


def encode_users(rows: pa.Table, key_prefix: str) -> tuple[pa.Array, pa.Array]:
    """(keys, values) of the users in `rows` (user_id, item_id, score, rank): key = key_prefix + user_id."""
    if rows.num_rows == 0:
        return pa.array([], pa.string()), pa.array([], pa.string())
    if not _grouped_in_rank_order(rows):  # the sort is half the encoding time: skip it when it is a no-op
        rows = rows.sort_by([("user_id", "ascending"), ("rank", "ascending")])
    rows = rows.combine_chunks()
    users = rows.column("user_id").chunk(0)
    pairs = pc.binary_join_element_wise(
        "[",
        _json_strings(rows.column("item_id").chunk(0)),
        ",",
        rows.column("score").chunk(0).cast(pa.string()),
        "]",
        "",
    )
    starts = user_starts(users)
    offsets = pa.array([*starts, rows.num_rows], pa.int32())
    values = pc.binary_join_element_wise(
        "[", pc.binary_join(pa.ListArray.from_arrays(offsets, pairs), ","), "]", ""
    )
    keys = pc.binary_join_element_wise(key_prefix, users.take(pa.array(starts)), "")
    return keys, values


def mset_commands(keys: pa.Array, values: pa.Array, batch_size: int) -> tuple[bytes, list[int]]:
    """MSETs of `batch_size` pairs each, as the bytes Redis reads (RESP), built by Arrow; and their sizes.

    Packing the commands in Python costs more than everything else a writer does per key.
    """
    size = lambda a: pc.binary_length(a).cast(pa.string())  # noqa: E731  (bytes, not characters)
    pairs = pc.binary_join_element_wise(
        "$", size(keys), "\r\n", keys, "\r\n$", size(values), "\r\n", values, "\r\n", ""
    )
    bounds = [*range(0, len(keys), batch_size), len(keys)]
    sizes = [end - start for start, end in itertools.pairwise(bounds)]
    bodies = pc.binary_join(pa.ListArray.from_arrays(pa.array(bounds, pa.int32()), pairs), "").to_pylist()
    heads = [f"*{2 * n + 1}\r\n$4\r\nMSET\r\n" for n in sizes]
    return "".join(h + b for h, b in zip(heads, bodies, strict=True)).encode(), sizes


def send(connection: Any, keys: pa.Array, values: pa.Array, batch_size: int) -> int:
    """MSET `batch_size` keys per command on a redis-py Connection, in one round trip; returns the keys acknowledged.

    An error reply (e.g. the server's OOM refusal) raises redis.ResponseError.
    """
    if len(keys) == 0:
        return 0
    payload, sizes = mset_commands(keys, values, batch_size)
    try:
        connection.send_packed_command([payload])
        replies = [connection.read_response() for _ in sizes]
    except BaseException:
        connection.disconnect()  # replies may be left unread on it
        raise
    return sum(n for n, reply in zip(sizes, replies, strict=True) if reply in (b"OK", "OK", True))


@contextlib.contextmanager
def connection_to(url: str, password: str | None) -> Iterator[Any]:
    """One connection to the server at `url`, authenticated, for `send`."""
    import redis

    client = redis.Redis.from_url(url, password=password)
    connection = client.connection_pool.get_connection()
    try:
        yield connection
    finally:
        client.connection_pool.release(connection)
        client.close()


def write_part_files(
    files: list[Any], url: str, password: str | None, key_prefix: str, batch_size: int, threads: int
) -> tuple[int, int]:
    """(keys acknowledged, rows read): every part file's users written from this process.

    Each published part file holds whole users (publish hash-partitions by user_id), so the
    files are independent: `threads` of them are read, encoded and sent at once, each on its
    own connection (Arrow's kernels and the socket release the GIL).
    """
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow.parquet as pq

    from recbatch.storage import pyarrow_source

    def one(part: Any) -> tuple[int, int]:
        path, fs = pyarrow_source(part)
        rows = pq.read_table(path, filesystem=fs, columns=list(ROW_COLUMNS))
        with connection_to(url, password) as connection:
            return send(connection, *encode_users(rows, key_prefix), batch_size), rows.num_rows

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        done = list(pool.map(one, files))
    return sum(keys for keys, _ in done), sum(rows for _, rows in done)


def partition_writer(url: str, password: str | None, key_prefix: str, batch_size: int):
    """The mapInArrow function: writes a task's complete users, hands back its boundary users' rows."""

    def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        held: list[pa.Table] = []
        buffer: pa.Table | None = None
        written, first_held = 0, False
        with connection_to(url, password) as connection:
            for batch in batches:
                chunk = pa.Table.from_batches([batch]).select(list(ROW_COLUMNS))
                buffer = chunk if buffer is None else pa.concat_tables([buffer, chunk])
                starts = user_starts(buffer.column("user_id").combine_chunks())
                if len(starts) < 2:
                    continue  # one user so far: it may go on in the next batch
                complete, buffer = buffer.slice(0, starts[-1]), buffer.slice(starts[-1])
                if not first_held:  # the task's first user may have begun in another task
                    held.append(complete.slice(0, starts[1]))
                    complete, first_held = complete.slice(starts[1]), True
                written += send(connection, *encode_users(complete, key_prefix), batch_size)
        if buffer is not None and buffer.num_rows:
            held.append(buffer)  # the task's last user may go on in another task
        for rows in held:
            yield pa.RecordBatch.from_pydict(
                {
                    **{c: rows.column(c).combine_chunks() for c in ROW_COLUMNS},
                    "written": pa.nulls(rows.num_rows, pa.int64()),
                }
            )
        count = {
            c: pa.nulls(1, t)
            for c, t in zip(ROW_COLUMNS, (pa.string(), pa.string(), pa.float32(), pa.int32()), strict=True)
        }
        yield pa.RecordBatch.from_pydict({**count, "written": pa.array([written], pa.int64())})

    return write
