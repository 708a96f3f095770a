"""Known answers for the user-level privacy figures (GUIDE §3)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from recsynth.matrix import build_catalog, to_user_items
from recsynth.metrics import privacy as priv
from recsynth.metrics.privacy import (
    auc,
    auc_se,
    closer_share,
    nearest_jaccard,
    nndr,
    privacy_metrics,
    roc_curve,
)

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "interactions.parquet"


def _csr(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    dense = np.zeros((len(rows), n_items), dtype=np.float32)
    for r, items in enumerate(rows):
        dense[r, items] = 1.0
    return sp.csr_matrix(dense)


def _dense_binary(rng: np.random.Generator, n: int, m: int, density: float) -> np.ndarray:
    return (rng.random((n, m)) < density).astype(np.float32)


def _random_binary(rng: np.random.Generator, n: int, m: int, density: float) -> sp.csr_matrix:
    return sp.csr_matrix(_dense_binary(rng, n, m, density))


def _brute(a: sp.csr_matrix, b: sp.csr_matrix) -> np.ndarray:
    """Jaccard distances by set arithmetic, the definition itself."""
    sets_a = [set(a[i].indices) for i in range(a.shape[0])]
    sets_b = [set(b[j].indices) for j in range(b.shape[0])]
    out = np.empty((len(sets_a), len(sets_b)))
    for i, x in enumerate(sets_a):
        for j, y in enumerate(sets_b):
            union = len(x | y)
            out[i, j] = 0.0 if union == 0 else 1.0 - len(x & y) / union
    return out


def test_hand_computed_jaccard() -> None:
    queries = _csr([[0, 1, 2], [3], []], 6)
    refs = _csr([[0, 1], [1, 2, 3, 4], [5]], 6)
    nn = nearest_jaccard(queries, refs)
    # {0,1,2}: vs {0,1} 1-2/3, vs {1,2,3,4} 1-2/5, vs {5} 1.
    assert nn.first[0] == pytest.approx(1 / 3)
    assert nn.second[0] == pytest.approx(3 / 5)
    # {3}: vs {1,2,3,4} 1-1/4, others 1.
    assert nn.first[1] == pytest.approx(3 / 4)
    assert nn.second[1] == pytest.approx(1.0)
    # {} vs non-empty sets: 1.
    assert nn.first[2] == 1.0 and nn.second[2] == 1.0
    assert not nn.exact.any()


def test_empty_sets_are_identical() -> None:
    nn = nearest_jaccard(_csr([[], [1]], 3), _csr([[], [2], []], 3))
    assert nn.first.tolist() == [0.0, pytest.approx(1.0)]
    assert nn.second[0] == 0.0  # two empty references
    assert nn.exact.tolist() == [True, False]


def test_non_binary_values_are_binarised() -> None:
    a = _csr([[0, 1]], 3) * 7.0
    nn = nearest_jaccard(a, _csr([[0, 1], [2]], 3))
    assert nn.first[0] == 0.0


@pytest.mark.parametrize("chunk_rows", [1, 3, 7, 64, 2048])
@pytest.mark.parametrize("dense_threshold", [0.0, 1e-3, 10.0])
def test_chunked_equals_brute_force(
    chunk_rows: int, dense_threshold: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Thresholds send every item, the popular ones, or none through the dense product.
    monkeypatch.setattr(priv, "_DENSE_JOINT_DENSITY", dense_threshold)
    rng = np.random.default_rng(chunk_rows)
    a = _dense_binary(rng, 23, 12, 0.25)
    b = _dense_binary(rng, 17, 12, 0.25)
    a[3] = 0  # an empty query
    b[5] = 0  # an empty reference
    b[6] = a[0]  # an exact copy
    a, b = sp.csr_matrix(a), sp.csr_matrix(b)
    brute = np.sort(_brute(a, b), axis=1)
    nn = nearest_jaccard(a, b, chunk_rows=chunk_rows)
    np.testing.assert_allclose(nn.first, brute[:, 0], atol=1e-6)
    np.testing.assert_allclose(nn.second, brute[:, 1], atol=1e-6)
    assert nn.exact[0] and nn.exact[3]


def test_cell_budget_limits_chunk_rows() -> None:
    rng = np.random.default_rng(1)
    a, b = _random_binary(rng, 30, 10, 0.3), _random_binary(rng, 20, 10, 0.3)
    tight = nearest_jaccard(a, b, max_chunk_cells=20)  # one query row per block
    np.testing.assert_array_equal(tight.first, nearest_jaccard(a, b).first)


def test_single_reference_has_no_second_neighbour() -> None:
    nn = nearest_jaccard(_csr([[0]], 2), _csr([[0, 1]], 2))
    assert nn.first[0] == pytest.approx(0.5) and np.isinf(nn.second[0])
    assert np.isnan(nndr(nn)[0])


def test_nndr_conventions() -> None:
    nn = priv.Nearest(np.array([0.0, 0.0, 0.2, 0.5]), np.array([0.0, 0.4, 0.8, 0.5]))
    assert nndr(nn).tolist() == [1.0, 0.0, 0.25, 1.0]


def test_closer_share_counts_ties_half() -> None:
    d_train = np.array([0.1, 0.5, 0.5, 0.9])
    d_hold = np.array([0.2, 0.5, 0.4, 0.9])
    assert closer_share(d_train, d_hold) == pytest.approx((1 + 0.5 + 0 + 0.5) / 4)


def test_auc_mann_whitney_with_ties() -> None:
    assert auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert auc(np.array([1.0, 2.0]), np.array([3.0, 4.0])) == 0.0
    # pairs: (2,1) win, (2,2) tie, (1,1) tie, (1,2) loss -> (1 + 0.5 + 0.5) / 4
    assert auc(np.array([2.0, 1.0]), np.array([1.0, 2.0])) == pytest.approx(0.5)


def test_auc_se_known_answer_and_calibration() -> None:
    # members 1, 3, 5 beat non-members 2, 4 in 0 / 1 / 2 of 2 pairs: V10 = 0, 1/2, 1;
    # non-members are beaten by 2/3 and 1/3 of members: V01 = 2/3, 1/3
    # SE = sqrt(var(V10) / 3 + var(V01) / 2) = sqrt(1/4 / 3 + 1/18 / 2) = 1/3
    assert auc_se(np.array([1.0, 3.0, 5.0]), np.array([2.0, 4.0])) == pytest.approx(1 / 3)
    assert auc_se(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 0.0  # perfectly separated
    assert auc_se(np.array([1.0]), np.array([1.0, 2.0])) is None
    # one side of 200 against 200 from the same law: AUC's SE is sqrt(2 / 12 / 200)
    rng = np.random.default_rng(3)
    se = auc_se(rng.random(200), rng.random(200))
    assert se == pytest.approx(np.sqrt(2 / 12 / 200), rel=0.1)


def _two_populations(rng: np.random.Generator) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Train users on items 0-59 and holdout users on 40-99: only 20 items shared."""

    def draw(n: int, offset: int) -> sp.csr_matrix:
        return _csr(
            [(offset + rng.choice(60, size=8, replace=False)).tolist() for _ in range(n)], 100
        )

    return draw(120, 0), draw(80, 40)


