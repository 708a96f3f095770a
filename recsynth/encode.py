"""Real logs → one training example per user: item sets per channel, activity, liked share.

With a rating column, a user's items split into two channels — liked (rating ≥ threshold)
and other — because which items a user likes is what a rating-aware recommender learns
(GUIDE §1: +0.05 TSTR over one channel). Activity and liked share go through a Gaussian
copula (empirical CDF → normal score) so the generator models them jointly with taste and
their real marginals come back exactly when decoded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp
from scipy.special import ndtr, ndtri

from recsynth.errors import DataError
from recsynth.schema import Schema

N_KNOTS = 257


@dataclass(frozen=True)
class EncodedUsers:
    users: pl.Series  # user keys, sorted
    channels: tuple[sp.csr_matrix, ...]  # (liked, other) or (all,), users x items, binary
    activity: np.ndarray  # distinct items per user
    liked_share: np.ndarray | None  # share of a user's items in the liked channel

    @property
    def n_users(self) -> int:
        return len(self.users)

    def stacked(self) -> sp.csr_matrix:
        """[channel_1 | channel_2 | …]: the matrix whose SVD gives the user codes."""
        if len(self.channels) == 1:
            return self.channels[0]
        return sp.hstack(self.channels, format="csr")

    def item_sets(self) -> sp.csr_matrix:
        """Every item each user touched, whatever the channel (channels are disjoint)."""
        return sum(self.channels[1:], self.channels[0]).tocsr()

    def subset(self, rows: np.ndarray) -> EncodedUsers:
        share = None if self.liked_share is None else self.liked_share[rows]
        return EncodedUsers(self.users.gather(rows), tuple(c[rows] for c in self.channels),
                            self.activity[rows], share)


def default_like_threshold(mean_rating: float) -> float:
    """Ratings at or above the rounded-up mean count as liked (4 on MovieLens' 1–5 scale)."""
    return float(np.ceil(mean_rating))


def encode_users(batches: Iterable[pl.DataFrame], schema: Schema, users: pl.Series,
                 catalog: pl.Series, like_threshold: float | None, source: str
                 ) -> tuple[EncodedUsers, np.ndarray]:
    """Per-user item sets from the log read in batches, and the log's rows per user.

    Memory is the sparse matrix of distinct (user, item) pairs plus one batch, never the
    whole log (issue 6). `users` and `catalog` are the sorted keys of the whole log; each
    batch maps its keys to positions by binary search and is reduced to its distinct pairs
    with the number of liked rows, so a pair is liked when any of its ratings (its best
    one) reaches the threshold, and the result does not depend on the batch size or order.
    """
    user, item, rating = schema.user_col, schema.item_col, schema.rating_col
    if like_threshold is not None and rating is None:
        raise DataError(f"{source}: a like threshold needs a rating column, none in the schema")
    rows, cols, liked = [], [], []
    per_user = np.zeros(len(users), dtype=np.int64)
    for batch in batches:
        if batch.height == 0:
            continue
        u = _positions(users, batch.get_column(user), source, user, "user")
        i = _positions(catalog, batch.get_column(item), source, item, "item")
        hit = np.zeros(batch.height, dtype=np.int64) if like_threshold is None else \
            (batch.get_column(rating) >= like_threshold).fill_null(False).to_numpy() \
            .astype(np.int64)
        key = u * len(catalog) + i
        pairs, inverse = np.unique(key, return_inverse=True)
        rows.append((pairs // len(catalog)).astype(np.int32))
        cols.append((pairs % len(catalog)).astype(np.int32))
        liked.append(np.bincount(inverse, weights=hit, minlength=len(pairs)).astype(np.float32))
        per_user += np.bincount(u, minlength=len(users))
    shape = (len(users), len(catalog))
    counts = sp.csr_matrix((np.concatenate(liked) if liked else np.zeros(0, np.float32),
                            (np.concatenate(rows) if rows else np.zeros(0, np.int32),
                             np.concatenate(cols) if cols else np.zeros(0, np.int32))),
                           shape=shape, dtype=np.float32)
    del rows, cols, liked
    counts.sum_duplicates()
    counts.sort_indices()
    activity = np.diff(counts.indptr).astype(np.int64)
    everything = sp.csr_matrix((np.ones(counts.nnz, dtype=np.float32), counts.indices,
                                counts.indptr), shape=shape)
    if like_threshold is None:
        return EncodedUsers(users, (everything,), activity, None), per_user
    # own index arrays: eliminate_zeros() below rewrites them in place
    liked_m = sp.csr_matrix(((counts.data > 0).astype(np.float32), counts.indices.copy(),
                             counts.indptr.copy()), shape=shape)
    liked_m.eliminate_zeros()
    other = everything - liked_m  # every pair not liked (null ratings included)
    other.eliminate_zeros()
    share = np.diff(liked_m.indptr) / np.maximum(activity, 1)
    return EncodedUsers(users, (liked_m, other), activity, share), per_user


def _positions(keys: pl.Series, values: pl.Series, source: str, column: str,
               what: str) -> np.ndarray:
    """Positions of `values` in the sorted `keys`; a value not among them is a data error."""
    values = values.cast(keys.dtype)
    pos = keys.search_sorted(values).to_numpy().astype(np.int64)
    found = np.minimum(pos, len(keys) - 1)
    missing = (pos >= len(keys)) | ~(keys.gather(found) == values).fill_null(False).to_numpy()
    if missing.any():
        example = values.filter(pl.Series(missing)).item(0)
        raise DataError(f"{source}: column {column!r} has {what} key {example!r} not in the "
                        "real catalog" if what == "item" else
                        f"{source}: column {column!r} has {what} key {example!r} not among "
                        "the users")
    return pos


# ------------------------------------------------------------ Gaussian copula marginals

def normal_scores(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rank-based normal scores, ties broken at random: the Gaussian-copula transform."""
    n = len(values)
    order = np.lexsort((rng.random(n), values))
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = np.arange(n)
    return ndtri((ranks + 0.5) / n)


@dataclass(frozen=True)
class Marginal:
    """Empirical quantile function of a 1-d variable: normal score → value."""

    knots: np.ndarray  # values at probabilities linspace(0, 1, len(knots))

    @classmethod
    def fit(cls, values: np.ndarray) -> Marginal:
        return cls(np.quantile(values.astype(np.float64), np.linspace(0.0, 1.0, N_KNOTS)))

    def from_normal(self, scores: np.ndarray) -> np.ndarray:
        probs = np.linspace(0.0, 1.0, len(self.knots))
        return np.interp(ndtr(scores), probs, self.knots)
