"""Known answers for the fidelity figures (GUIDE §3)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from recsynth.matrix import UserItems, build_catalog, to_user_items
from recsynth.metrics.fidelity import (
    cooccurrence_corr,
    fidelity_metrics,
    gini,
    js_counts,
    tvd_counts,
    tvd_values,
)

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "interactions.parquet"
SAMPLE_COLUMNS = {
    "timestamp": "time",
    "quantity": "numeric",
    "unit_price": "numeric",
    "invoice_no": "categorical",
    "country": "categorical",
    "is_cancellation": "categorical",
}


def _score(
    real: pl.DataFrame,
    syn: pl.DataFrame,
    columns: dict[str, str],
    *,
    time_col: str | None = "timestamp",
    user_level: frozenset[str] = frozenset(),
) -> dict:
    catalog = build_catalog("item_id", real)
    return fidelity_metrics(
        real,
        syn,
        to_user_items(real, "user_id", "item_id", catalog, "real"),
        to_user_items(syn, "user_id", "item_id", catalog, "synthetic"),
        user_col="user_id",
        time_col=time_col,
        columns=columns,
        user_level=user_level,
    )


@pytest.fixture(scope="module")
def sample() -> pl.DataFrame:
    return pl.read_parquet(SAMPLE)


def _flat(result: dict) -> list:
    out = []
    for value in result.values():
        if isinstance(value, dict):
            out.extend(_flat(value))
        else:
            out.append(value)
    return out


def test_identical_frames_score_perfectly(sample: pl.DataFrame) -> None:
    out = _score(sample, sample, SAMPLE_COLUMNS, user_level=frozenset({"country"}))
    assert out["activity_ks"] == 0.0
    assert out["activity_mean_real"] == out["activity_mean_synthetic"]
    assert out["item_popularity_tvd"] == 0.0
    assert out["item_popularity_js"] == pytest.approx(0.0, abs=1e-12)
    assert out["item_popularity_gini_real"] == out["item_popularity_gini_synthetic"]
    assert out["inter_event_gap_ks"] == 0.0
    assert out["cooccurrence_corr"] == pytest.approx(1.0)
    for name, col in out["columns"].items():
        assert col["value"] == pytest.approx(0.0, abs=1e-12), name
        assert col["null_rate_real"] == col["null_rate_synthetic"] == 0.0
    metrics = {name: col["metric"] for name, col in out["columns"].items()}
    assert metrics == {
        "timestamp": "ks",
        "quantity": "ks",
        "unit_price": "ks",
        "invoice_no": "tvd",
        "country": "tvd",
        "is_cancellation": "tvd",
    }
    json.dumps(out)
    assert all(v is None or type(v) in (int, float, str) for v in _flat(out))


def test_row_order_changes_nothing(sample: pl.DataFrame) -> None:
    syn = sample.with_columns(
        pl.col("item_id").shift(7).fill_null("POST"), pl.col("quantity") * 2
    ).sample(fraction=0.7, seed=1)
    shuffled_real = sample.sample(fraction=1.0, shuffle=True, seed=2)
    shuffled_syn = syn.sample(fraction=1.0, shuffle=True, seed=3)
    columns = SAMPLE_COLUMNS
    a = _score(sample, syn, columns, user_level=frozenset({"country"}))
    b = _score(shuffled_real, shuffled_syn, columns, user_level=frozenset({"country"}))
    assert a == b
    assert a["activity_ks"] > 0 and a["columns"]["quantity"]["value"] > 0


def test_sample_data_against_a_popularity_sampler(sample: pl.DataFrame) -> None:
    """Users keep their activity, items are drawn by popularity: co-occurrence is lost."""
    rng = np.random.default_rng(0)
    pop = sample.get_column("item_id").value_counts(name="n")
    p = pop.get_column("n").to_numpy() / sample.height
    items = rng.choice(pop.get_column("item_id").to_numpy(), size=sample.height, p=p)
    syn = sample.with_columns(pl.Series("item_id", items))
    out = _score(sample, syn, SAMPLE_COLUMNS)
    assert out["activity_ks"] == 0.0  # same rows per user
    assert 0.0 < out["item_popularity_tvd"] < 0.5
    assert 0.0 < out["item_popularity_js"] < out["item_popularity_tvd"]
    assert out["item_popularity_gini_real"] > 0.3
    assert out["cooccurrence_corr"] < 0.5


def _tiny(users: list[int], items: list[str], ratings: list[int | None]) -> pl.DataFrame:
    start = datetime(2024, 1, 1)
    return pl.DataFrame(
        {
            "user_id": users,
            "item_id": items,
            "rating": ratings,
            "timestamp": [start + timedelta(hours=h) for h in range(len(users))],
        }
    )


def test_hand_computed_tvd_and_null_rates() -> None:
    real = _tiny([1, 1, 2, 2], ["a", "b", "a", "c"], [5, 5, 4, None])
    syn = _tiny([7, 7, 8, 9], ["a", "a", "b", "c"], [5, 4, 4, 3])
    out = _score(real, syn, {"rating": "numeric", "item_id": "categorical"})
    rating = out["columns"]["rating"]
    # real {5: 2/3, 4: 1/3}, synthetic {5: 1/4, 4: 2/4, 3: 1/4}
    assert rating["metric"] == "tvd"
    assert rating["value"] == pytest.approx(0.5 * (5 / 12 + 2 / 12 + 3 / 12))
    assert rating["null_rate_real"] == 0.25 and rating["null_rate_synthetic"] == 0.0
    # item rows: real {a: 2, b: 1, c: 1}, synthetic {a: 2, b: 1, c: 1}
    assert out["columns"]["item_id"]["value"] == 0.0
    # popularity over users (binarised): real a 2, b 1, c 1; synthetic a 1, b 1, c 1
    assert out["item_popularity_tvd"] == pytest.approx(0.5 * (1 / 6 + 1 / 12 + 1 / 12))
    # activity: real (2, 2), synthetic (2, 1, 1)
    assert out["activity_ks"] == pytest.approx(2 / 3)
    assert out["activity_mean_synthetic"] == pytest.approx(4 / 3)
    assert out["inter_event_gap_ks"] is None  # one gap per side is too few
    assert out["cooccurrence_corr"] is None  # two pairs are too few


def test_user_level_columns_count_each_user_once() -> None:
    real = pl.DataFrame(
        {"user_id": [1, 1, 1, 1, 2], "item_id": list("abcda"), "country": ["DE"] * 4 + ["FR"]}
    )
    syn = pl.DataFrame({"user_id": [5, 6], "item_id": ["a", "b"], "country": ["DE", "FR"]})
    per_user = _score(
        real, syn, {"country": "categorical"}, time_col=None, user_level=frozenset({"country"})
    )
    per_row = _score(real, syn, {"country": "categorical"}, time_col=None)
    assert per_user["columns"]["country"]["value"] == 0.0
    assert per_row["columns"]["country"]["value"] == pytest.approx(0.3)
    assert per_user["inter_event_gap_ks"] is None


def test_many_valued_numeric_uses_ks_and_nan_counts_as_missing() -> None:
    values = np.arange(40, dtype=np.float64)
    real = pl.DataFrame({"user_id": np.arange(40), "item_id": ["a"] * 40, "x": values})
    syn = real.with_columns(
        pl.when(pl.col("user_id") < 4).then(float("nan")).otherwise(pl.col("x") + 100).alias("x")
    )
    out = _score(real, syn, {"x": "numeric"}, time_col=None)["columns"]["x"]
    assert out == {"metric": "ks", "value": 1.0, "null_rate_real": 0.0, "null_rate_synthetic": 0.1}


def test_inter_event_gaps() -> None:
    start = datetime(2024, 1, 1)

    def log(step_hours: float) -> pl.DataFrame:
        rows = [(u, start + timedelta(hours=step_hours * k)) for u in range(5) for k in range(4)]
        return pl.DataFrame(
            {
                "user_id": [u for u, _ in rows],
                "item_id": ["a"] * 20,
                "timestamp": [t for _, t in rows],
            }
        )

    assert _score(log(1), log(1), {})["inter_event_gap_ks"] == 0.0
    assert _score(log(1), log(2), {})["inter_event_gap_ks"] == 1.0
    assert _score(log(1), log(1), {})["user_span_ks"] == 0.0
    assert _score(log(1), log(2), {})["user_span_ks"] == 1.0


def test_user_spans_differ_where_pooled_gaps_agree() -> None:
    """Real users keep a tempo (gaps of 1 h or of 9 h); synthetic ones mix both: the pooled
    gaps are identical, each user's span from first to last event is not."""
    start = datetime(2024, 1, 1)

    def log(gaps_per_user: list[tuple[int, int]]) -> pl.DataFrame:
        users, times = [], []
        for u, gaps in enumerate(gaps_per_user):
            offsets = np.cumsum([0, *gaps])
            users += [u] * 3
            times += [start + timedelta(hours=int(h)) for h in offsets]
        return pl.DataFrame({"user_id": users, "item_id": ["a"] * len(users),
                             "timestamp": times})

    out = _score(log([(1, 1)] * 4 + [(9, 9)] * 4), log([(1, 9)] * 8), {})
    assert out["inter_event_gap_ks"] == 0.0
    assert out["user_span_ks"] == 0.5  # spans 2 h and 18 h against 10 h for all


