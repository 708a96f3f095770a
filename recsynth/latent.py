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
    """Item factors, a Gaussian mixture over augmented user codes, the copula marginals.

    `mean`/`chol` describe all codes together (the critic's common whitened space);
    `weights`/`means`/`chols` the mixture components the sampler draws from, so separate
    communities of users stay separate instead of being bridged by one wide Gaussian.
    """

    item_factors: np.ndarray  # (n_channels * n_items, rank)
    item_bias: np.ndarray  # (n_channels * n_items,) log-propensity offsets, see `calibrate`
    mean: np.ndarray  # (dim,)
    chol: np.ndarray  # (dim, dim), lower-triangular Cholesky factor of the covariance
    weights: np.ndarray  # (K,) component probabilities
    means: np.ndarray  # (K, dim)
    chols: np.ndarray  # (K, dim, dim)
    activity: Marginal
    liked_share: Marginal | None
    n_channels: int
    n_head: int | None = None  # with tail slots (itemspace.py): items before the slots
    # the generated activity / liked-share coordinates' own quantiles (calibrate_scores);
    # None: read the coordinate as a standard normal score
    activity_scores: Marginal | None = None
    liked_scores: Marginal | None = None
    # decoder sharpness grows with activity as (items / median items) ** activity_power;
    # 0: every user decoded at one temperature (models from before the change, DP models)
    activity_power: float = 0.0
    # the other channel is decoded at this many times the temperature (see OTHER_SOFTNESS);
    # 1: both channels at one temperature (models from before the change)
    other_softness: float = 1.0

    def log_activity(self, scores: np.ndarray) -> np.ndarray:
        """Log distinct items of users whose activity coordinate is `scores`."""
        return _at_rank(self.activity, self.activity_scores, scores)

    def logit_scale(self, items: np.ndarray) -> np.ndarray:
        """Per-user factor on the decoder logits (see `ACTIVITY_POWER`)."""
        if self.activity_power == 0.0:
            return np.ones(len(items))
        median = float(self.activity.quantile(0.5))  # of log items
        return np.exp(self.activity_power * (np.log(np.maximum(items, 1)) - median))

    def liked_of(self, scores: np.ndarray) -> np.ndarray:
        """Liked share of users whose liked-share coordinate is `scores` (needs liked_share)."""
        return _at_rank(self.liked_share, self.liked_scores, scores)

    @property
    def rank(self) -> int:
        return self.item_factors.shape[1]

    @property
    def dim(self) -> int:
        return len(self.mean)

    @property
    def n_components(self) -> int:
        return len(self.weights)


def _at_rank(real: Marginal, generated: Marginal | None, scores: np.ndarray) -> np.ndarray:
    """The real marginal at the coordinate's rank: Φ(s) for a standard normal coordinate,
    else the generated coordinate's own CDF, so the real marginal comes back whatever the
    generator did to the coordinate's distribution."""
    if generated is None:
        return real.from_normal(scores)
    return real.quantile(generated.cdf(scores))


# A code reconstructs the user's unit-normalised row, whose entries shrink as 1/sqrt(items):
# at one temperature light users were decoded too sharply (close to the fitting users they
# came from) and heavy users too flatly. Scaling the logits by sqrt(items / median items)
# decodes every user in the units of its binary row. MovieLens-100K, rank 50, 3 seeds:
# TSTR 0.874 at membership AUC 0.568 (T 0.008), against 0.867 at 0.599 before (T 0.01); on
# online-retail the closed form pays ≈ 0.015 AUC at equal utility and the GAN defaults
# gained 0.09 TSTR ("Activity-scaled decoding" in benchmarks/RESULTS.md).
ACTIVITY_POWER = 0.5

CODE_CHUNK = 65_536  # users per chunk of users x dim work on codes (no full float64 copy)


def real_codes(enc: EncodedUsers, item_factors: np.ndarray, rng: np.random.Generator,
               chunk: int = CODE_CHUNK) -> np.ndarray:
    """Each real user as (SVD code, activity normal score[, liked-share normal score]),
    float32; the code is the user's unit-normalised row of `enc.stacked()` projected on the
    factors, a chunk of users at a time."""
    stacked = enc.stacked()
    r = item_factors.shape[1]
    extra = [normal_scores(np.log(enc.activity.astype(np.float64)), rng)]
    if enc.liked_share is not None:
        extra.append(normal_scores(enc.liked_share, rng))
    codes = np.empty((enc.n_users, r + len(extra)), dtype=np.float32)
    for lo in range(0, enc.n_users, chunk):
        codes[lo:lo + chunk, :r] = row_normalised(stacked[lo:lo + chunk].astype(np.float64)) \
            @ item_factors
    for j, scores in enumerate(extra):
        codes[:, r + j] = scores
    return codes


BASIS_USERS = 100_000
"""Users the SVD factors and the mixture are fitted on (all users below it)."""

