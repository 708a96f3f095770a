"""Gaussian mechanisms on per-user statistics clipped to L2 norm ≤ 1 (sensitivity 1).

Each function adds N(0, σ²) to a sum over users whose per-user term has norm ≤ 1, so one
user's presence moves the sum by at most 1: a Gaussian mechanism with noise multiplier σ
(its cost is in `budget.py`). Everything downstream of these outputs is post-processing.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.special import ndtri

from recsynth.encode import N_KNOTS, Marginal

# public bins (no data read to place them): activity 1 … 100,000 items, liked share 0 … 1
# (few bins: every bin gets its own noise, so empty ones add phantom users)
ACTIVITY_EDGES = np.concatenate([[0.5], np.unique(np.round(np.logspace(0, 5, 41))) + 0.5])
SHARE_EDGES = np.linspace(0.0, 1.0, 21)


def noisy_sum(per_user: sp.csr_matrix | np.ndarray, sigma: float,
              rng: np.random.Generator) -> np.ndarray:
    """Column sums of a users x d matrix whose rows have L2 norm ≤ 1, plus N(0, σ²)."""
    total = np.asarray(per_user.sum(axis=0), dtype=np.float64).ravel()
    return total + rng.normal(0.0, sigma, size=total.shape)


def capped_rows(m: sp.csr_matrix, cap: int, rng: np.random.Generator) -> sp.csr_matrix:
    """Keep at most `cap` non-zeros per row (a random subset), so a binary row has L2
    norm ≤ √cap; scaled by 1/√cap the row has norm ≤ 1."""
    m = m.tocsr()
    keep = np.ones(m.nnz, dtype=bool)
    for u in np.flatnonzero(np.diff(m.indptr) > cap):
        lo, hi = m.indptr[u], m.indptr[u + 1]
        drop = rng.choice(hi - lo, size=hi - lo - cap, replace=False)
        keep[lo + drop] = False
    out = m.copy()
    out.data = np.where(keep, out.data, 0).astype(np.float64)
    out.eliminate_zeros()
    return out


def release_threshold(sd: float, weight: float, delta: float, per_user: int) -> float:
    """Noisy-count threshold so that a key only one user holds (count ≤ `weight`) is
    released with probability ≤ delta / per_user, i.e. ≤ delta over the ≤ `per_user`
    keys one user can hold."""
    return weight + sd * float(ndtri(1.0 - delta / per_user))


def histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """One count per user in its bin (values outside the public range go to the end bins)."""
    idx = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
    return np.bincount(idx, minlength=len(edges) - 1).astype(np.float64)


def denoised(noisy: np.ndarray, sd: float) -> np.ndarray:
    """Bins below twice the noise sd set to 0 (else empty bins' noise piles up into
    phantom mass); if none is left, the largest bin alone."""
    out = np.where(noisy >= 2.0 * sd, noisy, 0.0)
    if not out.any():
        out[int(np.argmax(noisy))] = 1.0
    return out


def marginal_from_histogram(counts: np.ndarray, edges: np.ndarray) -> Marginal:
    """Quantile knots of a (noisy, clamped) histogram, linear within its non-empty bins."""
    mass = np.clip(counts, 0.0, None)
    if mass.sum() <= 0:
        mass = np.ones_like(mass)
    cdf = np.concatenate([[0.0], np.cumsum(mass)]) / mass.sum()
    probs = np.clip(np.linspace(0.0, 1.0, N_KNOTS), 1e-12, 1.0)
    i = np.clip(np.searchsorted(cdf, probs, side="left") - 1, 0, len(mass) - 1)
    frac = np.clip((probs - cdf[i]) / np.maximum(cdf[i + 1] - cdf[i], 1e-300), 0.0, 1.0)
    return Marginal(edges[i] + frac * (edges[i + 1] - edges[i]))


def scores_from_marginal(values: np.ndarray, marginal: Marginal) -> np.ndarray:
    """Normal scores of `values` under a released marginal: each user's score depends on
    its own value and public/released quantities only (no ranks among real users)."""
    probs = np.linspace(0.0, 1.0, len(marginal.knots))
    knots = marginal.knots + np.arange(len(probs)) * 1e-12  # strictly increasing
    p = np.interp(values, knots, probs)
    return ndtri(np.clip(p, 1e-3, 1 - 1e-3))


def noisy_gram(x: sp.csr_matrix, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """XᵀX + symmetric Gaussian noise (Analyze Gauss): rows of X have norm ≤ 1, so one
    user's term x xᵀ has Frobenius norm ≤ 1 and so has its upper triangle."""
    gram = np.asarray((x.T @ x).todense(), dtype=np.float64)
    d = gram.shape[0]
    noise = np.triu(rng.normal(0.0, sigma, size=(d, d)))
    return gram + noise + np.triu(noise, 1).T


def top_factors(gram: np.ndarray, sigma: float, max_rank: int) -> tuple[np.ndarray, np.ndarray]:
    """(eigenvalues, eigenvectors) of the noisy Gram above the noise's spectral edge
    (≈ 2σ√d for a symmetric Gaussian matrix), at most `max_rank`, at least 1; signs fixed
    so each factor's largest entry is positive."""
    vals, vecs = np.linalg.eigh(gram)
    order = np.argsort(vals)[::-1]
    vals, vecs = vals[order], vecs[:, order]
    edge = 2.0 * sigma * np.sqrt(gram.shape[0])
    r = int(np.clip((vals > edge).sum(), 1, max_rank))
    v = vecs[:, :r]
    signs = np.sign(v[np.abs(v).argmax(axis=0), np.arange(r)])
    return vals[:r], v * np.where(signs == 0, 1.0, signs)