def test_distribution_helpers() -> None:
    assert tvd_counts(np.array([1, 0]), np.array([0, 3])) == 1.0
    assert tvd_counts(np.array([0, 0]), np.array([1, 1])) is None
    assert js_counts(np.array([1, 0]), np.array([0, 1])) == pytest.approx(1.0)
    assert js_counts(np.array([2, 2]), np.array([1, 1])) == pytest.approx(0.0)
    assert gini(np.array([3, 3, 3])) == 0.0
    assert gini(np.array([0, 0, 0, 8])) == pytest.approx(0.75)
    assert tvd_values(pl.Series(["x", "y"]), pl.Series(["y", "y"])) == 0.5
    assert tvd_values(pl.Series([], dtype=pl.String), pl.Series(["y"])) is None


def test_cooccurrence_follows_pairs() -> None:
    rng = np.random.default_rng(0)
    real = sp.csr_matrix((rng.random((200, 30)) < 0.2).astype(np.float32))
    assert cooccurrence_corr(real, real) == pytest.approx(1.0)
    shuffled = sp.csr_matrix(rng.permuted(real.toarray(), axis=0))  # columns independent
    assert cooccurrence_corr(real, shuffled) < 0.9
    assert cooccurrence_corr(real, sp.csr_matrix((5, 30))) == 0.0


def test_catalog_mismatch_is_an_error() -> None:
    a = UserItems(pl.Series([1]), sp.csr_matrix(np.ones((1, 2), dtype=np.float32)))
    b = UserItems(pl.Series([1]), sp.csr_matrix(np.ones((1, 3), dtype=np.float32)))
    frame = pl.DataFrame({"user_id": [1], "item_id": ["a"]})
    with pytest.raises(ValueError):
        fidelity_metrics(frame, frame, a, b, user_col="user_id", time_col=None, columns={})
