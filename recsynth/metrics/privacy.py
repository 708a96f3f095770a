"""User-level privacy of synthetic item sets (GUIDE §3): how close synthetic users sit to
the real users the generator was fitted on, compared with real users it never saw.

Distances are Jaccard distances between item sets, 1 - |a∩b| / |a∪b|; two empty sets are
at distance 0 (identical). Every figure is a plain python float/int/None so the result
serialises to JSON as is.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

DEFAULT_CHUNK_ROWS = 2048
# Cap on the cells of one dense query-chunk x references block (float32: 64 MiB each).
_MAX_CHUNK_CELLS = 16 * 1024 * 1024
_MIN_ITEMS_FOR_COPY_CHECK = 5
# Items whose query-density x reference-density exceeds this go through a dense product:
# measured break-even of BLAS against scipy's sparse product (10k x 10k users, 2 cores).
_DENSE_JOINT_DENSITY = 1e-3


@dataclass(frozen=True)
class Nearest:
    """Per query row: Jaccard distance to the closest and second-closest reference row.

    `second` is +inf where there are fewer than two references (and `first` too where
    there are none).
    """

    first: np.ndarray
    second: np.ndarray

    @property
    def exact(self) -> np.ndarray:
        """True where some reference row holds exactly the same item set."""
        return self.first == 0.0


def binarize(matrix: sp.spmatrix) -> sp.csr_matrix:
    """A float32 0/1 csr copy, so intersections are counts whatever the input held."""
    out = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    out.eliminate_zeros()
    out.data[:] = 1.0
    out.sum_duplicates()
    out.data[:] = 1.0
    return out


def nearest_jaccard(
    queries: sp.spmatrix,
    references: sp.spmatrix,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    max_chunk_cells: int = _MAX_CHUNK_CELLS,
) -> Nearest:
    """Smallest and second-smallest Jaccard distance from each query row to the references.

    Works through `chunk_rows` query rows at a time (fewer when the references are many, so
    one dense block stays under `max_chunk_cells`), which keeps users x users comparisons
    memory-bounded.
    """
    a, b = _pair(queries, references)
    first = np.full(a.shape[0], np.inf)
    second = np.full(a.shape[0], np.inf)
    for rows, sim in similarity_blocks(
        a, b, chunk_rows=chunk_rows, max_chunk_cells=max_chunk_cells
    ):
        first[rows], second[rows] = _top2_distances(sim)
    return Nearest(first, second)


def _pair(queries: sp.spmatrix, references: sp.spmatrix) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    a, b = binarize(queries), binarize(references)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"queries have {a.shape[1]} items but references {b.shape[1]}")
    return a, b


def similarity_blocks(
    a: sp.csr_matrix,
    b: sp.csr_matrix,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    max_chunk_cells: int = _MAX_CHUNK_CELLS,
) -> Iterator[tuple[slice, np.ndarray]]:
    """Dense float32 Jaccard similarity blocks (query rows `rows` x all references).

    Binary 0/1 csr inputs over the same items. Intersections of popular items (where both
    sides are dense enough that a sparse product would fill in anyway) come from a dense
    BLAS product, the rest from a sparse product; counts stay exact in float32, so the
    split changes timings only. The block's buffer is reused by the next one: reduce it
    before asking for more.
    """
    n_a, n_b = a.shape[0], b.shape[0]
    if n_a == 0 or n_b == 0:
        return
    size_a = np.diff(a.indptr).astype(np.float32)
    size_b = np.diff(b.indptr).astype(np.float32)
    step = max(1, min(int(chunk_rows), max_chunk_cells // n_b))
    head, tail = _split_items(a, b, max_chunk_cells // max(n_b, step))
    b_head = b[:, head].toarray().T.copy()  # items x refs
    b_tail = b[:, tail].T.tocsr()
    empty_b = np.flatnonzero(size_b == 0)
    sim_buf = np.empty((min(step, n_a), n_b), dtype=np.float32)
    work_buf = np.empty_like(sim_buf)  # sparse part, then the union sizes
    for start in range(0, n_a, step):
        rows = slice(start, min(start + step, n_a))
        chunk = a[rows]
        sim, work = sim_buf[: rows.stop - start], work_buf[: rows.stop - start]
        np.matmul(chunk[:, head].toarray(), b_head, out=sim)
        if len(tail):
            work.fill(0.0)
            (chunk[:, tail] @ b_tail).toarray(out=work)
            sim += work
        np.add.outer(size_a[rows], size_b, out=work)
        work -= sim
        np.maximum(work, 1.0, out=work)  # 0 only for two empty sets, set to 1 below
        np.divide(sim, work, out=sim)
        empty_a = np.flatnonzero(size_a[rows] == 0)
        if len(empty_a) and len(empty_b):
            sim[np.ix_(empty_a, empty_b)] = 1.0
        yield rows, sim


def _split_items(
    a: sp.csr_matrix, b: sp.csr_matrix, max_head: int
) -> tuple[np.ndarray, np.ndarray]:
    """Items worth a dense product (joint density above a measured break-even point), at
    most `max_head` of them, and the rest."""
    density_a = np.bincount(a.indices, minlength=a.shape[1]) / max(a.shape[0], 1)
    density_b = np.bincount(b.indices, minlength=b.shape[1]) / max(b.shape[0], 1)
    joint = density_a * density_b
    order = np.argsort(-joint, kind="stable")
    n_head = int((joint >= _DENSE_JOINT_DENSITY).sum())
    n_head = min(n_head, max_head)
    return np.sort(order[:n_head]), np.sort(order[n_head:])


def _top2_distances(sim: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closest and second-closest distance per row of a similarity block (+inf if absent).

    argmax, mask, max again: an order of magnitude faster than np.partition on wide rows.
    The block is left as it was.
    """
    n, m = sim.shape
    second = np.full(n, np.inf)
    idx = sim.argmax(axis=1)
    r = np.arange(n)
    best = sim[r, idx].copy()
    if m >= 2:
        sim[r, idx] = -np.inf
        second = 1.0 - sim.max(axis=1).astype(np.float64)
        sim[r, idx] = best
    return 1.0 - best.astype(np.float64), second