def test_copied_train_leaks() -> None:
    rng = np.random.default_rng(0)
    train, holdout = _two_populations(rng)
    out = privacy_metrics(train.copy(), train, holdout, np.random.default_rng(7))
    assert out["exact_copy_share"] == 1.0
    assert out["exact_copy_share_5plus"] == 1.0
    assert out["n_synthetic_5plus"] == 120
    assert out["mia_auc"] >= 0.95
    assert out["dcr_share"] >= 0.95
    assert out["dcr_median"] == 0.0
    assert out["n_reference"] == 80
    assert out["reference"]["exact_copy_share"] == 0.0
    assert out["reference"]["dcr_share"] == 0.5 and out["reference"]["mia_auc"] == 0.5
    assert out["reference"]["dcr_median"] > 0.5


def test_synthetic_like_holdout_looks_private() -> None:
    rng = np.random.default_rng(1)
    train, holdout = _two_populations(rng)
    fresh = _two_populations(rng)[1]  # new users from the holdout population
    out = privacy_metrics(fresh, train, holdout, np.random.default_rng(3))
    assert out["exact_copy_share"] == 0.0
    assert out["dcr_share"] < 0.1
    assert out["mia_auc"] < 0.1  # non-members are the closer ones here


def test_result_is_json_friendly_and_seeded() -> None:
    rng = np.random.default_rng(2)
    train, holdout = _two_populations(rng)
    syn = _random_binary(rng, 50, 100, 0.08)
    a = privacy_metrics(syn, train, holdout, np.random.default_rng(5))
    b = privacy_metrics(syn, train, holdout, np.random.default_rng(5))
    assert json.dumps(a) == json.dumps(b)
    for value in [*a.values(), *a["reference"].values()]:
        assert value is None or type(value) in (int, float, dict)
    # synthetic row order does not matter
    shuffled = syn[np.random.default_rng(9).permutation(50)]
    assert privacy_metrics(shuffled, train, holdout, np.random.default_rng(5)) == a