CLUSTERED_R2 = 0.3
"""A 2-means split of the taste codes explaining this share of their variance means
separate communities (0.49 on two disjoint communities; 0.10 on MovieLens-100K, 0.02 on
online-retail)."""


def explained_variance(x: np.ndarray, labels: np.ndarray) -> float:
    total = ((x - x.mean(axis=0)) ** 2).sum()
    within = sum(((x[labels == j] - x[labels == j].mean(axis=0)) ** 2).sum()
                 for j in np.unique(labels))
    return float(1.0 - within / total) if total > 0 else 0.0


def auto_components(taste: np.ndarray, rng: np.random.Generator) -> int:
    """One component, or one per 100 users (2 to 10) when users form separate communities.

    Measured at 4× sample size (benchmarks/RESULTS.md, 2026-12-06): one component instead
    of one per 300 users had equal or better TSTR at equal or better membership AUC on
    online-retail (10 → 1: 0.940 / 0.570 → 0.940 / 0.554; 0.938 / 0.564 → 0.951 / 0.563)
    and MovieLens-100K (2 → 1: 0.890 / 0.584 → 0.895 / 0.570); without communities, extra
    components fit clusters of the fitting users themselves."""
    n = len(taste)
    if n >= 200 and explained_variance(taste, kmeans(taste, 2, rng)) >= CLUSTERED_R2:
        return int(np.clip(n // 100, 2, 10))
    return 1


def kmeans(x: np.ndarray, k: int, rng: np.random.Generator, iters: int = 30) -> np.ndarray:
    """Labels from k-means with k-means++ seeding (deterministic for a given rng)."""
    n = len(x)
    k = min(k, n)
    centres = [x[rng.integers(n)]]
    d2 = ((x - centres[0]) ** 2).sum(axis=1)
    for _ in range(1, k):
        probs = d2 / d2.sum() if d2.sum() > 0 else np.full(n, 1.0 / n)
        centres.append(x[rng.choice(n, p=probs)])
        d2 = np.minimum(d2, ((x - centres[-1]) ** 2).sum(axis=1))
    c = np.array(centres)
    labels = np.zeros(n, dtype=np.int64)
    for _ in range(iters):
        dist = (x ** 2).sum(1)[:, None] - 2 * x @ c.T + (c ** 2).sum(1)[None, :]
        new = dist.argmin(axis=1)
        if _ and np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            members = x[labels == j]
            if len(members):
                c[j] = members.mean(axis=0)
    return labels


def fit_closed_form(enc: EncodedUsers, rank: int, rng: np.random.Generator,
                    n_components: int | None = None) -> tuple[ClosedForm, np.ndarray]:
    """The Gaussian-mixture sampler and the real users' augmented codes (the GAN's data).

    Item factors and mixture come from at most BASIS_USERS users drawn at random (their
    SVD and k-means hold users x rank doubles several times over); every user is then
    projected on the factors, so the GAN still trains on all of them.
    """
    basis = np.arange(enc.n_users)
    if enc.n_users > BASIS_USERS:
        basis = np.sort(rng.choice(enc.n_users, BASIS_USERS, replace=False))
    m = row_normalised(enc.subset(basis).stacked().astype(np.float64))
    _, v = randomized_svd(m, rank, rng)
    del m
    codes = real_codes(enc, v, rng)
    fitted = codes[basis].astype(np.float64)
    dim = codes.shape[1]
    mean = fitted.mean(axis=0)
    cov = np.cov(fitted, rowvar=False) + 1e-6 * np.eye(dim)
    chol = np.linalg.cholesky(cov)
    taste = fitted[:, :v.shape[1]]
    k = auto_components(taste, rng) if n_components is None else n_components
    # components from the raw taste codes: their variance ranks directions by how much
    # they separate users (whitening would make noise directions count as much), and the
    # copula coordinates would split users by how much they do, not what they like
    labels = kmeans(taste, k, rng) if k > 1 else np.zeros(len(fitted), dtype=np.int64)
    weights, means, chols = [], [], []
    for j in np.unique(labels):
        members = fitted[labels == j]
        n_j = len(members)
        local = np.cov(members, rowvar=False) if n_j > 1 else np.zeros((dim, dim))
        # shrink towards the global covariance: small components borrow its shape
        shrunk = (n_j * local + dim * cov) / (n_j + dim) + 1e-6 * np.eye(dim)
        weights.append(n_j / len(fitted))
        means.append(members.mean(axis=0))
        chols.append(np.linalg.cholesky(shrunk))
    share = None if enc.liked_share is None else Marginal.fit(enc.liked_share)
    form = ClosedForm(v, np.zeros(v.shape[0]), mean, chol, np.array(weights), np.array(means),
                      np.array(chols), Marginal.fit(np.log(enc.activity.astype(np.float64))),
                      share, len(enc.channels), activity_power=ACTIVITY_POWER)
    return form, codes
