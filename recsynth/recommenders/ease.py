"""EASE^R (Steck, WWW 2019): a closed-form linear item-item autoencoder.

Strong on sparse implicit data and has a single hyper-parameter, which is tuned here on a
validation fold carved from the training users so the caller never leaks test data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from recsynth.metrics.ranking import accuracy_per_user, top_k
from recsynth.protocol import fold_in_split

LAMBDA_GRID = (50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 3000.0)
UNMODELLED_SCORE = np.float32(-1e30)
"""Score of items EASE does not model (never seen in train, or beyond `max_items`): last."""

_VAL_USER_FRAC = 0.1
_VAL_TEST_FRAC = 0.2
_VAL_K = 10


def _binary(m: sp.spmatrix) -> sp.csr_matrix:
    x = sp.csr_matrix(m, dtype=np.float64, copy=True)
    x.sum_duplicates()
    x.data[:] = 1.0
    return x


def modelled_items(train: sp.csr_matrix, max_items: int) -> np.ndarray:
    """Ascending indices of the (at most `max_items`) most popular items seen in train."""
    counts = np.asarray(train.sum(axis=0)).ravel()
    order = np.lexsort((np.arange(len(counts)), -counts))
    order = order[counts[order] > 0][:max_items]
    return np.sort(order)


def ease_weights(x: sp.csr_matrix, lam: float) -> np.ndarray:
    """B = I − P / diag(P) with P = (XᵀX + λI)⁻¹, so diag(B) = 0 (float64 solve, float32 out)."""
    g = (x.T @ x).toarray()
    g[np.diag_indices_from(g)] += lam
    p = sla.cho_solve(sla.cho_factor(g, overwrite_a=True), np.eye(g.shape[0]), overwrite_b=True)
    b = -p / np.diag(p)[None, :]
    b[np.diag_indices_from(b)] = 0.0
    return b.astype(np.float32)


def select_lambda(
    x: sp.csr_matrix, lambdas: Sequence[float], rng: np.random.Generator
) -> tuple[float, dict[float, float]]:
    """Pick λ by NDCG@10 on 10% of the users (80/20 fold-in), fitted on the other 90%.

    The Gram matrix is eigendecomposed once, G = Q diag(w) Qᵀ, so every λ costs only
    (X_f Q) diag(1/(w+λ)) Qᵀ and diag(P) = (Q∘Q) · 1/(w+λ), not a fresh inversion.
    Returns (best λ, NDCG per λ); ties go to the smaller λ. With no usable validation user,
    the middle of the grid is returned.
    """
    grid = sorted(float(v) for v in lambdas)
    fallback = grid[len(grid) // 2]
    n_users = x.shape[0]
    if n_users < 2 or x.shape[1] == 0:
        return fallback, {}
    n_val = max(1, int(round(_VAL_USER_FRAC * n_users)))
    perm = rng.permutation(n_users)
    val, rest = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    foldin, test = fold_in_split(x[val], _VAL_TEST_FRAC, rng)
    keep = np.diff(test.indptr) > 0
    if not keep.any():
        return fallback, {}
    foldin, test = foldin[keep], test[keep]
    xr = x[rest]
    w, q = np.linalg.eigh((xr.T @ xr).toarray())
    fq = np.asarray(foldin @ q)
    q2 = q * q
    f_dense = foldin.toarray()
    results: dict[float, float] = {}
    for lam in grid:
        inv = 1.0 / (w + lam)
        d = q2 @ inv
        scores = f_dense - ((fq * inv) @ q.T) / d[None, :]
        top = top_k(scores, foldin, _VAL_K)
        results[lam] = float(accuracy_per_user(top, test, [_VAL_K])[f"ndcg@{_VAL_K}"].mean())
    best = max(grid, key=lambda lam: (results[lam], -lam))
    return best, results


class EASE:
    """EASE^R with λ tuned on the training data itself.

    Catalog cap: only the `max_items` most popular training items (default 10,000) enter
    the dense item x item model, because its cost is O(n_items³) time and O(n_items²)
    memory. Other items, and items no training user holds, get `UNMODELLED_SCORE` so they
    rank after every modelled item.
    """

    name = "ease"

    def __init__(
        self, lambdas: Sequence[float] | float = LAMBDA_GRID, max_items: int = 10_000
    ) -> None:
        grid = [float(lambdas)] if isinstance(lambdas, (int, float)) else list(lambdas)
        if not grid or min(grid) <= 0:
            raise ValueError(f"lambdas must be positive, got {lambdas!r}")
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        self.lambdas = tuple(grid)
        self.max_items = max_items
        self.lam: float | None = None
        self.validation: dict[float, float] = {}
        self.items: np.ndarray | None = None
        self.weights: np.ndarray | None = None
        self.n_items = 0

    def fit(self, train: sp.csr_matrix, rng: np.random.Generator) -> EASE:
        x = _binary(train)
        self.n_items = x.shape[1]
        self.items = modelled_items(x, self.max_items)
        xk = x[:, self.items]
        if len(self.lambdas) == 1:
            self.lam, self.validation = self.lambdas[0], {}
        else:
            self.lam, self.validation = select_lambda(xk, self.lambdas, rng)
        self.weights = ease_weights(xk, self.lam)
        return self

    def score(self, history: sp.csr_matrix) -> np.ndarray:
        if self.weights is None or self.items is None:
            raise RuntimeError("fit() before score()")
        h = sp.csr_matrix(history, dtype=np.float32)[:, self.items]
        out = np.full((history.shape[0], self.n_items), UNMODELLED_SCORE, dtype=np.float32)
        out[:, self.items] = np.asarray(h @ self.weights, dtype=np.float32)
        return out
