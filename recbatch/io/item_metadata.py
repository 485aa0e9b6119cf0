"""The item-metadata table of the business rules: item_id, category, available_from, available_to.

Read on the driver with pyarrow (it is catalogue-sized, like the item factors), from Parquet
or CSV (by a `.csv` suffix), and laid out by item_idx through the prepared item vocabulary,
so scoring and evaluation read the same arrays. Dates are YYYY-MM-DD (or Parquet dates or
timestamps); an empty one leaves that end of the window open. Metadata ids absent from the
vocabulary are counted and logged; catalogue items absent from the metadata are `listed` False
and the caller decides what they mean (score.rules.unlisted_items).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recbatch.core.rules import NO_CATEGORY, ListRules, available_items
from recbatch.errors import DataError
from recbatch.storage import Location, location, pyarrow_source

if TYPE_CHECKING:
    from recbatch.config import ScoreRulesConfig

log = logging.getLogger(__name__)

REQUIRED = ("item_id", "category")
WINDOW = ("available_from", "available_to")
OPEN_FROM, OPEN_TO = np.iinfo(np.int64).min, np.iinfo(np.int64).max
_EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True, eq=False)
class ItemMetadata:
    """The metadata by item_idx: row r of every array describes catalogue item r."""

    categories: np.ndarray  # int32 category code (index into category_names); NO_CATEGORY: none
    category_names: list[str]  # sorted, so codes are stable across runs
    available_from: np.ndarray  # int64 days since 1970-01-01; OPEN_FROM: no start
    available_to: np.ndarray  # int64 days since 1970-01-01; OPEN_TO: no end
    listed: np.ndarray  # bool: the item has a metadata row

    def available(self, date: str, unlisted: str = "keep") -> np.ndarray:
        """Per item: recommendable on `date` (YYYY-MM-DD); unlisted items per `unlisted` ("keep"/"exclude")."""
        day = (dt.date.fromisoformat(date) - _EPOCH).days
        inside = available_items(self.available_from, self.available_to, day)
        return inside & self.listed if unlisted == "exclude" else inside


def _read_table(path: Location, what: str) -> pa.Table:
    source, fs = pyarrow_source(path)
    try:
        if str(path).lower().endswith(".csv"):
            import pyarrow.csv as pcsv

            options = pcsv.ConvertOptions(
                column_types={c: pa.string() for c in (*REQUIRED, *WINDOW)},
                strings_can_be_null=True,
            )
            with fs.open_input_stream(source) as stream:
                return pcsv.read_csv(stream, convert_options=options)
        import pyarrow.parquet as pq

        return pq.read_table(source, filesystem=fs)
    except (OSError, pa.ArrowInvalid, ValueError) as exc:
        raise DataError(
            f"{what} = {str(path)!r} is not a readable Parquet or CSV table ({str(exc)[:200]})"
        ) from None


def _days(column: pa.ChunkedArray, name: str, what: str, open_end: int) -> np.ndarray:
    """A date column as int64 days since the epoch; nulls and empty strings become `open_end`."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        text = pc.if_else(pc.equal(pc.utf8_trim_whitespace(column), ""), None, column)
        try:
            column = pc.strptime(text, format="%Y-%m-%d", unit="s").cast(pa.date32())
        except pa.ArrowInvalid:
            bad = next(v for v in text.to_pylist() if v is not None and not _is_date(v))
            raise DataError(f"{what}: {name} value {bad!r} is not a date; write YYYY-MM-DD") from None
    elif pa.types.is_timestamp(column.type):
        column = column.cast(pa.date32())
    elif not pa.types.is_date(column.type):
        raise DataError(f"{what}: {name} has type {column.type}; expected YYYY-MM-DD strings or dates")
    days = pc.fill_null(column.cast(pa.date32()).cast(pa.int32()), pa.scalar(0, pa.int32()))
    out = np.asarray(days.to_numpy(), dtype=np.int64)
    out[np.asarray(column.is_null().to_numpy(zero_copy_only=False))] = open_end
    return out


def _is_date(value: str) -> bool:
    try:
        dt.date.fromisoformat(value.strip())
        return True
    except ValueError:
        return False


def read_item_metadata(
    path: str, item_vocab: Location, what: str = "score.rules.item_metadata"
) -> ItemMetadata:
    """The metadata table at `path` by item_idx of the vocabulary at `item_vocab`; DataError on bad input."""
    import pyarrow.parquet as pq

    table = _read_table(location(path), what)
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise DataError(
            f"{what} table {path} has no {', '.join(missing)} column (it has {table.column_names}); "
            "it needs item_id, category and optionally available_from, available_to"
        )
    ids = pc.cast(table.column("item_id"), pa.string())
    if ids.null_count:
        raise DataError(f"{what} table {path} has {ids.null_count} row(s) without an item_id")
    if pc.count_distinct(ids).as_py() != len(ids):
        raise DataError(f"{what} table {path} lists an item_id more than once; keep one row per item")
    source, fs = pyarrow_source(item_vocab)
    vocab = pq.read_table(source, filesystem=fs, columns=["item_id", "item_idx"])
    n_items = len(vocab)
    position = pc.index_in(ids, value_set=pc.cast(vocab.column("item_id"), pa.string()).combine_chunks())
    known = np.asarray(pc.is_valid(position).to_numpy(zero_copy_only=False))
    if not known.all():
        log.warning(
            "%s: %d of %d item ids are not in the item vocabulary; ignored", what, (~known).sum(), len(ids)
        )
    rows = np.asarray(vocab.column("item_idx").to_numpy(), np.int64)[
        np.asarray(pc.fill_null(position, 0).to_numpy(), np.int64)[known]
    ]
    names = pc.cast(table.column("category"), pa.string())
    category_names = sorted({v for v in names.to_pylist() if v not in (None, "")})
    codes = {name: code for code, name in enumerate(category_names)}
    categories = np.full(n_items, NO_CATEGORY, dtype=np.int32)
    categories[rows] = [codes.get(v, NO_CATEGORY) for v in np.asarray(names.to_pylist(), dtype=object)[known]]
    window = {}
    for name, open_end in zip(WINDOW, (OPEN_FROM, OPEN_TO), strict=True):
        window[name] = np.full(n_items, open_end, dtype=np.int64)
        if name in table.column_names:
            window[name][rows] = _days(table.column(name), name, what, open_end)[known]
    listed = np.zeros(n_items, dtype=bool)
    listed[rows] = True
    return ItemMetadata(categories, category_names, window["available_from"], window["available_to"], listed)


def read_rules_metadata(settings: ScoreRulesConfig, item_vocab: Location) -> ItemMetadata | None:
    """The [score.rules] item-metadata table by item_idx, or None when none is configured."""
    if settings.item_metadata is None:
        return None
    return read_item_metadata(settings.item_metadata, item_vocab)


def list_rules(settings: ScoreRulesConfig, metadata: ItemMetadata | None) -> ListRules | None:
    """The list rules scoring applies and evaluation measures, or None when neither a cap nor MMR is on."""
    if not settings.reranks:
        return None
    categories = None if metadata is None else metadata.categories
    return ListRules(categories, settings.category_cap, settings.mmr_lambda, settings.pool)
