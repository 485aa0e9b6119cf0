"""Synthetic interaction logs with a known structure, for demos, tests and benchmarks.

Users belong to latent taste clusters; with probability `affinity` an event is drawn from
the user's cluster's items (popularity-weighted), otherwise from global long-tail
popularity, so a personalising model has real signal to find beyond popularity. A small
share of extra rows is malformed on purpose (bad numbers, missing ids, exact duplicates),
so the prepare stage's quarantine and accounting are exercised.

Pure numpy + pyarrow, written in chunks of `CHUNK_ROWS`, so memory stays flat from 1K to
100M events. The same config and seed give byte-identical files.
"""

from __future__ import annotations

import calendar
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from recbatch.config import SynthConfig
from recbatch.errors import ConfigError

logger = logging.getLogger(__name__)

CHUNK_ROWS = 1_000_000
COLUMNS = ("user_id", "item_id", "event", "rating", "timestamp")
EVENTS = np.array(["view", "click", "purchase"])
EVENT_CDF = np.cumsum([0.70, 0.22, 0.08])
# Ratings 1..5: in-cluster items are liked, others much less so.
RATING_CDF_IN = np.cumsum([0.02, 0.05, 0.18, 0.40, 0.35])
RATING_CDF_OUT = np.cumsum([0.15, 0.25, 0.30, 0.20, 0.10])
USER_ACTIVITY_EXPONENT = 0.8
MALFORMED_KINDS = ("bad_rating", "bad_timestamp", "missing_user", "missing_item", "duplicate")


@dataclass(frozen=True)
class World:
    """The latent structure behind the events: who likes what, and how popular things are."""

    user_cdf: np.ndarray  # cumulative activity share per user
    user_cluster: np.ndarray  # cluster of each user
    item_cdf: np.ndarray  # cumulative global popularity per item
    item_cluster: np.ndarray  # cluster of each item
    cluster_items: np.ndarray  # item ids grouped by cluster
    cluster_cum: np.ndarray  # per-cluster cumulative popularity, offset by the cluster number
    cluster_start: np.ndarray  # first position of each cluster in cluster_items
    cluster_end: np.ndarray  # one past the last position


