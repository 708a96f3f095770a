"""Top-k lists and the accuracy / beyond-accuracy metrics computed from them.

Everything is vectorised over users: a list is one row of an int matrix of item indices,
where -1 marks an empty slot (a user with fewer than k rankable items).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

HEAD_SHARE = 0.2
"""Share of the catalog (most popular items first) that counts as the head for long_tail@k."""

ACCURACY_METRICS = ("precision", "recall", "ndcg", "hit_rate", "mrr", "map")
LIST_METRICS = ("coverage", "gini", "novelty", "diversity", "long_tail")


def top_k(scores: np.ndarray, exclude: sp.csr_matrix, k: int) -> np.ndarray:
    """Best `k` items per row, best first, never an item of `exclude` (the fold-in history).

    Ties go to the lower item index, so lists do not depend on argpartition's internals.
    NaN and -inf scores rank below every finite score but above excluded items, +inf
    above every finite score; when a row has fewer than `k` rankable items the remaining
    slots hold -1.
    """
    n_users, n_items = scores.shape
    if exclude.shape != scores.shape:
        raise ValueError(f"exclude shape {exclude.shape} != scores shape {scores.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    s = np.array(scores, dtype=np.float64)  # copy: never touch the caller's array
    s[np.isposinf(s)] = np.finfo(np.float64).max
    s[~np.isfinite(s)] = np.finfo(np.float64).min
    ex = sp.csr_matrix(exclude)
    ex_rows = np.repeat(np.arange(n_users), np.diff(ex.indptr))
    s[ex_rows, ex.indices] = -np.inf

    kk = min(k, n_items)
    if kk == 0 or n_users == 0:
        return np.full((n_users, k), -1, dtype=np.int64)
    # kth best value per row; take everything above it plus the lowest-index ties on it.
    thresh = -np.partition(-s, kk - 1, axis=1)[:, kk - 1]
    above = s > thresh[:, None]
    need = kk - above.sum(axis=1)
    on = s == thresh[:, None]
    chosen = above | (on & (np.cumsum(on, axis=1) <= need[:, None]))
    items = np.nonzero(chosen)[1].reshape(n_users, kk)  # ascending index within each row
    vals = np.take_along_axis(s, items, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    items = np.take_along_axis(items, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    items[np.isneginf(vals)] = -1
    if kk < k:
        items = np.hstack([items, np.full((n_users, k - kk), -1, dtype=items.dtype)])
    return items.astype(np.int64, copy=False)


def _relevance(top: np.ndarray, test: sp.csr_matrix) -> np.ndarray:
    """rel[u, r] = 1.0 when the r-th recommended item of u is in u's test set."""
    t = sp.csr_matrix(test)
    t.sum_duplicates()  # also sorts indices, so the row-major keys below are sorted
    n_items = t.shape[1]
    test_keys = np.repeat(np.arange(t.shape[0], dtype=np.int64), np.diff(t.indptr)) * n_items
    test_keys += t.indices
    rec_keys = np.arange(top.shape[0], dtype=np.int64)[:, None] * n_items + top
    pos = np.searchsorted(test_keys, rec_keys)
    pos = np.minimum(pos, max(len(test_keys) - 1, 0))
    found = (top >= 0) & (len(test_keys) > 0)
    if len(test_keys):
        found &= test_keys[pos] == rec_keys
    return found.astype(np.float64)


def accuracy_per_user(
    top: np.ndarray, test: sp.csr_matrix, ks: Sequence[int]
) -> dict[str, np.ndarray]:
    """Per-user `precision/recall/ndcg/hit_rate/mrr/map@k` for each k (callers drop empty tests).

    recall, NDCG and MAP normalise by min(k, |T|), so a perfect list scores 1 even when the
    user has more test items than slots.
    """
    if top.shape[1] < max(ks):
        raise ValueError(f"top has {top.shape[1]} columns, need max(ks) = {max(ks)}")
    rel = _relevance(top[:, : max(ks)], test)
    n_test = np.maximum(np.diff(sp.csr_matrix(test).indptr), 1).astype(np.float64)
    ranks = np.arange(1, rel.shape[1] + 1, dtype=np.float64)
    discount = 1.0 / np.log2(ranks + 1.0)
    ideal = np.concatenate([[0.0], np.cumsum(discount)])  # ideal[m] = IDCG with m relevant
    cum_hits = np.cumsum(rel, axis=1)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        r = rel[:, :k]
        hits = cum_hits[:, k - 1]
        denom = np.minimum(k, n_test)
        first = np.argmax(r, axis=1)
        out[f"precision@{k}"] = hits / k
        out[f"recall@{k}"] = hits / denom
        out[f"ndcg@{k}"] = (r @ discount[:k]) / ideal[denom.astype(np.int64)]
        out[f"hit_rate@{k}"] = (hits > 0).astype(np.float64)
        out[f"mrr@{k}"] = np.where(hits > 0, 1.0 / (first + 1.0), 0.0)
        out[f"map@{k}"] = ((cum_hits[:, :k] / ranks[:k]) * r).sum(axis=1) / denom
    return out


