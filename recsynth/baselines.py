"""Simple non-GAN generators: the bars any learned generator has to clear (GUIDE §1).

`popularity_sampler` keeps the real activity distribution and item popularity but no
collaborative structure, so a recommender trained on its output is little better than
popularity: the floor of the utility scale.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from recsynth.schema import Schema


def gumbel_top_k(log_weights: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k distinct indices drawn with probability proportional to exp(log_weights)."""
    k = min(k, int(np.isfinite(log_weights).sum()))
    keys = log_weights + rng.gumbel(size=log_weights.shape)
    top = np.argpartition(-keys, k - 1)[:k] if k < len(keys) else np.arange(len(keys))
    return top[np.argsort(-keys[top], kind="stable")]


def popularity_sampler(real: pl.DataFrame, schema: Schema, n_users: int | None,
                       rng: np.random.Generator) -> pl.DataFrame:
    """Synthetic users with real activity counts and items drawn by popularity.

    Each synthetic user's item count is drawn from the real users' distinct-item counts;
    the items without replacement, proportional to real popularity; every other column
    independently from its real marginal. User keys are new strings `pop-<n>`.
    """
    user, item = schema.user_col, schema.item_col
    pairs = real.select(user, item).unique()
    pop = pairs.group_by(item).len().sort(item)
    items = pop.get_column(item)
    log_w = np.log(pop.get_column("len").to_numpy().astype(np.float64))
    activity = pairs.group_by(user).len().sort(user).get_column("len").to_numpy()
    n = len(activity) if n_users is None else n_users
    counts = rng.choice(activity, size=n, replace=True)
    rows_u, rows_i = [], []
    for u, c in enumerate(counts):
        picked = gumbel_top_k(log_w, int(c), rng)
        rows_u.append(np.full(len(picked), u, dtype=np.int64))
        rows_i.append(picked)
    uidx = np.concatenate(rows_u)
    iidx = np.concatenate(rows_i)
    width = len(str(n))
    out = {user: pl.Series(user, [f"pop-{u:0{width}d}" for u in uidx]),
           item: items.gather(iidx)}
    for col in schema.columns:
        if col.name in (user, item) or col.name not in real.columns:
            continue
        source = real.get_column(col.name)
        out[col.name] = source.gather(rng.integers(0, len(source), size=len(uidx)))
    return pl.DataFrame(out).select([c for c in real.columns if c in out])
