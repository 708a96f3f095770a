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
BATCH_ROWS = 1_000_000  # log rows held at once while encoding
BATCH_PAIRS = 2_000_000  # pending pairs before batches are folded into the result


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
    shape = (len(users), len(catalog))
    counts = sp.csr_matrix(shape, dtype=np.float32)  # liked rows per distinct pair so far
    pending: list[sp.csr_matrix] = []
    per_user = np.zeros(len(users), dtype=np.int64)
    for batch in batches:
        if batch.height == 0:
            continue
        u = _positions(users, batch.get_column(user), source, user, "user")
        i = _positions(catalog, batch.get_column(item), source, item, "item")
        hit = np.zeros(batch.height, dtype=np.float32) if like_threshold is None else \
            (batch.get_column(rating).fill_nan(None) >= like_threshold).fill_null(False) \
            .to_numpy().astype(np.float32)  # NaN is no rating, as null: not liked
        part = sp.csr_matrix((hit, (u, i)), shape=shape, dtype=np.float32)
        part.sum_duplicates()  # explicit zeros kept: a pair with no liked row is a pair
        pending.append(part)
        per_user += np.bincount(u, minlength=len(users))
        # fold the batches in once they hold as many pairs as the result: pairs that recur
        # across batches (repeat purchases, time-ordered parts) then cost memory once
        if sum(p.nnz for p in pending) > max(BATCH_PAIRS, counts.nnz):
            counts = _merged(counts, pending)
            pending = []
    counts = _merged(counts, pending)
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


def _merged(counts: sp.csr_matrix, parts: list[sp.csr_matrix]) -> sp.csr_matrix:
    """The sum of the matrices, duplicates summed and explicit zeros kept (every stored
    entry is a pair of the log; its value counts the pair's liked rows)."""
    if not parts:
        return counts
    coo = [m.tocoo() for m in (counts, *parts)]  # tocoo keeps explicit zeros
    out = sp.coo_matrix((np.concatenate([m.data for m in coo]),
                         (np.concatenate([m.row for m in coo]),
                          np.concatenate([m.col for m in coo]))),
                        shape=counts.shape).tocsr()  # sums duplicates
    out.sort_indices()
    return out


def _positions(keys: pl.Series, values: pl.Series, source: str, column: str,
               what: str) -> np.ndarray:
    """Positions of `values` in the sorted `keys`; a value not among them is a data error."""
    values = values.cast(keys.dtype)
    pos = keys.search_sorted(values).to_numpy().astype(np.int64)
    found = np.minimum(pos, len(keys) - 1)
    missing = (pos >= len(keys)) | ~(keys.gather(found) == values).fill_null(False).to_numpy()
    if missing.any():
        example = values.filter(pl.Series(missing)).item(0)
        where = "the real catalog" if what == "item" else "the users"
        raise DataError(f"{source}: column {column!r} has {what} key {example!r} not in "
                        f"{where}")
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

    def quantile(self, probs: np.ndarray) -> np.ndarray:
        """Values at probabilities in [0, 1] (linear between knots)."""
        return np.interp(probs, self._probs(), self.knots)

    def cdf(self, values: np.ndarray) -> np.ndarray:
        """Probability of at most each value: the inverse of `quantile`."""
        return np.interp(values, self.knots, self._probs())

    def from_normal(self, scores: np.ndarray) -> np.ndarray:
        return self.quantile(ndtr(scores))

    def _probs(self) -> np.ndarray:
        return np.linspace(0.0, 1.0, len(self.knots))