def _item_popularity(reference: sp.csr_matrix) -> np.ndarray:
    """Number of reference users holding each item (binary matrix assumed)."""
    return np.asarray((sp.csr_matrix(reference) != 0).sum(axis=0)).ravel().astype(np.float64)


def head_items(popularity: np.ndarray, share: float = HEAD_SHARE) -> np.ndarray:
    """Boolean mask of the ceil(share * n_items) most popular items (ties: lower index)."""
    n = len(popularity)
    n_head = int(np.ceil(share * n))
    order = np.lexsort((np.arange(n), -popularity))
    mask = np.zeros(n, dtype=bool)
    mask[order[:n_head]] = True
    return mask


def _gini(counts: np.ndarray) -> float:
    """Gini of a count vector over the whole catalog: 0 = every item equally often."""
    total = counts.sum()
    n = len(counts)
    if total <= 0 or n == 0:
        return 0.0
    c = np.sort(counts)
    i = np.arange(1, n + 1, dtype=np.float64)
    return float(((2 * i - n - 1) * c).sum() / (n * total))


def _normalised_item_vectors(reference: sp.csr_matrix) -> sp.csr_matrix:
    """Items as L2-normalised rows (item x reference user); all-zero items stay zero."""
    x = sp.csr_matrix(reference, dtype=np.float64).T.tocsr()
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.diags(inv) @ x


def _list_matrix(top: np.ndarray, n_items: int) -> sp.csr_matrix:
    """Binary users x items matrix of the (valid) recommended items."""
    rows = np.repeat(np.arange(top.shape[0]), top.shape[1]).reshape(top.shape)
    valid = top >= 0
    data = np.ones(int(valid.sum()), dtype=np.float64)
    return sp.csr_matrix((data, (rows[valid], top[valid])), shape=(top.shape[0], n_items))


DENSE_COSINE_MAX_ITEMS = 8000
"""Catalogs up to this size get a dense item x item cosine matrix (≤ 256 MB float32)."""
_CHUNK_USERS = 1024


@dataclass(frozen=True)
class ReferenceStats:
    """What list metrics need from the reference (real train) data, computed once.

    Every recommender and side of an evaluation is judged against the same reference, so
    this is built once per evaluation instead of once per list.
    """

    n_items: int
    info: np.ndarray  # −log2 p_i, p_i = share of reference users holding i (≥ 1/n_users)
    tail: np.ndarray  # True for items outside the popularity head
    has_vec: np.ndarray  # 1.0 where the item has any reference user (self-cosine 1)
    vecs: sp.csr_matrix  # L2-normalised item rows, for catalogs too big for `cosine`
    cosine: np.ndarray | None  # dense item x item cosine, float32


def reference_stats(reference: sp.csr_matrix) -> ReferenceStats:
    n_ref, n_items = reference.shape
    pop = _item_popularity(reference)
    p = np.maximum(pop / max(n_ref, 1), 1.0 / max(n_ref, 1))
    vecs = _normalised_item_vectors(reference)
    cosine = None
    if n_items <= DENSE_COSINE_MAX_ITEMS:
        cosine = np.asarray((vecs @ vecs.T).toarray(), dtype=np.float32)
    return ReferenceStats(n_items, -np.log2(p), ~head_items(pop),
                          (np.diff(vecs.indptr) > 0).astype(np.float64), vecs, cosine)


