"""Known-answer tests for top-k selection and the ranking / list metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recsynth.metrics.ranking import (
    accuracy_per_user,
    head_items,
    list_metrics,
    list_metrics_per_user,
    top_k,
)


def csr(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in items]
    return sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(len(rows), n_items))


# ---------------------------------------------------------------- top_k


def test_top_k_excludes_history_and_breaks_ties_by_lower_index():
    scores = np.array([[0.1, 0.9, 0.9, 0.5, 0.9]], dtype=np.float32)
    top = top_k(scores, csr([[1]], 5), 3)
    # 0.9 ties among {2, 4} (1 is excluded) -> lower index first, then 0.5 (item 3)
    assert top.tolist() == [[2, 4, 3]]


def test_top_k_tie_on_the_cut_takes_lowest_indices():
    scores = np.ones((2, 6), dtype=np.float32)
    scores[1, 5] = 2.0
    top = top_k(scores, csr([[0], []], 6), 2)
    assert top.tolist() == [[1, 2], [5, 0]]


def test_top_k_pads_with_minus_one_when_too_few_rankable_items():
    scores = np.array([[3.0, 2.0, 1.0]], dtype=np.float32)
    top = top_k(scores, csr([[0, 2]], 3), 4)
    assert top.tolist() == [[1, -1, -1, -1]]


def test_top_k_nan_and_neg_inf_rank_last_but_before_excluded():
    scores = np.array([[np.nan, -np.inf, 1.0, 5.0]], dtype=np.float64)
    top = top_k(scores, csr([[3]], 4), 3)
    assert top.tolist() == [[2, 0, 1]]


def test_top_k_pos_inf_ranks_first():
    scores = np.array([[np.inf, 1.0, 2.0, 0.5]], dtype=np.float64)
    assert top_k(scores, csr([[]], 4), 2).tolist() == [[0, 2]]


def test_top_k_does_not_modify_scores():
    scores = np.arange(6, dtype=np.float32).reshape(1, 6)
    before = scores.copy()
    top_k(scores, csr([[5]], 6), 2)
    np.testing.assert_array_equal(scores, before)


def test_top_k_matches_full_lexsort_on_random_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(50, 30)).astype(np.float32)  # many ties
    exclude = sp.random(50, 30, density=0.2, random_state=1, format="csr")
    exclude.data[:] = 1
    got = top_k(scores, exclude, 7)
    s = scores.astype(np.float64)
    s[exclude.toarray() > 0] = -np.inf
    for u in range(50):
        order = np.lexsort((np.arange(30), -s[u]))[:7]
        assert got[u].tolist() == order.tolist()


# ---------------------------------------------------------------- accuracy


def test_accuracy_known_answers():
    top = np.array(
        [
            [3, 0, 5, 1],  # test {0, 1, 2}: hits at ranks 2 and 4
            [2, 4, 0, 5],  # test {2}: hit at rank 1
            [0, 1, 2, 5],  # test {5}: hit at rank 4
        ]
    )
    test = csr([[0, 1, 2], [2], [5]], 6)
    m = accuracy_per_user(top, test, [1, 2, 4])
    a = pytest.approx
    lg3, lg5 = math.log2(3), math.log2(5)  # discounts of ranks 2 and 4

    # user 0, k=2: one hit at rank 2.
    #   precision = 1/2; recall = 1/min(2,3) = 1/2
    #   DCG = 1/log2(3) = 0.6309; IDCG = 1 + 1/log2(3) = 1.6309 -> NDCG = 0.38685
    #   MRR = 1/2; MAP = (1/min(2,3)) * P@2 = (1/2)(1/2) = 0.25
    assert m["precision@2"][0] == a(0.5)
    assert m["recall@2"][0] == a(0.5)
    assert m["ndcg@2"][0] == a((1 / lg3) / (1 + 1 / lg3))
    assert m["ndcg@2"][0] == a(0.38685, abs=1e-5)
    assert m["hit_rate@2"][0] == 1.0
    assert m["mrr@2"][0] == a(0.5)
    assert m["map@2"][0] == a(0.25)

    # user 0, k=4: hits at ranks 2 and 4, |T| = 3.
    #   precision = 2/4; recall = 2/3
    #   DCG = 1/log2(3) + 1/log2(5) = 0.63093 + 0.43068 = 1.06161
    #   IDCG (3 positions) = 1 + 0.63093 + 0.5 = 2.13093 -> NDCG = 0.49819
    #   MAP = (1/3) * (P@2 + P@4) = (1/3) * (1/2 + 2/4) = 1/3
    assert m["precision@4"][0] == a(0.5)
    assert m["recall@4"][0] == a(2 / 3)
    assert m["ndcg@4"][0] == a((1 / lg3 + 1 / lg5) / (1 + 1 / lg3 + 0.5))
    assert m["ndcg@4"][0] == a(0.49819, abs=1e-5)
    assert m["mrr@4"][0] == a(0.5)
    assert m["map@4"][0] == a(1 / 3)

    # user 0, k=1: miss everywhere
    for name in ("precision", "recall", "ndcg", "hit_rate", "mrr", "map"):
        assert m[f"{name}@1"][0] == 0.0

    # user 1: perfect at rank 1; recall/NDCG/MAP normalise by min(k, |T|) = 1
    for k in (1, 2, 4):
        assert m[f"recall@{k}"][1] == a(1.0)
        assert m[f"ndcg@{k}"][1] == a(1.0)
        assert m[f"mrr@{k}"][1] == a(1.0)
        assert m[f"map@{k}"][1] == a(1.0)
        assert m[f"precision@{k}"][1] == a(1 / k)

    # user 2, k=4: single hit at rank 4 -> NDCG = (1/log2 5)/1 = 0.43068, MRR = MAP = 1/4
    assert m["ndcg@4"][2] == a(1 / lg5)
    assert m["mrr@4"][2] == a(0.25)
    assert m["map@4"][2] == a(0.25)
    assert m["hit_rate@2"][2] == 0.0
    assert m["recall@4"][2] == a(1.0)


def test_accuracy_ignores_padding_and_has_every_key():
    top = np.array([[1, -1, -1]])
    m = accuracy_per_user(top, csr([[1, 2]], 3), [1, 3])
    assert set(m) == {
        f"{n}@{k}"
        for n in ("precision", "recall", "ndcg", "hit_rate", "mrr", "map")
        for k in (1, 3)
    }
    assert m["precision@3"][0] == pytest.approx(1 / 3)
    assert m["recall@3"][0] == pytest.approx(1 / 2)


def test_accuracy_needs_enough_columns():
    with pytest.raises(ValueError):
        accuracy_per_user(np.zeros((1, 2), dtype=int), csr([[0]], 3), [5])


# ---------------------------------------------------------------- list metrics

# Reference: 4 users x 4 items.  popularity = [4, 2, 1, 0]
#   p = [1, .5, .25, max(0, 1/4)]  ->  -log2 p = [0, 1, 2, 2]
#   head = ceil(0.2 * 4) = 1 item = {0}
#   item columns: v0=(1,1,1,1) v1=(1,1,0,0) v2=(0,0,1,0) v3=0
#   cos(0,1) = 2/(2*sqrt 2) = 0.70711, cos(0,2) = 1/2, cos(1,2) = 0, cos(., 3) = 0
REFERENCE = csr([[0, 1], [0, 1], [0, 2], [0]], 4)


def test_list_metrics_known_answers():
    top = np.array([[0, 1], [0, 2], [1, 3]])
    m = list_metrics(top, [1, 2], REFERENCE)
    a = pytest.approx
    # k=2: recommended counts [2, 2, 1, 1] -> all 4 items covered
    #   Gini: sorted c = [1,1,2,2], n=4, sum=6:
    #   Σ(2i-n-1)c_i = (-3*1)+(-1*1)+(1*2)+(3*2) = 4 -> 4 / (4*6) = 1/6
    assert m["coverage@2"] == a(1.0)
    assert m["gini@2"] == a(1 / 6)
    # novelty per user: (0+1)/2, (0+2)/2, (1+2)/2 = .5, 1, 1.5 -> 1.0
    assert m["novelty@2"] == a(1.0)
    # diversity per user: 1-0.70711, 1-0.5, 1-0 -> mean 0.59763
    assert m["diversity@2"] == a(((1 - 1 / math.sqrt(2)) + 0.5 + 1.0) / 3)
    # long tail per user: 1/2, 1/2, 2/2 -> 2/3
    assert m["long_tail@2"] == a(2 / 3)
    # k=1: lists [0], [0], [1] -> coverage 2/4; counts [2,1,0,0] sorted [0,0,1,2]:
    #   Σ = (-3*0)+(-1*0)+(1*1)+(3*2) = 7 -> 7/(4*3) = 0.58333
    assert m["coverage@1"] == a(0.5)
    assert m["gini@1"] == a(7 / 12)
    assert math.isnan(m["diversity@1"])  # a one-item list has no pairs


def test_list_metrics_per_user_and_padding():
    top = np.array([[0, 1, -1], [2, 3, 1]])
    per = list_metrics_per_user(top, [3], REFERENCE)
    # user 0 has two valid items: same numbers as a k=2 list [0, 1]
    assert per["novelty@3"][0] == pytest.approx(0.5)
    assert per["diversity@3"][0] == pytest.approx(1 - 1 / math.sqrt(2))
    # user 1: items 2,3,1: novelty (2+2+1)/3; all pairwise cosines 0 -> diversity 1
    assert per["novelty@3"][1] == pytest.approx(5 / 3)
    assert per["diversity@3"][1] == pytest.approx(1.0)
    assert per["long_tail@3"][1] == pytest.approx(1.0)


def test_gini_of_equal_exposure_is_zero():
    top = np.array([[0, 1], [2, 3]])
    assert list_metrics(top, [2], REFERENCE)["gini@2"] == pytest.approx(0.0)


def test_diversity_matches_brute_force():
    rng = np.random.default_rng(3)
    ref = sp.random(40, 25, density=0.3, random_state=4, format="csr")
    ref.data[:] = 1
    top = np.stack([rng.choice(25, size=6, replace=False) for _ in range(15)])
    got = list_metrics_per_user(top, [6], ref)["diversity@6"]
    cols = ref.toarray().T
    norms = np.linalg.norm(cols, axis=1)
    for u in range(15):
        sims = [
            cols[a] @ cols[b] / (norms[a] * norms[b]) if norms[a] * norms[b] > 0 else 0.0
            for x, a in enumerate(top[u])
            for b in top[u][x + 1 :]
        ]
        assert got[u] == pytest.approx(1 - np.mean(sims))


def test_head_items_counts_top_fifth_with_ties_to_lower_index():
    mask = head_items(np.array([5.0, 9.0, 9.0, 1.0, 0.0, 3.0, 3.0, 3.0, 2.0, 2.0]))
    assert np.flatnonzero(mask).tolist() == [1, 2]


def test_dense_and_sparse_diversity_paths_agree(monkeypatch) -> None:
    from recsynth.metrics import ranking

    rng = np.random.default_rng(3)
    reference = sp.csr_matrix((rng.random((40, 30)) < 0.2).astype(np.float32))
    top = np.stack([rng.permutation(30)[:8] for _ in range(25)])
    top[0, 5:] = -1  # a short list
    dense = ranking.list_metrics_per_user(top, [2, 5, 8], ranking.reference_stats(reference))
    monkeypatch.setattr(ranking, "DENSE_COSINE_MAX_ITEMS", 0)
    sparse = ranking.list_metrics_per_user(top, [2, 5, 8], ranking.reference_stats(reference))
    for key in dense:
        np.testing.assert_allclose(dense[key], sparse[key], rtol=1e-5, equal_nan=True)