def test_fused_sweep_matches_separate_nearest_calls() -> None:
    rng = np.random.default_rng(4)
    train = _random_binary(rng, 40, 15, 0.2)
    holdout = _random_binary(rng, 25, 15, 0.2)
    syn = sp.vstack([_random_binary(rng, 30, 15, 0.2), train[:3]], format="csr")
    out = privacy_metrics(syn, train, holdout, np.random.default_rng(11), chunk_rows=4)
    pick = np.random.default_rng(11)
    train_ref = train[np.sort(pick.choice(40, size=25, replace=False))]
    holdout_ref = holdout[np.sort(pick.choice(25, size=25, replace=False))]
    to_train = nearest_jaccard(syn, train_ref)
    to_hold = nearest_jaccard(syn, holdout_ref)
    members = nearest_jaccard(train_ref, syn).first
    nonmembers = nearest_jaccard(holdout_ref, syn).first
    assert out["exact_copy_share"] == pytest.approx(nearest_jaccard(syn, train).exact.mean())
    assert out["dcr_share"] == pytest.approx(closer_share(to_train.first, to_hold.first))
    assert out["mia_auc"] == pytest.approx(auc(-members, -nonmembers))
    assert out["mia_auc_se"] == pytest.approx(auc_se(-members, -nonmembers))
    assert out["nndr"] == pytest.approx(float(np.median(nndr(to_train))))
    assert out["dcr_median"] == pytest.approx(float(np.median(to_train.first)))
    hold_nn = nearest_jaccard(holdout, train_ref)
    assert out["reference"]["nndr"] == pytest.approx(float(np.median(nndr(hold_nn))))


def test_no_synthetic_users() -> None:
    rng = np.random.default_rng(5)
    train, holdout = _two_populations(rng)
    out = privacy_metrics(sp.csr_matrix((0, 100)), train, holdout, np.random.default_rng(0))
    assert out["exact_copy_share"] is None and out["mia_auc"] is None
    assert out["dcr_share"] is None and out["nndr"] is None
    assert out["exact_copy_share_5plus"] is None and out["n_synthetic_5plus"] == 0


def test_item_count_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError):
        privacy_metrics(_csr([[0]], 2), _csr([[0]], 3), _csr([[0]], 3), np.random.default_rng())


def test_sample_data_split() -> None:
    df = pl.read_parquet(SAMPLE)
    catalog = build_catalog("item_id", df)
    users = df.get_column("user_id").unique().sort().to_numpy()
    rng = np.random.default_rng(0)
    held = set(rng.choice(users, size=60, replace=False).tolist())
    is_held = pl.col("user_id").is_in(list(held))
    train = to_user_items(df.filter(~is_held), "user_id", "item_id", catalog, "train")
    holdout = to_user_items(df.filter(is_held), "user_id", "item_id", catalog, "holdout")
    out = privacy_metrics(train.matrix, train.matrix, holdout.matrix, np.random.default_rng(1))
    assert out["exact_copy_share"] == 1.0
    # the 60 train-ref users tie with themselves at 0; the other 180 are about even
    assert 0.25 + 0.375 * 0.8 < out["dcr_share"] < 0.25 + 0.375 * 1.2
    assert out["mia_auc"] == 1.0  # every member at distance 0, every non-member above
    assert out["n_reference"] == 60
    ref = out["reference"]
    assert ref["exact_copy_share_5plus"] == 0.0
    assert 0.5 < ref["dcr_median"] < 1.0 and 0.0 < ref["nndr"] <= 1.0


def test_roc_curve_spans_the_square_and_its_area_is_the_auc() -> None:
    rng = np.random.default_rng(0)
    members, others = rng.integers(0, 5, 50).astype(float), rng.integers(0, 4, 40).astype(float)
    fpr, tpr = roc_curve(members, others)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert area == pytest.approx(auc(members, others))
    fpr, tpr = roc_curve(np.array([2.0, 3.0]), np.array([0.0, 1.0]))  # perfectly separated
    assert list(zip(fpr, tpr, strict=True)) == [(0.0, 0.0), (0.0, 0.5), (0.0, 1.0), (0.5, 1.0), (1.0, 1.0)]
