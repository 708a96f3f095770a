"""The closed-form starting point: truncated SVD user codes and a Gaussian over them.

Users are rows of [liked | other] (unit-normalised, so heavy users do not dominate the
factors); a user's code is its projection on the top item factors. The Gaussian over
(code, activity score, liked-share score) is the strong simple sampler of GUIDE §1; the GAN
in `model.py` starts exactly there and can only add a learned residual.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recsynth.encode import EncodedUsers, Marginal, normal_scores


def randomized_svd(m: sp.csr_matrix, rank: int, rng: np.random.Generator, n_iter: int = 5,
                   oversample: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(singular values, right singular vectors as columns) of the top `rank` (Halko et al.).

    Seeded by `rng`, so the factors (up to nothing) are reproducible; costs a few sparse
    products instead of a dense SVD of the whole users x items matrix.
    """
    n_users, n_cols = m.shape
    k = min(rank + oversample, n_users, n_cols)
    omega = rng.standard_normal((n_cols, k))
    y = m @ omega
    q, _ = np.linalg.qr(y)
    for _ in range(n_iter):
        q, _ = np.linalg.qr(m.T @ q)
        q, _ = np.linalg.qr(m @ q)
    b = (m.T @ q).T  # k x n_cols
    _, s, vt = np.linalg.svd(b, full_matrices=False)
    r = min(rank, len(s))
    v = vt[:r].T
    # fix signs so the largest-magnitude entry of each factor is positive: deterministic output
    signs = np.sign(v[np.abs(v).argmax(axis=0), np.arange(r)])
    return s[:r], v * np.where(signs == 0, 1.0, signs)


def row_normalised(m: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    return sp.diags(1.0 / np.maximum(norms, 1e-12)) @ m


@dataclass(frozen=True)
class ClosedForm:
    """Item factors, the Gaussian over augmented user codes, and the copula marginals."""

    item_factors: np.ndarray  # (n_channels * n_items, rank)
    item_bias: np.ndarray  # (n_channels * n_items,) log-propensity offsets, see `calibrate`
    mean: np.ndarray  # (dim,)
    chol: np.ndarray  # (dim, dim), lower-triangular Cholesky factor of the covariance
    activity: Marginal
    liked_share: Marginal | None
    n_channels: int

    @property
    def rank(self) -> int:
        return self.item_factors.shape[1]

    @property
    def dim(self) -> int:
        return len(self.mean)


def real_codes(enc: EncodedUsers, item_factors: np.ndarray, rng: np.random.Generator
               ) -> np.ndarray:
    """Each real user as (SVD code, activity normal score[, liked-share normal score])."""
    z = np.asarray(row_normalised(enc.stacked().astype(np.float64)) @ item_factors)
    extra = [normal_scores(np.log(enc.activity.astype(np.float64)), rng)]
    if enc.liked_share is not None:
        extra.append(normal_scores(enc.liked_share, rng))
    return np.column_stack([z, *extra])


def fit_closed_form(enc: EncodedUsers, rank: int, rng: np.random.Generator
                    ) -> tuple[ClosedForm, np.ndarray]:
    """The Gaussian sampler and the real users' augmented codes (the GAN's training data)."""
    m = row_normalised(enc.stacked().astype(np.float64))
    _, v = randomized_svd(m, rank, rng)
    codes = real_codes(enc, v, rng)
    mean = codes.mean(axis=0)
    cov = np.cov(codes, rowvar=False) + 1e-6 * np.eye(codes.shape[1])
    chol = np.linalg.cholesky(cov)
    share = None if enc.liked_share is None else Marginal.fit(enc.liked_share)
    form = ClosedForm(v, np.zeros(v.shape[0]), mean, chol,
                      Marginal.fit(np.log(enc.activity.astype(np.float64))), share,
                      len(enc.channels))
    return form, codes
