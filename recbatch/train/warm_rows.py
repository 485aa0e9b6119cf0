"""Which embedding rows of a previous model carry over to a new one: a join of two vocabularies by id.

Pure (pyarrow + numpy, no I/O, no TensorFlow), so the mapping is tested against a naive reference.
`prepare.previous_vocab` keeps an id's index across dates, but nothing here relies on that: rows
are matched by id, so a vocabulary rebuilt from scratch (indices shifted) maps just as well, and
`RowMap.index_stable` says whether the indices happened to agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True)
class RowMap:
    """new_rows[k] of the new table takes old_rows[k] of the old one (ascending new_rows)."""

    new_rows: np.ndarray
    old_rows: np.ndarray

    @property
    def copied(self) -> int:
        return len(self.new_rows)

    @property
    def index_stable(self) -> bool:
        """True when every shared id kept its index (what prepare.previous_vocab guarantees)."""
        return bool(np.array_equal(self.new_rows, self.old_rows))


def _as_strings(ids: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Ids as one string array: an id column written as int on one date and as string on the next still
    matches ("17" and 17 are the same user)."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    return pc.cast(ids, pa.string())


def duplicate_ids(ids: pa.Array | pa.ChunkedArray) -> int:
    """How many entries of `ids` repeat an earlier one (a vocabulary must have none)."""
    return len(ids) - pc.count_distinct(_as_strings(ids)).as_py()


def row_map(
    new_ids: pa.Array | pa.ChunkedArray,
    new_idx: np.ndarray,
    old_ids: pa.Array | pa.ChunkedArray,
    old_idx: np.ndarray,
) -> RowMap:
    """The rows of ids present in both vocabularies (new_ids[k] has index new_idx[k], likewise old).

    Ids only in the new vocabulary keep their fresh rows; ids only in the old one are dropped.
    Both vocabularies must be free of duplicate ids (`duplicate_ids`).
    """
    position = pc.index_in(_as_strings(new_ids), value_set=_as_strings(old_ids))
    found = position.is_valid().to_numpy(zero_copy_only=False)
    at = position.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)[found]
    new_rows = np.asarray(new_idx, dtype=np.int64)[found]
    old_rows = np.asarray(old_idx, dtype=np.int64)[at]
    order = np.argsort(new_rows, kind="stable")
    return RowMap(new_rows[order], old_rows[order])


def copy_rows(fresh: np.ndarray, old: np.ndarray, rows: RowMap) -> np.ndarray:
    """`fresh` with the mapped rows replaced by the old table's (a copy; neither input changes)."""
    out = np.array(fresh, copy=True)
    out[rows.new_rows] = old[rows.old_rows]
    return out
