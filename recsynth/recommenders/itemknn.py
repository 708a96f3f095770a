"""Item-based k-nearest-neighbour recommender with cosine similarity."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

_BLOCK_CELLS = 5_000_000  # bound on a similarity block's dense size, keeps memory flat


def _top_k_per_row(block: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the k largest entries of each row (ties: lower column index)."""
    counts = np.diff(block.indptr)
    rows = np.repeat(np.arange(block.shape[0]), counts)
    order = np.lexsort((block.indices, -block.data, rows))
    rank = np.empty(block.nnz, dtype=np.int64)
    rank[order] = np.arange(block.nnz) - block.indptr[rows[order]]
    keep = rank < k
    return sp.csr_matrix((block.data[keep], (rows[keep], block.indices[keep])), shape=block.shape)


def cosine_top_k(train: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Item x item cosine similarity with zero diagonal, top-k neighbours per target column.

    Built in blocks of target items so a large catalog never materialises the full
    co-occurrence matrix. Column j of the result holds the k items most similar to j.
    """
    x = sp.csc_matrix(train, dtype=np.float32, copy=True)
    x.sum_duplicates()
    x.eliminate_zeros()
    x.data[:] = 1.0
    n_items = x.shape[1]
    norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel())
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0).astype(np.float32)
    xn = (x @ sp.diags(inv)).tocsc()
    xt = xn.T.tocsr()
    step = max(1, _BLOCK_CELLS // max(n_items, 1))
    blocks = []
    for start in range(0, n_items, step):
        stop = min(start + step, n_items)
        sim = (xt[start:stop] @ xn).tocsr()  # targets x items
        rows = np.repeat(np.arange(start, stop), np.diff(sim.indptr))
        sim.data[sim.indices == rows] = 0.0  # an item is not its own neighbour
        sim.eliminate_zeros()
        blocks.append(_top_k_per_row(sim, k))
    s_t = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, n_items))
    return s_t.T.tocsr()


class ItemKNN:
    """score(u, j) = Σ_{i in history(u)} sim(i, j) over j's top-k neighbours.

    A sparse neighbourhood model: cheap, strong on co-purchase data, and needs no training
    users at scoring time, so new users are scored from their history directly.
    """

    name = "itemknn"

    def __init__(self, k_neighbors: int = 100) -> None:
        if k_neighbors < 1:
            raise ValueError(f"k_neighbors must be >= 1, got {k_neighbors}")
        self.k_neighbors = k_neighbors
        self.similarity: sp.csr_matrix | None = None

    def fit(self, train: sp.csr_matrix, rng: np.random.Generator) -> ItemKNN:
        self.similarity = cosine_top_k(train, self.k_neighbors)
        return self

    def params(self) -> dict[str, object]:
        return {"k_neighbors": self.k_neighbors}

    def score(self, history: sp.csr_matrix) -> np.ndarray:
        if self.similarity is None:
            raise RuntimeError("fit() before score()")
        h = sp.csr_matrix(history, dtype=np.float32)
        return np.asarray((h @ self.similarity).toarray(), dtype=np.float32)
