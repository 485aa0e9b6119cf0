"""`recbatch bench shapes`: MovieLens-100K rewritten in the shapes of other public logs, for the backtest.

recbatch must hold its quality on inputs nobody tuned it for, reached by configuration alone.
MovieLens' licence forbids copying it, so these files are derived locally from u.data (never
committed) and read by configs under conf/ that only describe their columns:

- ml100k-halfstar.csv (conf/ml100k-halfstar.toml): explicit ratings on the 0.5-5 half-star
  scale of MovieLens-latest, with a header (userId,movieId,rating,timestamp); a seeded half of
  the ratings lose half a star, so 1-star ratings become 0.5.
- ml100k-plays.tsv (conf/ml100k-plays.toml): implicit play counts without timestamps or header,
  as Last.fm-360K (user, artist, plays): plays = round(2^rating × a seeded lognormal factor),
  rows in a seeded order (time is gone), so the split and the backtest hold out random pairs.

Then `recbatch backtest --config conf/ml100k-plays.toml` (see README, "Quality on other data").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

HALFSTAR = "ml100k-halfstar.csv"
PLAYS = "ml100k-plays.tsv"


def read_u_data(path: Path) -> Any:
    """u.data as a DataFrame: user, item, rating, timestamp (tab-separated, no header)."""
    import pandas as pd

    return pd.read_csv(path, sep="\t", header=None, names=["user", "item", "rating", "timestamp"])


def halfstar(ratings: Any, seed: int) -> Any:
    """userId, movieId, rating (0.5-5 in half stars), timestamp: half the ratings lose half a star."""
    rng = np.random.default_rng(seed)
    out = ratings.rename(columns={"user": "userId", "item": "movieId"}).copy()
    out["rating"] = out["rating"] - 0.5 * (rng.random(len(out)) < 0.5)
    return out[["userId", "movieId", "rating", "timestamp"]]


def play_counts(ratings: Any, seed: int) -> Any:
    """user, artist, plays (>= 1), in a seeded row order and without time."""
    rng = np.random.default_rng(seed)
    factor = rng.lognormal(mean=0.0, sigma=0.5, size=len(ratings))
    plays = np.maximum(1, np.round(2.0 ** ratings["rating"].to_numpy() * factor)).astype(np.int64)
    out = ratings.assign(plays=plays).rename(columns={"user": "user", "item": "artist"})
    return out[["user", "artist", "plays"]].iloc[rng.permutation(len(out))]


def derive_shapes(source: Path, out_dir: Path, seed: int = 13) -> dict[str, dict[str, Any]]:
    """Write both derived files under `out_dir`; returns {file: rows, path}."""
    ratings = read_u_data(source)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    frame = halfstar(ratings, seed)
    frame.to_csv(out_dir / HALFSTAR, index=False, float_format="%.1f")
    written[HALFSTAR] = {"rows": len(frame), "path": str(out_dir / HALFSTAR)}
    frame = play_counts(ratings, seed)
    frame.to_csv(out_dir / PLAYS, sep="\t", header=False, index=False)
    written[PLAYS] = {"rows": len(frame), "path": str(out_dir / PLAYS)}
    return written
