"""Interaction logs as a binary user x item matrix over a fixed item catalog.

Users are sorted by key and items by catalog position, so every figure computed from
the matrix is independent of the input's row order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsynth.errors import DataError

_IDX = "__item_idx"


@dataclass(frozen=True)
class UserItems:
    """`matrix[u, i] == 1` when user `users[u]` touched catalog item `i` (any number of times)."""

    users: pl.Series
    matrix: sp.csr_matrix

    @property
    def n_users(self) -> int:
        return self.matrix.shape[0]

    @property
    def n_items(self) -> int:
        return self.matrix.shape[1]

    def subset(self, rows: np.ndarray) -> UserItems:
        return UserItems(self.users.gather(rows), self.matrix[rows])


def build_catalog(item_col: str, *frames: pl.DataFrame) -> pl.Series:
    """Sorted unique item keys seen in any of the frames."""
    keys = pl.concat([f.select(pl.col(item_col)) for f in frames], how="vertical_relaxed")
    return keys.get_column(item_col).drop_nulls().unique().sort()


def to_user_items(
    df: pl.DataFrame, user_col: str, item_col: str, catalog: pl.Series, source: str
) -> UserItems:
    """Binarise a log against the catalog; items outside it are a data error."""
    lookup = pl.DataFrame({item_col: catalog, _IDX: np.arange(len(catalog), dtype=np.int64)})
    pairs = df.select(user_col, item_col).unique()
    joined = pairs.join(lookup, on=item_col, how="left")
    unknown = joined.filter(pl.col(_IDX).is_null())
    if unknown.height:
        example = unknown.get_column(item_col)[0]
        raise DataError(
            f"{source}: column {item_col!r} has {unknown.get_column(item_col).n_unique()} item "
            f"key(s) not in the real catalog (e.g. {example!r})"
        )
    users = joined.get_column(user_col).unique().sort()
    user_lookup = pl.DataFrame({user_col: users, "__u": np.arange(len(users), dtype=np.int64)})
    coo = joined.join(user_lookup, on=user_col, how="left")
    rows = coo.get_column("__u").to_numpy()
    cols = coo.get_column(_IDX).to_numpy()
    data = np.ones(len(rows), dtype=np.float32)
    matrix = sp.csr_matrix((data, (rows, cols)), shape=(len(users), len(catalog)))
    matrix.sum_duplicates()
    matrix.sort_indices()
    return UserItems(users, matrix)
