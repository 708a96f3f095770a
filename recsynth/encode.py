"""Real logs → one training example per user: item sets per channel, activity, liked share.

With a rating column, a user's items split into two channels — liked (rating ≥ threshold)
and other — because which items a user likes is what a rating-aware recommender learns
(GUIDE §1: +0.05 TSTR over one channel). Activity and liked share go through a Gaussian
copula (empirical CDF → normal score) so the generator models them jointly with taste and
their real marginals come back exactly when decoded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp
from scipy.special import ndtr, ndtri

from recsynth.errors import DataError
from recsynth.matrix import to_user_items
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
        return sp.hstack(self.channels, format="csr")

    def item_sets(self) -> sp.csr_matrix:
        """Every item each user touched, whatever the channel (channels are disjoint)."""
        return sum(self.channels[1:], self.channels[0]).tocsr()

    def subset(self, rows: np.ndarray) -> EncodedUsers:
        share = None if self.liked_share is None else self.liked_share[rows]
        return EncodedUsers(self.users.gather(rows), tuple(c[rows] for c in self.channels),
                            self.activity[rows], share)


def default_like_threshold(ratings: pl.Series) -> float:
    """Ratings at or above the rounded-up mean count as liked (4 on MovieLens' 1–5 scale)."""
    return float(np.ceil(ratings.drop_nulls().cast(pl.Float64).mean()))


def encode_users(frame: pl.DataFrame, schema: Schema, catalog: pl.Series,
                 like_threshold: float | None, source: str) -> EncodedUsers:
    user, item = schema.user_col, schema.item_col
    if like_threshold is None:
        all_items = to_user_items(frame, user, item, catalog, source)
        activity = np.diff(all_items.matrix.indptr).astype(np.int64)
        return EncodedUsers(all_items.users, (all_items.matrix,), activity, None)
    rating = schema.rating_col
    if rating is None:
        raise DataError(f"{source}: a like threshold needs a rating column, none in the schema")
    # a user-item pair counts as liked when its best rating reaches the threshold
    best = frame.group_by(user, item).agg(pl.col(rating).max().alias("__best"))
    all_items = to_user_items(best, user, item, catalog, source)
    liked = _aligned(best.filter(pl.col("__best") >= like_threshold), all_items.users, user,
                     item, catalog, source)
    other = all_items.matrix - liked  # every pair not liked (null ratings included)
    other.eliminate_zeros()
    activity = np.diff(all_items.matrix.indptr).astype(np.int64)
    share = np.diff(liked.indptr) / np.maximum(activity, 1)
    return EncodedUsers(all_items.users, (liked, other), activity, share)


def _aligned(rows: pl.DataFrame, users: pl.Series, user: str, item: str, catalog: pl.Series,
             source: str) -> sp.csr_matrix:
    """A channel's matrix with one row per user of `users` (empty rows where none)."""
    part = to_user_items(rows, user, item, catalog, source)
    pos = pl.DataFrame({user: users, "__row": np.arange(len(users))})
    idx = pl.DataFrame({user: part.users}).join(pos, on=user, how="left")["__row"].to_numpy()
    coo = part.matrix.tocoo()
    return sp.csr_matrix((coo.data, (idx[coo.row], coo.col)), shape=(len(users), len(catalog)),
                         dtype=np.float32)


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
