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
# Small logs validate λ on several disjoint user folds until this many users are used: on
# MovieLens-100K's 754 users one 75-user fold chose λ 100, 200 or 500 by the draw
# (held-out NDCG@10 0.321-0.330). Larger logs keep one fold (one eigendecomposition).
_MIN_VAL_USERS = 300
_MAX_VAL_FOLDS = 5
_VAL_TEST_FRAC = 0.2
_VAL_K = 10


def _binary(m: sp.spmatrix) -> sp.csr_matrix:
    x = sp.csr_matrix(m, dtype=np.float64, copy=True)
    x.sum_duplicates()
    x.eliminate_zeros()
    x.data[:] = 1.0
    return x


def modelled_items(train: sp.csr_matrix, max_items: int) -> np.ndarray:
    """Ascending indices of the (at most `max_items`) most popular items seen in train."""
    counts = np.asarray(train.sum(axis=0)).ravel()
    order = np.lexsort((np.arange(len(counts)), -counts))
    order = order[counts[order] > 0][:max_items]
    return np.sort(order)


def gram_eigen(x: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs (w, Q) of G = XᵀX on its row space: G = Q diag(w) Qᵀ, QᵀQ = I.

    With fewer users than items the small XXᵀ is decomposed instead (Q = XᵀU/√w), so a
    wide catalog costs O(users³); the null space of G (eigenvalue 0) is left implicit.
    """
    n_users, n_items = x.shape
    if n_users >= n_items:
        return np.linalg.eigh((x.T @ x).toarray())
    w, u = np.linalg.eigh((x @ x.T).toarray())
    keep = w > 1e-9 * max(float(w.max(initial=0.0)), 1.0)
    w, u = w[keep], u[:, keep]
    return w, np.asarray(x.T @ u) / np.sqrt(w)[None, :]


def _inverse_parts(w: np.ndarray, q: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """(1/(w+λ), diag(P)) for P = (G + λI)⁻¹ = Q diag(1/(w+λ)) Qᵀ + (I − QQᵀ)/λ."""
    inv = 1.0 / (w + lam)
    q2 = q * q
    return inv, q2 @ inv + np.clip(1.0 - q2.sum(axis=1), 0.0, None) / lam


def ease_weights(x: sp.csr_matrix, lam: float) -> np.ndarray:
    """B = I − P / diag(P) with P = (XᵀX + λI)⁻¹, so diag(B) = 0 (float64 math, float32 out)."""
    n_users, n_items = x.shape
    if n_users >= n_items:
        g = (x.T @ x).toarray()
        g[np.diag_indices_from(g)] += lam
        eye = np.eye(n_items)
        p = sla.cho_solve(sla.cho_factor(g, overwrite_a=True), eye, overwrite_b=True)
    else:  # low rank: Woodbury through the users' side
        q, coef, _ = low_rank_parts(x, lam)
        p = (q * coef) @ q.T
        p[np.diag_indices_from(p)] += 1.0 / lam
    b = -p / np.diag(p)[None, :]
    b[np.diag_indices_from(b)] = 0.0
    return b.astype(np.float32)


def low_rank_parts(x: sp.csr_matrix, lam: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Q, c, diag P) with P = Q diag(c) Qᵀ + I/λ, from the users' side: items x users
    numbers instead of the dense items x items B (fewer users than items)."""
    w, q = gram_eigen(x)
    coef = 1.0 / (w + lam) - 1.0 / lam
    return q, coef, (q * q) @ coef + 1.0 / lam


def low_rank_scores(h: sp.csr_matrix, parts: tuple[np.ndarray, np.ndarray, np.ndarray],
                    lam: float) -> np.ndarray:
    """h B without forming B = I − P / diag(P): (hB)ᵢ = −(hP)ᵢ / Pᵢᵢ + hᵢ (diag(B) = 0),
    with hP = (hQ) diag(c) Qᵀ + h/λ; float64 math, float32 out."""
    q, coef, diag = parts
    dense = h.toarray().astype(np.float64)
    hp = (np.asarray(h @ q) * coef) @ q.T + dense / lam
    return (dense - hp / diag).astype(np.float32)


def select_lambda(
    x: sp.csr_matrix, lambdas: Sequence[float], rng: np.random.Generator
) -> tuple[float, dict[float, float]]:
    """Pick λ by NDCG@10 on 10% of the users (80/20 fold-in), fitted on the other 90%.

    Where 10% is fewer than `_MIN_VAL_USERS` users, further disjoint 10% folds are
    validated too (at most `_MAX_VAL_FOLDS`) and NDCG is averaged over all their users.
    Each fold's Gram matrix is eigendecomposed once (`gram_eigen`), so each λ costs only
    F P = (FQ) diag(1/(w+λ)) Qᵀ + (F − FQQᵀ)/λ and diag(P), not a fresh inversion.
    Returns (best λ, NDCG per λ); ties go to the smaller λ. With no usable validation
    user, the middle of the grid is returned.
    """
    grid = sorted(float(v) for v in lambdas)
    fallback = grid[len(grid) // 2]
    n_users = x.shape[0]
    if n_users < 2 or x.shape[1] == 0:
        return fallback, {}
    n_val = max(1, round(_VAL_USER_FRAC * n_users))
    folds = max(1, min(_MAX_VAL_FOLDS, -(-_MIN_VAL_USERS // n_val), (n_users - 1) // n_val))
    perm = rng.permutation(n_users)
    sums = dict.fromkeys(grid, 0.0)
    n_scored = 0
    for f in range(folds):
        val = np.sort(perm[f * n_val:(f + 1) * n_val])
        rest = np.sort(np.concatenate([perm[:f * n_val], perm[(f + 1) * n_val:]]))
        foldin, test = fold_in_split(x[val], _VAL_TEST_FRAC, rng)
        keep = np.diff(test.indptr) > 0
        if not keep.any():
            continue
        for lam, total in _fold_ndcg_sums(x[rest], foldin[keep], test[keep], grid).items():
            sums[lam] += total
        n_scored += int(keep.sum())
    if n_scored == 0:
        return fallback, {}
    results = {lam: sums[lam] / n_scored for lam in grid}
    best = max(grid, key=lambda lam: (results[lam], -lam))
    return best, results


def _fold_ndcg_sums(train: sp.csr_matrix, foldin: sp.csr_matrix, test: sp.csr_matrix,
                    grid: list[float]) -> dict[float, float]:
    """Per λ: the sum over validation users of NDCG@10, EASE fitted on `train`."""
    w, q = gram_eigen(train)
    f_dense = foldin.toarray()
    fq = f_dense @ q
    residual = f_dense - fq @ q.T  # part of F outside G's row space (0 when G is full rank)
    sums: dict[float, float] = {}
    for lam in grid:
        inv, d = _inverse_parts(w, q, lam)
        fp = (fq * inv) @ q.T + residual / lam
        scores = f_dense - fp / d[None, :]
        top = top_k(scores, foldin, _VAL_K)
        sums[lam] = float(accuracy_per_user(top, test, [_VAL_K])[f"ndcg@{_VAL_K}"].sum())
    return sums


class EASE:
    """EASE^R with λ tuned on the training data itself.

    Catalog cap: only the `max_items` most popular training items (default 10,000) enter
    the dense item x item model, because its cost is O(n_items³) time and O(n_items²)
    memory. Other items, and items no training user holds, get `UNMODELLED_SCORE` so they
    rank after every modelled item. `dense=False` with fewer training users than items
    keeps the users-side factors instead of B and scores through them: the same scores up
    to rounding, without the items x items product (fit's held-out check on wide catalogs;
    evaluate keeps B, so its figures stay as recorded).
    """

    name = "ease"

    def __init__(
        self, lambdas: Sequence[float] | float = LAMBDA_GRID, max_items: int = 10_000,
        dense: bool = True
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
        self.dense = dense
        self.weights: np.ndarray | None = None
        self.low_rank: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
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
        if not self.dense and xk.shape[0] < xk.shape[1]:
            self.weights, self.low_rank = None, low_rank_parts(xk, self.lam)
        else:
            self.weights, self.low_rank = ease_weights(xk, self.lam), None
        return self

    def params(self) -> dict[str, object]:
        """Chosen λ and its validation evidence, for the report."""
        return {
            "lambda": self.lam,
            "validation_ndcg@10": {str(k): v for k, v in self.validation.items()},
            "items_modelled": 0 if self.items is None else len(self.items),
        }

    def score(self, history: sp.csr_matrix) -> np.ndarray:
        if (self.weights is None and self.low_rank is None) or self.items is None:
            raise RuntimeError("fit() before score()")
        if history.shape[1] != self.n_items:
            raise ValueError(f"history has {history.shape[1]} items, model {self.n_items}")
        h = sp.csr_matrix(history, dtype=np.float32)[:, self.items]
        out = np.full((history.shape[0], self.n_items), UNMODELLED_SCORE, dtype=np.float32)
        if self.low_rank is not None:
            assert self.lam is not None
            out[:, self.items] = low_rank_scores(h, self.low_rank, self.lam)
        else:
            out[:, self.items] = np.asarray(h @ self.weights, dtype=np.float32)
        return out
