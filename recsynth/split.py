"""User-level train/holdout split: whole users land on one side, fixed by the seed."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

from recsynth import io
from recsynth.errors import DataError, UsageError


def holdout_users(users: pl.Series, holdout_frac: float, seed: int) -> pl.Series:
    """Pick held-out user keys; depends only on the set of keys and the seed, not row order."""
    if not 0.0 < holdout_frac < 1.0:
        raise UsageError(f"--holdout-frac must be between 0 and 1 (got {holdout_frac})")
    keys = users.unique().sort()
    if len(keys) < 2:
        raise DataError(f"column {users.name!r}: need at least 2 users to split, found {len(keys)}")
    n_hold = min(max(1, round(holdout_frac * len(keys))), len(keys) - 1)
    perm = np.random.default_rng(seed).permutation(len(keys))
    return keys.gather(np.sort(perm[:n_hold]))


def split_frame(lf: pl.LazyFrame, user_col: str, holdout_frac: float, seed: int,
                source: str, on_stage: Callable[[str], None] = lambda _: None
                ) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """(train, held-out) rows; `on_stage` hears what is being done (a large log is seconds
    of reading before any row is written)."""
    on_stage(f"reading the user keys of {source}")
    users = io.collect(lf.select(pl.col(user_col).unique()), source).get_column(user_col)
    if users.null_count():
        raise DataError(f"{source}: column {user_col!r} has null user keys")
    if len(users) < 2:
        raise DataError(f"{source}: column {user_col!r}: need at least 2 users to split, "
                        f"found {len(users)}")
    held = holdout_users(users, holdout_frac, seed)
    on_stage(f"writing {len(users) - len(held)} train users and {len(held)} held-out users")
    is_held = pl.col(user_col).is_in(held.implode())
    return lf.filter(~is_held), lf.filter(is_held)
