"""Most-popular baseline: the floor any personalised model must beat."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


class Popularity:
    """Scores every item by how many training users hold it, the same list for everyone."""

    name = "pop"

    def __init__(self) -> None:
        self.counts: np.ndarray | None = None

    def fit(self, train: sp.csr_matrix, rng: np.random.Generator) -> Popularity:
        self.counts = np.asarray((train != 0).sum(axis=0), dtype=np.float32).ravel()
        return self

    def score(self, history: sp.csr_matrix) -> np.ndarray:
        if self.counts is None:
            raise RuntimeError("fit() before score()")
        return np.tile(self.counts, (history.shape[0], 1))
