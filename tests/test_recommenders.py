"""The contract every recommender must honour, plus model-specific checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recsynth.errors import UsageError
from recsynth.metrics.ranking import accuracy_per_user, top_k
from recsynth.protocol import fold_in_split
from recsynth.recommenders.base import RECOMMENDER_NAMES, Recommender, make_recommender
from recsynth.recommenders.ease import (
    EASE,
    LAMBDA_GRID,
    UNMODELLED_SCORE,
    ease_weights,
    select_lambda,
)

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "interactions.parquet"
PERSONALISED = tuple(n for n in RECOMMENDER_NAMES if n != "pop")


def clusters(
    rng: np.random.Generator, n_a: int = 20, n_b: int = 30, size: int = 10, per_user: int = 5
) -> sp.csr_matrix:
    """Users of cluster A hold items 0..size-1, cluster B items size..2*size-1.

    B has more users, so its items are globally more popular: only a model that uses
    co-occurrence (not popularity) ranks A items first for an A user.
    """
    rows, cols = [], []
    for u in range(n_a + n_b):
        offset = 0 if u < n_a else size
        items = rng.choice(size, size=per_user, replace=False) + offset
        rows += [u] * per_user
        cols += items.tolist()
    m = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_a + n_b, 2 * size)
    )
    m.sort_indices()
    return m


def history(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in items]
    return sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(len(rows), n_items))


@pytest.fixture(scope="module")
def toy() -> sp.csr_matrix:
    return clusters(np.random.default_rng(7))


# ---------------------------------------------------------------- shared contract


@pytest.mark.parametrize("name", RECOMMENDER_NAMES)
def test_contract_shape_dtype_determinism(name: str, toy: sp.csr_matrix):
    hist = history([[0, 1], [12], []], toy.shape[1])
    a = make_recommender(name).fit(toy, np.random.default_rng(3))
    b = make_recommender(name).fit(toy, np.random.default_rng(3))
    assert isinstance(a, Recommender)
    assert a.name == name
    sa, sb = a.score(hist), b.score(hist)
    assert sa.shape == (3, toy.shape[1])
    assert sa.dtype == np.float32
    assert not np.isnan(sa).any()
    np.testing.assert_array_equal(sa, sb)


@pytest.mark.parametrize("name", PERSONALISED)
def test_cluster_users_get_their_cluster(name: str, toy: sp.csr_matrix):
    """A users (minority cluster) must get A items, B users B items, in the top 3."""
    hist = history([[0, 1, 2], [3, 5], [10, 11, 12], [15, 17]], toy.shape[1])
    rec = make_recommender(name).fit(toy, np.random.default_rng(0))
    top = top_k(rec.score(hist), hist, 3)
    assert (top[:2] < 10).all(), top
    assert (top[2:] >= 10).all(), top


def test_popularity_ranks_by_train_count(toy: sp.csr_matrix):
    rec = make_recommender("pop").fit(toy, np.random.default_rng(0))
    counts = np.asarray(toy.sum(axis=0)).ravel()
    np.testing.assert_array_equal(rec.score(history([[0]], 20))[0], counts.astype(np.float32))


def test_registry_names_and_errors():
    assert RECOMMENDER_NAMES == ("pop", "itemknn", "ease", "bpr", "apr")
    assert make_recommender("apr").adversarial
    assert not make_recommender("bpr").adversarial
    assert make_recommender("itemknn", k_neighbors=5).k_neighbors == 5
    with pytest.raises(UsageError, match="unknown recommender"):
        make_recommender("svd")
    with pytest.raises(UsageError):
        make_recommender("pop", bogus=1)


# ---------------------------------------------------------------- itemknn


def test_itemknn_keeps_k_neighbours_per_item_and_zero_diagonal(toy: sp.csr_matrix):
    rec = make_recommender("itemknn", k_neighbors=3).fit(toy, np.random.default_rng(0))
    s = rec.similarity
    assert (np.diff(s.tocsc().indptr) <= 3).all()
    assert np.allclose(s.diagonal(), 0.0)
    x = toy.toarray()
    cos = (x.T @ x) / np.outer(np.linalg.norm(x, axis=0), np.linalg.norm(x, axis=0))
    np.fill_diagonal(cos, 0.0)
    for j in range(toy.shape[1]):  # kept entries are the true cosines, the top-3 of column j
        col = s[:, j].toarray().ravel()
        kept = np.flatnonzero(col)
        np.testing.assert_allclose(col[kept], cos[kept, j], rtol=1e-5)
        assert col[kept].min() >= np.sort(cos[:, j])[-3] - 1e-6


# ---------------------------------------------------------------- EASE


@pytest.mark.parametrize("shape", [(30, 12), (8, 25)])  # tall: Cholesky; wide: Woodbury
def test_ease_weights_match_the_closed_form(shape: tuple[int, int]):
    x = sp.random(*shape, density=0.3, random_state=5, format="csr")
    x.data[:] = 1
    lam = 4.0
    p = np.linalg.inv((x.T @ x).toarray() + lam * np.eye(shape[1]))
    b = np.eye(shape[1]) - p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    np.testing.assert_allclose(ease_weights(x, lam), b, atol=1e-5)


def test_ease_low_rank_scores_equal_the_dense_ones():
    """dense=False (fit's check on wide catalogs) skips B but ranks as B does."""
    x = sp.random(40, 120, density=0.1, random_state=3, format="csr")
    x.data[:] = 1
    history = sp.random(15, 120, density=0.05, random_state=4, format="csr")
    history.data[:] = 1
    dense = EASE(lambdas=20.0).fit(x, np.random.default_rng(0))
    low = EASE(lambdas=20.0, dense=False).fit(x, np.random.default_rng(0))
    assert dense.weights is not None and low.weights is None and low.low_rank is not None
    a, b = dense.score(history), low.score(history)
    np.testing.assert_allclose(b, a, atol=1e-5)
    assert np.array_equal(top_k(a, history, 10), top_k(b, history, 10))
    tall = EASE(lambdas=20.0, dense=False).fit(x[:, :30], np.random.default_rng(0))
    assert tall.weights is not None  # more users than items: B is the cheap way


def test_ease_picks_lambda_from_grid(toy: sp.csr_matrix):
    rec = EASE().fit(toy, np.random.default_rng(0))
    assert rec.lam in LAMBDA_GRID
    assert set(rec.validation) == set(LAMBDA_GRID)
    assert rec.validation[rec.lam] == max(rec.validation.values())


def test_ease_lambda_selection_same_for_wide_and_tall_paths():
    """The eigen shortcut must give the same NDCGs whichever side is decomposed."""
    x = sp.random(40, 30, density=0.25, random_state=2, format="csr")
    x.data[:] = 1
    tall = select_lambda(x, (1.0, 10.0), np.random.default_rng(0))
    wide_x = sp.hstack([x, sp.csr_matrix((40, 30))], format="csr")  # 40 users < 60 items
    wide = select_lambda(wide_x, (1.0, 10.0), np.random.default_rng(0))
    assert tall[0] == wide[0]
    assert tall[1] == pytest.approx(wide[1])


@pytest.mark.parametrize(("n_users", "folds"), [(100, 5), (2000, 2), (4000, 1)])
def test_ease_small_logs_validate_lambda_on_several_disjoint_folds(monkeypatch, n_users,
                                                                   folds):
    """10 % of the users is a noisy validation set on small logs: disjoint folds are added
    until at least 300 users validate λ (at most 5 folds), each fitted without its users."""
    from recsynth.recommenders import ease

    x = sp.random(n_users, 20, density=0.3, random_state=1, format="csr")
    x.data[:] = 1
    seen: list[tuple[int, int]] = []
    real = ease._fold_ndcg_sums

    def spy(train, foldin, test, grid):
        seen.append((train.shape[0], foldin.shape[0]))
        return real(train, foldin, test, grid)

    monkeypatch.setattr(ease, "_fold_ndcg_sums", spy)
    best, results = select_lambda(x, (1.0, 10.0), np.random.default_rng(0))
    n_val = n_users // 10
    assert len(seen) == folds
    assert all(n_train == n_users - n_val for n_train, _ in seen)
    assert best in (1.0, 10.0) and set(results) == {1.0, 10.0}
    assert all(0.0 <= v <= 1.0 for v in results.values())


def test_ease_catalog_cap_ranks_unmodelled_items_last(toy: sp.csr_matrix):
    rec = EASE(lambdas=10.0, max_items=12).fit(toy, np.random.default_rng(0))
    assert rec.lam == 10.0
    assert len(rec.items) == 12
    scores = rec.score(history([[0, 1]], toy.shape[1]))
    dropped = np.setdiff1d(np.arange(toy.shape[1]), rec.items)
    assert (scores[0, dropped] == UNMODELLED_SCORE).all()
    top = top_k(scores, history([[0, 1]], toy.shape[1]), 10)
    assert set(top[0]) <= set(rec.items.tolist())


# ---------------------------------------------------------------- BPR / APR


def test_bpr_gradients_match_autograd():
    torch = pytest.importorskip("torch")
    from recsynth.recommenders.bpr import bpr_grads

    g = torch.Generator().manual_seed(0)
    eu, ei, ej = (torch.randn(20, 4, generator=g, dtype=torch.float64) for _ in range(3))
    bi, bj = (torch.randn(20, generator=g, dtype=torch.float64) for _ in range(2))
    leaves = [t.clone().requires_grad_() for t in (eu, ei, ej, bi, bj)]
    u, i, j, b_i, b_j = leaves
    loss = -torch.nn.functional.logsigmoid((u * (i - j)).sum(1) + b_i - b_j).mean()
    auto = torch.autograd.grad(loss, leaves)
    mine = bpr_grads(eu, ei, ej, bi, bj)
    for want, got in zip(auto[:4], mine, strict=True):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(-mine[3], auto[4])


def test_bpr_does_not_touch_global_torch_state(toy: sp.csr_matrix):
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    make_recommender("apr", epochs=1, adv_epochs=1).fit(toy, np.random.default_rng(0))
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


# ---------------------------------------------------------------- fold_in_split


def test_fold_in_split_properties():
    rng = np.random.default_rng(0)
    m = sp.random(200, 50, density=0.1, random_state=1, format="lil", dtype=np.float32)
    m[0] = 0  # an empty user
    m[1] = 0
    m[1, 3] = 1  # a one-item user
    m = sp.csr_matrix(m)
    m.data[:] = 1
    m.eliminate_zeros()
    fold, test = fold_in_split(m, 0.2, rng)
    assert fold.shape == test.shape == m.shape
    assert fold.multiply(test).nnz == 0
    assert ((fold + test) != m).nnz == 0
    n = np.diff(m.indptr)
    n_test = np.diff(test.indptr)
    big = n >= 2
    expected = np.clip(np.rint(0.2 * n[big]), 1, n[big] - 1)
    np.testing.assert_array_equal(n_test[big], expected)
    assert (n_test[~big] == 0).all()
    assert (np.diff(fold.indptr)[big] >= 1).all()
    assert test[1].nnz == 0 and fold[1, 3] == 1


def test_fold_in_split_depends_only_on_content_and_rng():
    m = sp.random(60, 40, density=0.2, random_state=3, format="csr", dtype=np.float32)
    m.data[:] = 1
    coo = m.tocoo()
    order = np.random.default_rng(9).permutation(coo.nnz)
    shuffled = sp.csr_matrix(
        (coo.data[order], (coo.row[order], coo.col[order])), shape=m.shape
    )  # same content, unsorted construction order
    f1, t1 = fold_in_split(m, 0.3, np.random.default_rng(5))
    f2, t2 = fold_in_split(shuffled, 0.3, np.random.default_rng(5))
    assert (f1 != f2).nnz == 0 and (t1 != t2).nnz == 0
    _, t3 = fold_in_split(m, 0.3, np.random.default_rng(6))
    assert (t1 != t3).nnz > 0


def test_fold_in_split_rejects_bad_fraction():
    with pytest.raises(ValueError):
        fold_in_split(sp.csr_matrix((2, 2)), 1.0, np.random.default_rng(0))


# ---------------------------------------------------------------- realistic sanity


def test_ease_beats_popularity_on_sample_data(sample_matrices):
    train, fold, test = sample_matrices

    def ndcg(name: str) -> float:
        rec = make_recommender(name).fit(train, np.random.default_rng(1))
        top = top_k(rec.score(fold), fold, 10)
        return float(accuracy_per_user(top, test, [10])["ndcg@10"].mean())

    ease, pop = ndcg("ease"), ndcg("pop")
    assert ease > 1.5 * pop, (ease, pop)
