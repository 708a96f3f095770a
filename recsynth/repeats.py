"""Rows per (user, item) pair, for logs where real users touch an item more than once."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import polars as pl

from recsynth.rowvalues import PRIOR, Counts, Sampler, require_columns

REPEAT_CAP = 100
REPEAT_BUCKETS = 14
REPEAT_SHRINK = 20.0


@dataclass(frozen=True, eq=False)
class Repeats:
    """Rows per (user, item) pair: per-item counts of r (capped at REPEAT_CAP) smoothed
    towards the global counts, drawn like a categorical (code r - 1), then the excess r - 1
    scaled (randomised rounding) by a factor for the user's activity bucket
    (floor(log2(distinct items of the user)), the last one open-ended).

    Heavy users repeat items far more than light ones (online-retail: 1.15 rows per pair
    for users with 8-15 items, 2-3.5 for users with 256+), which item counts alone miss.
    The factor of a bucket is its real excess over the excess the item model predicts for
    its pairs, shrunk towards 1; buckets without real users take the nearest one's factor.
    Only built when some real pair has more than one row, so logs with one row per pair
    (ratings) keep exactly one output row per input pair.
    """

    counts: Counts
    user_factor: np.ndarray

    @classmethod
    def fit(cls, frame: pl.DataFrame, user: str, items: np.ndarray,
            n_items: int) -> Repeats | None:
        pairs = (pl.DataFrame({"u": frame.get_column(user), "i": items})
                 .filter(pl.col("i") >= 0).group_by("u", "i", maintain_order=True).len())
        r = pairs.get_column("len").to_numpy().astype(np.int64)
        if r.size == 0 or r.max() <= 1:
            return None
        pair_items = pairs.get_column("i").to_numpy()
        codes = np.minimum(r, REPEAT_CAP) - 1
        counts = Counts.fit(pair_items, codes, REPEAT_CAP, n_items)
        # excess the (smoothed) item model expects for each real pair
        item_n = np.bincount(counts.item, weights=counts.count, minlength=n_items)
        item_excess = np.bincount(counts.item, weights=counts.count * counts.code,
                                  minlength=n_items)
        global_mean = float(counts.global_count @ np.arange(REPEAT_CAP)
                            / counts.global_count.sum())
        expected = ((item_excess + PRIOR * global_mean) / (item_n + PRIOR))[pair_items]
        users = pairs.get_column("u").to_physical()
        per_user = (pl.DataFrame({"u": users, "obs": (codes).astype(np.float64),
                                  "exp": expected})
                    .group_by("u", maintain_order=True)  # fixed order: the float sums
                    .agg(pl.len().alias("n"), pl.col("obs").sum(),  # below are bitwise
                         pl.col("exp").sum()))  # the same on every run
        bucket = activity_bucket(per_user.get_column("n").to_numpy())
        obs = np.bincount(bucket, weights=per_user.get_column("obs").to_numpy(),
                          minlength=REPEAT_BUCKETS)
        exp = np.bincount(bucket, weights=per_user.get_column("exp").to_numpy(),
                          minlength=REPEAT_BUCKETS)
        seen = np.bincount(bucket, minlength=REPEAT_BUCKETS) > 0
        factor = (obs + REPEAT_SHRINK) / (exp + REPEAT_SHRINK)
        # buckets without real users: the nearest bucket with users
        idx = np.flatnonzero(seen)
        nearest = idx[np.argmin(np.abs(np.arange(REPEAT_BUCKETS)[:, None] - idx[None, :]),
                                axis=1)]
        return cls(counts, factor[nearest])

    @cached_property
    def _sampler(self) -> Sampler:
        return Sampler.build(self.counts)

    def draw(self, users: np.ndarray, items: np.ndarray,
             rng: np.random.Generator) -> np.ndarray:
        """Rows (>= 1) for each input pair; `users` gives each pair's user (for activity)."""
        excess = self._sampler.draw(items, rng, 1).astype(np.float64)
        activity = np.bincount(users)[users]
        scaled = excess * self.user_factor[activity_bucket(activity)]
        whole = np.floor(scaled)
        return 1 + (whole + (rng.random(items.size) < scaled - whole)).astype(np.int64)

    def meta(self) -> dict[str, Any]:
        return {"global_count": self.counts.global_count.tolist(),
                "user_factor": self.user_factor.tolist()}

    @classmethod
    def restore(cls, meta: dict, table: pl.DataFrame, n_items: int) -> Repeats:
        global_count = np.asarray(meta["global_count"], dtype=np.int64)
        if global_count.size != REPEAT_CAP or global_count.min() < 0 or global_count.sum() < 1:
            raise ValueError(f"repeats: global_count must hold {REPEAT_CAP} counts")
        factor = np.asarray(meta["user_factor"], dtype=np.float64)
        if factor.size != REPEAT_BUCKETS or not np.isfinite(factor).all() or factor.min() < 0:
            raise ValueError(f"repeats: user_factor must hold {REPEAT_BUCKETS} numbers >= 0")
        require_columns(table, ("item", "code", "count"), "repeats")
        item, code, count = (table.get_column(c).cast(pl.Int64).to_numpy() for c in
                             ("item", "code", "count"))
        key = item * REPEAT_CAP + code
        if table.height and (item.min() < 0 or item.max() >= n_items or code.min() < 0
                             or code.max() >= REPEAT_CAP or count.min() < 1
                             or np.any(np.diff(key) <= 0)):
            raise ValueError("repeats: counts table is inconsistent with the catalog")
        return cls(Counts(item, code, count, global_count, n_items), factor)


def activity_bucket(n: np.ndarray) -> np.ndarray:
    """floor(log2(n)) for n >= 1, capped at REPEAT_BUCKETS - 1."""
    return np.minimum(np.frexp(np.maximum(n, 1).astype(np.float64))[1] - 1,
                      REPEAT_BUCKETS - 1).astype(np.int64)