def _zipf_cdf(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Cumulative shares of a Zipf law over a random permutation of n ids (so id order carries no rank)."""
    weights = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
    weights = weights[rng.permutation(n)]
    cdf = np.cumsum(weights / weights.sum())
    cdf[-1] = 1.0
    return cdf


def build_world(cfg: SynthConfig, rng: np.random.Generator) -> World:
    """Draw the latent structure; consumes `rng` first, so tests can rebuild it from the seed."""
    k = min(cfg.clusters, cfg.items)  # every cluster needs at least one item
    user_cdf = _zipf_cdf(cfg.users, USER_ACTIVITY_EXPONENT, rng)
    item_cdf = _zipf_cdf(cfg.items, cfg.popularity_exponent, rng)
    item_cluster = rng.permutation(cfg.items) % k
    user_cluster = rng.integers(0, k, cfg.users)
    popularity = np.diff(item_cdf, prepend=0.0)
    cluster_items = np.argsort(item_cluster, kind="stable")
    sizes = np.bincount(item_cluster, minlength=k)
    ends = np.cumsum(sizes)
    starts = ends - sizes
    cum = np.empty(cfg.items, dtype=np.float64)
    for c in range(k):
        w = popularity[cluster_items[starts[c] : ends[c]]]
        part = np.cumsum(w / w.sum())
        part[-1] = 1.0
        cum[starts[c] : ends[c]] = c + part
    return World(user_cdf, user_cluster, item_cdf, item_cluster, cluster_items, cum, starts, ends)


def _draw(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1)


def _events_chunk(
    world: World, cfg: SynthConfig, n: int, t0: int, t1: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """n clean events as integer codes (user, item, event, rating, timestamp)."""
    users = _draw(world.user_cdf, rng.random(n))
    clusters = world.user_cluster[users]
    in_cluster = rng.random(n) < cfg.affinity
    pos = np.searchsorted(world.cluster_cum, clusters + rng.random(n), side="right")
    pos = np.clip(pos, world.cluster_start[clusters], world.cluster_end[clusters] - 1)
    items = np.where(in_cluster, world.cluster_items[pos], _draw(world.item_cdf, rng.random(n)))
    liked = world.item_cluster[items] == clusters
    u = rng.random(n)
    ratings = np.where(liked, _draw(RATING_CDF_IN, u), _draw(RATING_CDF_OUT, u)) + 1
    return {
        "user": users,
        "item": items,
        "event": _draw(EVENT_CDF, rng.random(n)),
        "rating": ratings,
        "timestamp": rng.integers(t0, t1 + 1, n),
    }


def _ids(prefix: str, codes: np.ndarray, width: int) -> pa.Array:
    digits = pc.utf8_lpad(pc.cast(pa.array(codes), pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _as_strings(codes: dict[str, np.ndarray], uw: int, iw: int) -> dict[str, pa.Array]:
    return {
        "user_id": _ids("u", codes["user"], uw),
        "item_id": _ids("i", codes["item"], iw),
        "event": pa.array(EVENTS).take(pa.array(codes["event"])),
        "rating": pc.cast(pa.array(codes["rating"]), pa.string()),
        "timestamp": pc.cast(pa.array(codes["timestamp"]), pa.string()),
    }


def _with_malformed(
    cols: dict[str, pa.Array], m: int, rng: np.random.Generator, counts: dict[str, int]
) -> dict[str, pa.Array]:
    """Append m malformed copies of earlier rows of this chunk, each placed somewhere after its source."""
    n = len(cols["user_id"])
    if m == 0:
        return cols
    src = rng.integers(0, n, m)
    kinds = rng.integers(0, len(MALFORMED_KINDS), m)
    at = rng.integers(src, n)  # the copy goes after row `at`, never before its source
    extra = {name: values.take(pa.array(src)) for name, values in cols.items()}
    damage = {"bad_rating": ("rating", "abc"), "bad_timestamp": ("timestamp", "notatime")}
    damage |= {"missing_user": ("user_id", ""), "missing_item": ("item_id", "")}
    for code, kind in enumerate(MALFORMED_KINDS):
        hit = kinds == code
        counts[kind] += int(hit.sum())
        if kind in damage:
            column, value = damage[kind]
            extra[column] = pc.if_else(pa.array(hit), value, extra[column])
    order = pa.array(np.argsort(np.concatenate([2 * np.arange(n), 2 * at + 1]), kind="stable"))
    return {name: pa.concat_arrays([cols[name], extra[name]]).take(order) for name in cols}


def _file_plan(cfg: SynthConfig, target: Path) -> list[tuple[Path, int]]:
    sizes = [len(a) for a in np.array_split(np.arange(cfg.events), cfg.files)]
    if cfg.files == 1:
        return [(target, cfg.events)]
    return [(target / f"part-{i:05d}.csv", size) for i, size in enumerate(sizes)]


def _window(cfg: SynthConfig) -> tuple[int, int]:
    try:
        end_day = datetime.strptime(cfg.end_date, "%Y-%m-%d")
    except ValueError:
        raise ConfigError(f"synth.end_date = {cfg.end_date!r} is invalid: expected YYYY-MM-DD") from None
    t1 = calendar.timegm(end_day.timetuple()) + 86_400 - 1  # the last second of end_date, UTC
    return t1 - cfg.days * 86_400 + 1, t1


def write_item_metadata(world: World, path: Path, width: int) -> str:
    """item_id, category (c<taste cluster>) of every item: what score.rules.item_metadata reads."""
    codes = np.arange(len(world.item_cluster))
    table = pa.table(
        {
            "item_id": _ids("i", codes, width),
            "category": _ids("c", world.item_cluster, 1),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as sink:
        sink.write(b"item_id,category\n")
        pacsv.write_csv(
            table, sink, write_options=pacsv.WriteOptions(include_header=False, quoting_style="none")
        )
    os.replace(tmp, path)
    return str(path)


def generate(cfg: SynthConfig, out: str | Path | None = None) -> dict:
    """Write the synthetic event log described by `cfg` to `out` (default `cfg.out`).

    One CSV file when `cfg.files == 1`, else a directory of `part-NNNNN.csv` files, each
    with the header `user_id,item_id,event,rating,timestamp`. Returns a summary:
    rows (written, header excluded), events (clean), malformed (extra bad rows),
    malformed_by_kind, files (count), file_paths and path.
    """
    target = Path(out if out is not None else cfg.out)
    rng = np.random.default_rng(cfg.seed)
    world = build_world(cfg, rng)
    t0, t1 = _window(cfg)
    uw, iw = max(6, len(str(cfg.users - 1))), max(5, len(str(cfg.items - 1)))
    total_bad = round(cfg.events * cfg.malformed_rate / (1.0 - cfg.malformed_rate))
    counts = dict.fromkeys(MALFORMED_KINDS, 0)
    plan = _file_plan(cfg, target)
    if cfg.files > 1:
        target.mkdir(parents=True, exist_ok=True)
        for stale in target.glob("part-*.csv"):
            stale.unlink()
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([(c, pa.string()) for c in COLUMNS])
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    done = rows = 0
    for path, size in plan:
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as sink:
            sink.write((",".join(COLUMNS) + "\n").encode())
            with pacsv.CSVWriter(sink, schema, write_options=options) as writer:
                for start in range(0, size, CHUNK_ROWS):
                    n = min(CHUNK_ROWS, size - start)
                    # Spread the malformed rows evenly over chunks, exactly `total_bad` in all.
                    m = round(total_bad * (done + n) / cfg.events) - round(total_bad * done / cfg.events)
                    done += n
                    cols = _with_malformed(
                        _as_strings(_events_chunk(world, cfg, n, t0, t1, rng), uw, iw), m, rng, counts
                    )
                    table = pa.table({c: cols[c] for c in COLUMNS}, schema=schema)
                    writer.write_table(table)
                    rows += table.num_rows
        os.replace(tmp, path)
    logger.info("synth: wrote %d rows (%d malformed) to %s", rows, total_bad, target)
    summary = {}
    if cfg.item_metadata:
        summary["item_metadata"] = write_item_metadata(world, Path(cfg.item_metadata), iw)
    return summary | {
        "rows": rows,
        "events": cfg.events,
        "malformed": total_bad,
        "malformed_by_kind": counts,
        "files": len(plan),
        "file_paths": [str(p) for p, _ in plan],
        "path": str(target),
    }
