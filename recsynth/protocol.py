"""Strong-generalisation evaluation: held-out users reveal part of their items (fold-in)
and the recommender must rank the rest (test)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def fold_in_split(
    matrix: sp.csr_matrix, test_frac: float, rng: np.random.Generator
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Hide round(test_frac * n) items (at least 1, leaving at least 1) of every user with n >= 2.

    One uniform key per stored entry is drawn from `rng` in canonical (row, sorted column)
    order, so the split depends only on the matrix content and the rng state. Users with
    fewer than 2 items keep everything in fold-in. Returns (foldin, test), same shape/dtype.
    """
    if not 0.0 < test_frac < 1.0:
        raise ValueError(f"test_frac must be in (0, 1), got {test_frac}")
    m = sp.csr_matrix(matrix, copy=True)
    m.sum_duplicates()  # canonical form: sorted indices, no duplicates
    m.eliminate_zeros()
    n_rows = m.shape[0]
    counts = np.diff(m.indptr)
    n_test = np.clip(np.rint(test_frac * counts), 1, np.maximum(counts - 1, 0)).astype(np.int64)
    n_test[counts < 2] = 0

    rows = np.repeat(np.arange(n_rows, dtype=np.int64), counts)
    keys = rng.random(m.nnz)
    order = np.lexsort((keys, rows))  # by row, then random key
    rank = np.empty(m.nnz, dtype=np.int64)
    rank[order] = np.arange(m.nnz) - m.indptr[rows[order]]
    is_test = rank < n_test[rows]

    def pick(mask: np.ndarray) -> sp.csr_matrix:
        out = sp.csr_matrix(
            (m.data[mask], (rows[mask], m.indices[mask])), shape=m.shape, dtype=m.dtype
        )
        out.sort_indices()
        return out

    return pick(~is_test), pick(is_test)