def nndr(nearest: Nearest) -> np.ndarray:
    """Nearest / second-nearest distance ratio per query.

    0/0 (two references identical to the query) is 1.0: the query does not single out one
    reference, which is the point of the ratio. Undefined (nan) with fewer than two
    references.
    """
    d1, d2 = nearest.first, nearest.second
    out = np.full(len(d1), np.nan)
    finite = np.isfinite(d2)
    zero = finite & (d2 == 0.0)
    out[zero] = 1.0
    pos = finite & (d2 > 0.0)
    out[pos] = d1[pos] / d2[pos]
    return out


def closer_share(d_train: np.ndarray, d_holdout: np.ndarray) -> float:
    """Share of queries strictly closer to train than to holdout, ties counted 1/2."""
    return float(np.mean((d_train < d_holdout) + 0.5 * (d_train == d_holdout)))


def auc(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> float:
    """P(member score > non-member score) + 1/2 P(tie): Mann-Whitney U / (n1 n0)."""
    from scipy.stats import rankdata  # here: scipy.stats costs `sample` ~0.9 s to import

    n1, n0 = len(member_scores), len(nonmember_scores)
    ranks = rankdata(np.concatenate([member_scores, nonmember_scores]))
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2.0
    return float(u / (n1 * n0))


def auc_se(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> float | None:
    """DeLong's standard error of `auc` (None with fewer than two scores on a side).

    Membership AUC is read against fixed bars (0.55, 0.6); with a few hundred users a side
    its sampling error is a few hundredths, which decides whether 0.554 misses 0.55.
    Structural components by midranks (Sun & Xu 2014): each member's share of
    non-members it outscores, each non-member's share of members that outscore it.
    """
    from scipy.stats import rankdata

    n1, n0 = len(member_scores), len(nonmember_scores)
    if n1 < 2 or n0 < 2:
        return None
    ranks = rankdata(np.concatenate([member_scores, nonmember_scores]))
    v10 = (ranks[:n1] - rankdata(member_scores)) / n0
    v01 = 1.0 - (ranks[n1:] - rankdata(nonmember_scores)) / n1
    return float(np.sqrt(v10.var(ddof=1) / n1 + v01.var(ddof=1) / n0))


def roc_curve(
    member_scores: np.ndarray, nonmember_scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates of "member when score ≥ t" over every threshold t.

    Starts at (0, 0) and ends at (1, 1); the area under it (trapezoids, so ties count ½)
    equals `auc` of the same scores.
    """
    scores = np.concatenate([member_scores, nonmember_scores])
    is_member = np.concatenate([np.ones(len(member_scores)), np.zeros(len(nonmember_scores))])
    order = np.argsort(-scores, kind="stable")
    scores, is_member = scores[order], is_member[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores) != 0), len(scores) - 1]
    tp = np.cumsum(is_member)[last_of_tie]
    fp = np.cumsum(1.0 - is_member)[last_of_tie]
    tpr = np.r_[0.0, tp / max(len(member_scores), 1)]
    fpr = np.r_[0.0, fp / max(len(nonmember_scores), 1)]
    return fpr, tpr


def _median(values: np.ndarray) -> float | None:
    values = values[np.isfinite(values)]
    return float(np.median(values)) if len(values) else None


def _share(mask: np.ndarray) -> float | None:
    return float(mask.mean()) if len(mask) else None


def _copy_figures(exact: np.ndarray, sizes: np.ndarray) -> dict:
    big = sizes >= _MIN_ITEMS_FOR_COPY_CHECK
    return {
        "exact_copy_share": _share(exact),
        "exact_copy_share_5plus": _share(exact[big]),
        "n_5plus": int(big.sum()),
    }


@dataclass(frozen=True)
class PrivacyDistances:
    """The per-user Jaccard distances behind the privacy figures, for plots (not the JSON).

    `synthetic_dcr`: each synthetic user to the nearest train reference user;
    `holdout_dcr`: each held-out real user to the same references (the yardstick);
    `member_d` / `nonmember_d`: each train / held-out reference user to the nearest
    synthetic user, the membership-inference scores (negated). +inf where a side is empty.
    """

    synthetic_dcr: np.ndarray
    holdout_dcr: np.ndarray
    member_d: np.ndarray
    nonmember_d: np.ndarray


def privacy_metrics(*args: Any, **kwargs: Any) -> dict:
    """The figures of `privacy_metrics_with_distances` (same arguments) alone."""
    return privacy_metrics_with_distances(*args, **kwargs)[0]


def privacy_metrics_with_distances(
    synthetic: sp.spmatrix,
    train: sp.spmatrix,
    holdout: sp.spmatrix,
    rng: np.random.Generator,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> tuple[dict, PrivacyDistances]:
    """Exact copies, DCR share, distance membership inference and NNDR (GUIDE §3).

    Train and holdout are compared on equal-size reference sets (n_ref = min of the two,
    drawn by `rng` without replacement, train first) so neither side wins by being larger.
    `reference` holds what the held-out real users themselves score, the yardstick for
    each figure; for `dcr_share` and `mia_auc` that is the ideal 0.5.
    """
    synthetic, train, holdout = binarize(synthetic), binarize(train), binarize(holdout)
    n_items = {synthetic.shape[1], train.shape[1], holdout.shape[1]}
    if len(n_items) != 1:
        raise ValueError(f"matrices disagree on the number of items: {sorted(n_items)}")
    n_train, n_syn = train.shape[0], synthetic.shape[0]
    n_ref = min(n_train, holdout.shape[0])
    train_pick = rng.choice(n_train, size=n_ref, replace=False)
    holdout_pick = np.sort(rng.choice(holdout.shape[0], size=n_ref, replace=False))
    # Train reordered so its reference users come first: one sweep over [train | holdout
    # refs] then serves the full-train copy check and every reference-set figure.
    rest = np.setdiff1d(np.arange(n_train), train_pick)
    train = train[np.concatenate([np.sort(train_pick), rest])]
    holdout_ref = holdout[holdout_pick]

    syn = _sweep_synthetic(synthetic, train, holdout_ref, n_ref, chunk_rows)
    hold = _sweep_holdout(holdout, train, n_ref, chunk_rows)
    has_both = n_syn > 0 and n_ref > 0
    syn_copies = _copy_figures(syn["exact"], np.diff(synthetic.indptr))
    hold_copies = _copy_figures(hold["exact"], np.diff(holdout.indptr))
    members, nonmembers = -syn["member_d"], -syn["nonmember_d"]  # nearer scores higher
    mia = auc(members, nonmembers) if has_both else None
    mia_se = auc_se(members, nonmembers) if has_both else None
    dcr = closer_share(syn["train_ref"].first, syn["holdout_ref_d"]) if has_both else None
    figures = {
        "exact_copy_share": syn_copies["exact_copy_share"],
        "exact_copy_share_5plus": syn_copies["exact_copy_share_5plus"],
        "n_synthetic_5plus": syn_copies["n_5plus"],
        "dcr_share": dcr,
        "mia_auc": mia,
        "mia_auc_se": mia_se,
        "nndr": _median(nndr(syn["train_ref"])),
        "dcr_median": _median(syn["train_ref"].first),
        "reference": {
            "exact_copy_share": hold_copies["exact_copy_share"],
            "exact_copy_share_5plus": hold_copies["exact_copy_share_5plus"],
            "dcr_share": 0.5,
            "mia_auc": 0.5,
            "nndr": _median(nndr(hold["train_ref"])),
            "dcr_median": _median(hold["train_ref"].first),
        },
        "n_reference": int(n_ref),
    }
    distances = PrivacyDistances(syn["train_ref"].first, hold["train_ref"].first,
                                 syn["member_d"], syn["nonmember_d"])
    return figures, distances


def _sweep_synthetic(
    synthetic: sp.csr_matrix,
    train: sp.csr_matrix,
    holdout_ref: sp.csr_matrix,
    n_ref: int,
    chunk_rows: int,
) -> dict:
    """One pass of synthetic x [train (refs first) | holdout refs], reduced both ways.

    Rows give each synthetic user's nearest train / train-ref / holdout-ref distances;
    column maxima give each reference user's distance to its nearest synthetic user.
    """
    n_syn, n_train = synthetic.shape[0], train.shape[0]
    exact = np.zeros(n_syn, dtype=bool)
    first = np.full(n_syn, np.inf)
    second = np.full(n_syn, np.inf)
    hold_d = np.full(n_syn, np.inf)
    col_best = np.full(n_train + n_ref, -np.inf, dtype=np.float32)
    refs = sp.vstack([train, holdout_ref], format="csr")
    for rows, sim in similarity_blocks(synthetic, refs, chunk_rows=chunk_rows):
        if n_train:
            exact[rows] = sim[:, :n_train].max(axis=1) == 1.0
        np.maximum(col_best, sim.max(axis=0), out=col_best)
        if n_ref:
            hold_d[rows] = 1.0 - sim[:, n_train:].max(axis=1).astype(np.float64)
            first[rows], second[rows] = _top2_distances(sim[:, :n_ref])
    to_syn = 1.0 - col_best.astype(np.float64)  # +inf when there is no synthetic user
    return {
        "exact": exact,
        "train_ref": Nearest(first, second),
        "holdout_ref_d": hold_d,
        "member_d": to_syn[:n_ref],
        "nonmember_d": to_syn[n_train:],
    }


def _sweep_holdout(
    holdout: sp.csr_matrix, train: sp.csr_matrix, n_ref: int, chunk_rows: int
) -> dict:
    """Held-out users x train (refs first): copies of train users and the reference NNDR/DCR."""
    n = holdout.shape[0]
    exact = np.zeros(n, dtype=bool)
    first = np.full(n, np.inf)
    second = np.full(n, np.inf)
    for rows, sim in similarity_blocks(holdout, train, chunk_rows=chunk_rows):
        exact[rows] = sim.max(axis=1) == 1.0
        if n_ref:
            first[rows], second[rows] = _top2_distances(sim[:, :n_ref])
    return {"exact": exact, "train_ref": Nearest(first, second)}