def _as_stats(reference: sp.csr_matrix | ReferenceStats) -> ReferenceStats:
    return reference if isinstance(reference, ReferenceStats) else reference_stats(reference)


def _pair_cosine_sums(top: np.ndarray, ks: Sequence[int], stats: ReferenceStats
                      ) -> dict[int, np.ndarray]:
    """Σ over item pairs in each user's top-k list of cos(i, j), for every k.

    Dense path: gather the list's k x k block of the cosine matrix. Sparse path:
    ‖Σv‖² = Σ‖v‖² + 2 Σ_pairs cos, one sparse product per k.
    """
    out: dict[int, np.ndarray] = {}
    valid = top >= 0
    self_sim = {k: np.where(valid[:, :k], stats.has_vec[np.where(valid, top, 0)[:, :k]], 0.0)
                .sum(axis=1) for k in ks}
    if stats.cosine is not None:
        sums = {k: np.zeros(top.shape[0]) for k in ks}
        for start in range(0, top.shape[0], _CHUNK_USERS):
            t = top[start:start + _CHUNK_USERS]
            v = t >= 0
            safe = np.where(v, t, 0)
            block = stats.cosine[safe[:, :, None], safe[:, None, :]]
            block *= (v[:, :, None] & v[:, None, :])
            for k in ks:
                sums[k][start:start + len(t)] = block[:, :k, :k].sum(axis=(1, 2), dtype=np.float64)
        return {k: (sums[k] - self_sim[k]) / 2.0 for k in ks}
    for k in ks:
        lists = _list_matrix(top[:, :k], stats.n_items)
        summed = lists @ stats.vecs
        sq = np.asarray(summed.multiply(summed).sum(axis=1)).ravel()
        out[k] = (sq - self_sim[k]) / 2.0
    return out


def list_metrics_per_user(
    top: np.ndarray, ks: Sequence[int], reference: sp.csr_matrix | ReferenceStats
) -> dict[str, np.ndarray]:
    """Per-user `novelty@k`, `diversity@k`, `long_tail@k` (NaN where a list is too short).

    `reference` is the binary users x items matrix that defines popularity and item vectors
    (normally the real training data, or its precomputed `reference_stats`), so synthetic
    data is judged on the real item space. novelty = mean −log2 p_i with p_i = share of
    reference users holding i (≥ 1/n_users); diversity = mean pairwise (1 − cosine)
    between item columns of `reference`; long_tail = share of list items outside the head
    (the top `HEAD_SHARE` of the catalog by popularity).
    """
    stats = _as_stats(reference)
    pair_sums = _pair_cosine_sums(top, ks, stats)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        t = top[:, :k]
        valid = t >= 0
        n = valid.sum(axis=1).astype(np.float64)
        safe = np.where(valid, t, 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"novelty@{k}"] = np.where(valid, stats.info[safe], 0.0).sum(axis=1) / n
            out[f"long_tail@{k}"] = np.where(valid, stats.tail[safe], False).sum(axis=1) / n
            pairs = n * (n - 1) / 2.0
            out[f"diversity@{k}"] = np.where(n >= 2, 1.0 - pair_sums[k] / pairs, np.nan)
    return out


def _nanmean(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(x.mean()) if len(x) else float("nan")


def list_metrics(top: np.ndarray, ks: Sequence[int],
                 reference: sp.csr_matrix | ReferenceStats) -> dict[str, float]:
    """Catalog-level `coverage/gini/novelty/diversity/long_tail@k` of a set of top-k lists.

    coverage = share of catalog items recommended to anyone; gini = Gini of how often each
    catalog item is recommended (0 = equal exposure). The per-user metrics are averaged over
    users with a valid list (see `list_metrics_per_user`).
    """
    stats = _as_stats(reference)
    n_items = stats.n_items
    per_user = list_metrics_per_user(top, ks, stats)
    out: dict[str, float] = {}
    for k in ks:
        t = top[:, :k]
        counts = np.bincount(t[t >= 0], minlength=n_items).astype(np.float64)
        out[f"coverage@{k}"] = float((counts > 0).sum() / n_items) if n_items else 0.0
        out[f"gini@{k}"] = _gini(counts)
        for name in ("novelty", "diversity", "long_tail"):
            out[f"{name}@{k}"] = _nanmean(per_user[f"{name}@{k}"])
    return out
