"""A Bloom filter of (user, item) pairs: the streaming input's "is this a known positive?".

Streaming training cannot keep every positive to reject sampled negatives that hit one;
10 bits per pair (1.25 bytes, against 16+ for the in-memory arrays) with 7 hashes answer
with about 1% false positives and no false negatives. A false positive only redraws a
valid negative, which skews sampling negligibly; a positive is never used as a negative.
"""

from __future__ import annotations

import numpy as np

_BITS_PER_KEY = 10
_HASHES = 7
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a cheap, well-spread 64-bit hash (uint64 arithmetic wraps)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


class PairFilter:
    """Bloom filter sized for `capacity` distinct (user, item) pairs over `num_items` items."""

    def __init__(self, capacity: int, num_items: int) -> None:
        self.num_items = int(num_items)
        self.nbits = np.uint64(max(64, int(capacity) * _BITS_PER_KEY))
        self.bits = np.zeros(int(self.nbits + np.uint64(7)) // 8, dtype=np.uint8)

    @property
    def nbytes(self) -> int:
        """Memory held by the filter."""
        return int(self.bits.nbytes)

    def _positions(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        keys = users.astype(np.uint64) * np.uint64(self.num_items) + items.astype(np.uint64)
        h1 = _mix(keys)
        h2 = _mix(keys ^ _GOLDEN) | np.uint64(1)
        # Kirsch-Mitzenmacher: hash j = h1 + j * h2; shape (_HASHES, n).
        steps = np.arange(_HASHES, dtype=np.uint64)[:, None]
        return (h1[None, :] + steps * h2[None, :]) % self.nbits

    def add(self, users: np.ndarray, items: np.ndarray) -> None:
        """Insert the pairs (users[k], items[k])."""
        pos = self._positions(users, items).ravel()
        np.bitwise_or.at(
            self.bits, pos >> np.uint64(3), np.left_shift(1, pos & np.uint64(7)).astype(np.uint8)
        )

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """True where the pair was added (always) or collides with added pairs (~1%)."""
        pos = self._positions(users, items)
        bit = (self.bits[pos >> np.uint64(3)] >> (pos & np.uint64(7)).astype(np.uint8)) & np.uint8(1)
        return bit.all(axis=0)
