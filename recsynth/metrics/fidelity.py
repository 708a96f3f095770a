"""Fidelity of a synthetic log to the real one (GUIDE §3): marginals, activity, popularity,
timing and item co-occurrence.

KS statistics and total variation distances lie in [0, 1], 0 meaning identical. Every
figure is a plain python float or None (not computable, e.g. an empty side), so the result
serialises to JSON as is. Nothing here depends on the row order of the inputs.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp

from recsynth.matrix import UserItems
from recsynth.schema import user_value

KINDS = ("numeric", "categorical", "time")
# Numeric columns with at most this many distinct real values (ratings 1-5, small counts)
# are compared as categories: KS on a handful of atoms mostly measures the ties.
MAX_DISCRETE_VALUES = 20
# Fewer inter-event gaps than this on either side make the gap KS meaningless.
MIN_GAPS = 5
COOCCURRENCE_ITEMS = 2000
COOCCURRENCE_PAIRS = 1000
MIN_COOCCURRENCE_PAIRS = 10


@dataclass(frozen=True)
class ColumnValues:
    """One compared column's non-missing values per side (one per user for attributes)."""

    kind: str  # "numeric", "categorical" or "time"
    metric: str  # "ks" (continuous) or "tvd" (compared as categories)
    real: pl.Series
    synthetic: pl.Series


@dataclass(frozen=True)
class FidelityDistributions:
    """The raw distributions behind the fidelity figures, for plots (never in the JSON).

    Activity is rows per user, popularity users per item (aligned on the catalog), gaps
    seconds between a user's consecutive events (None without a time column), and
    `cooccurrence` the real and synthetic rates of the frequent real pairs (None when
    there are too few pairs).
    """

    activity_real: np.ndarray
    activity_synthetic: np.ndarray
    popularity_real: np.ndarray
    popularity_synthetic: np.ndarray
    gaps_real: np.ndarray | None = None
    gaps_synthetic: np.ndarray | None = None
    cooccurrence: tuple[np.ndarray, np.ndarray] | None = None
    columns: dict[str, ColumnValues] = field(default_factory=dict)


def fidelity_metrics(*args: Any, **kwargs: Any) -> dict:
    """The figures of `fidelity_metrics_with_distributions` (same arguments) alone."""
    return fidelity_metrics_with_distributions(*args, **kwargs)[0]


def fidelity_metrics_with_distributions(
    real: pl.DataFrame,
    synthetic: pl.DataFrame,
    real_ui: UserItems,
    syn_ui: UserItems,
    *,
    user_col: str,
    time_col: str | None,
    columns: dict[str, str],
    user_level: Collection[str] = frozenset(),
) -> tuple[dict, FidelityDistributions]:
    """Distribution distances between a real and a synthetic interaction log.

    `columns` maps each compared column (present in both frames) to "numeric",
    "categorical" or "time"; those named in `user_level` are user attributes, compared
    one value per user rather than once per interaction row. `real_ui` and `syn_ui` must
    share one item catalog.
    """
    if real_ui.n_items != syn_ui.n_items:
        raise ValueError(f"catalogs differ: {real_ui.n_items} vs {syn_ui.n_items} items")
    act_real = _activity(real, user_col)
    act_syn = _activity(synthetic, user_col)
    pop_real = _column_sums(real_ui.matrix)
    pop_syn = _column_sums(syn_ui.matrix)
    sides = [(None, None)] * 2 if time_col is None else [
        _gaps_and_spans(frame, user_col, time_col) for frame in (real, synthetic)]
    gaps, spans = zip(*sides, strict=True)  # (real, synthetic) each
    rates = cooccurrence_rates(real_ui.matrix, syn_ui.matrix)
    values = {name: _column_values(real, synthetic, name, kind, user_col, name in user_level)
              for name, kind in columns.items()}
    figures = {
        "activity_ks": ks(act_real, act_syn),
        "activity_mean_real": _mean(act_real),
        "activity_mean_synthetic": _mean(act_syn),
        "item_popularity_tvd": tvd_counts(pop_real, pop_syn),
        "item_popularity_js": js_counts(pop_real, pop_syn),
        "item_popularity_gini_real": gini(pop_real),
        "item_popularity_gini_synthetic": gini(pop_syn),
        "inter_event_gap_ks": _gap_ks(*gaps),
        "user_span_ks": _gap_ks(*spans),
        "cooccurrence_corr": _rates_corr(rates),
        "columns": {name: _column_metric(*v) for name, v in values.items()},
    }
    dists = FidelityDistributions(
        act_real, act_syn, pop_real, pop_syn, *gaps,
        cooccurrence=None if isinstance(rates, str) else rates,
        columns={name: v[0] for name, v in values.items()})
    return figures, dists


# --- distances ---------------------------------------------------------------------------


def ks(x: np.ndarray, y: np.ndarray) -> float | None:
    """Two-sample Kolmogorov-Smirnov statistic; None when a side is empty."""
    if len(x) == 0 or len(y) == 0:
        return None
    return float(ks_2samp(x, y).statistic)


def tvd_counts(p: np.ndarray, q: np.ndarray) -> float | None:
    """Total variation distance between two aligned count vectors, after normalising."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.sum() <= 0 or q.sum() <= 0:
        return None
    return float(0.5 * np.abs(p / p.sum() - q / q.sum()).sum())


def js_counts(p: np.ndarray, q: np.ndarray) -> float | None:
    """Jensen-Shannon divergence (base 2, so within [0, 1]) of two aligned count vectors."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.sum() <= 0 or q.sum() <= 0:
        return None
    # scipy returns the JS *distance*, the square root of the divergence.
    return float(min(1.0, max(0.0, jensenshannon(p, q, base=2) ** 2)))


def gini(counts: np.ndarray) -> float | None:
    """Gini coefficient of counts: 0 all equal, towards 1 when a few items take everything."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = len(x), x.sum()
    if n == 0 or total <= 0:
        return None
    ranks = np.arange(1, n + 1)
    return float(((2 * ranks - n - 1) * x).sum() / (n * total))


def tvd_values(x: pl.Series, y: pl.Series) -> float | None:
    """Total variation distance between the empirical distributions of two value series."""
    if len(x) == 0 or len(y) == 0:
        return None
    px = x.rename("v").value_counts(name="p")
    py = y.rename("v").value_counts(name="q")
    # Sorted so the float sum, hence the last bits, do not depend on row order.
    both = px.join(py, on="v", how="full", coalesce=True).fill_null(0).sort("v")
    return tvd_counts(both.get_column("p").to_numpy(), both.get_column("q").to_numpy())


# --- activity, popularity, co-occurrence -------------------------------------------------


def _activity(df: pl.DataFrame, user_col: str) -> np.ndarray:
    """Interaction rows per user."""
    return df.group_by(user_col).agg(pl.len().alias("n")).get_column("n").to_numpy()


def _mean(x: np.ndarray) -> float | None:
    return float(np.mean(x)) if len(x) else None


def _column_sums(matrix: sp.spmatrix) -> np.ndarray:
    """Users per item (binary matrix), whatever values the matrix holds."""
    m = sp.csr_matrix(matrix)
    return np.bincount(m.indices[m.data != 0], minlength=m.shape[1]).astype(np.float64)


def cooccurrence_corr(real: sp.spmatrix, synthetic: sp.spmatrix) -> float | None:
    """Pearson correlation of co-occurrence rates on the real log's most frequent item pairs.

    None with fewer than `MIN_COOCCURRENCE_PAIRS` pairs, or when the real rates are all
    equal (no signal to follow); 0.0 when the synthetic rates are all equal.
    """
    return _rates_corr(cooccurrence_rates(real, synthetic))


def _rates_corr(rates: tuple[np.ndarray, np.ndarray] | str) -> float | None:
    if isinstance(rates, str):
        return None
    rate_real, rate_syn = rates
    if np.ptp(rate_real) == 0:
        return None
    if np.ptp(rate_syn) == 0:
        return 0.0
    return float(np.corrcoef(rate_real, rate_syn)[0, 1])


def cooccurrence_rates(
    real: sp.spmatrix, synthetic: sp.spmatrix
) -> tuple[np.ndarray, np.ndarray] | str:
    """Real and synthetic co-occurrence rates of the real log's most frequent item pairs.

    A pair co-occurs when one user has both items; its rate is the count over the number
    of users. Pairs come from the `COOCCURRENCE_ITEMS` most popular real items (to bound the
    item x item product), top `COOCCURRENCE_PAIRS` by real count, ties by item position.
    A string saying why instead when a side is empty or there are fewer than
    `MIN_COOCCURRENCE_PAIRS` pairs.
    """
    real, synthetic = _binary(real), _binary(synthetic)
    if real.shape[0] == 0 or synthetic.shape[0] == 0:
        return "a side has no users"
    pop = np.bincount(real.indices, minlength=real.shape[1])
    top = np.sort(np.argsort(-pop, kind="stable")[:COOCCURRENCE_ITEMS])
    top = top[pop[top] > 0]
    r = real[:, top]
    co = sp.triu(r.T @ r, k=1).tocoo()
    keep = co.data > 0
    i, j, count = co.row[keep], co.col[keep], co.data[keep]
    if len(count) < MIN_COOCCURRENCE_PAIRS:
        return f"fewer than {MIN_COOCCURRENCE_PAIRS} co-occurring pairs"
    k = min(COOCCURRENCE_PAIRS, len(count))
    cut = np.partition(count, len(count) - k)[len(count) - k]
    cand = count >= cut  # everything that can make the top k, ties included
    i, j, count = i[cand], j[cand], count[cand]
    order = np.lexsort((j, i, -count))[:k]
    i, j = i[order], j[order]
    rate_real = count[order] / real.shape[0]
    s = synthetic[:, top]
    s_co = (s.T @ s).tocsr()
    rate_syn = np.asarray(s_co[i, j], dtype=np.float64).ravel() / synthetic.shape[0]
    return rate_real, rate_syn


def _binary(matrix: sp.spmatrix) -> sp.csr_matrix:
    m = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    m.eliminate_zeros()
    m.data[:] = 1.0
    return m


# --- timing --------------------------------------------------------------------------------


def epoch_seconds(s: pl.Series) -> pl.Series:
    """Seconds since 1970 as Float64 (Datetime, Date, or already-numeric columns)."""
    dtype = s.dtype
    if dtype == pl.Date:
        s, dtype = s.cast(pl.Datetime("us")), pl.Datetime("us")
    if isinstance(dtype, pl.Datetime):
        return s.dt.epoch("us").cast(pl.Float64) / 1e6
    if dtype.is_numeric():
        return s.cast(pl.Float64)
    raise ValueError(f"column {s.name!r} ({dtype}) is not a date, datetime or number")


def _gaps_and_spans(df: pl.DataFrame, user_col: str, time_col: str
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Seconds between consecutive events of the same user, pooled over users; and from
    each user's first event to their last, for users with two or more (pooled gaps can
    match while every synthetic history lasts days and the real ones an evening)."""
    t = (
        df.select(pl.col(user_col), epoch_seconds(df.get_column(time_col)).alias("__t"))
        .drop_nulls("__t")
        .sort([user_col, "__t"])
    )
    gaps = t.select(pl.col("__t").diff().over(user_col).alias("gap")).get_column("gap")
    per_user = t.group_by(user_col).agg((pl.col("__t").max() - pl.col("__t").min())
                                        .alias("span"), pl.len().alias("n"))
    spans = per_user.filter(pl.col("n") >= 2).get_column("span").to_numpy()
    return gaps.drop_nulls().to_numpy(), spans


def _gap_ks(g_real: np.ndarray | None, g_syn: np.ndarray | None) -> float | None:
    """KS of gaps (or spans) where each side has at least MIN_GAPS of them."""
    if g_real is None or g_syn is None:
        return None
    if len(g_real) < MIN_GAPS or len(g_syn) < MIN_GAPS:
        return None
    return ks(g_real, g_syn)


# --- per-column marginals ---------------------------------------------------------------


def _column_values(
    real: pl.DataFrame,
    synthetic: pl.DataFrame,
    name: str,
    kind: str,
    user_col: str,
    per_user: bool,
) -> tuple[ColumnValues, pl.Series, pl.Series]:
    """The non-missing values per side, how they are compared, and the missing masks."""
    if kind not in KINDS:
        raise ValueError(f"column {name!r}: kind {kind!r} is not one of {KINDS}")
    r = _unit_values(real, name, user_col, per_user)
    s = _unit_values(synthetic, name, user_col, per_user)
    r_missing, s_missing = _missing(r), _missing(s)
    r, s = r.filter(~r_missing), s.filter(~s_missing)
    continuous = kind == "time" or (kind == "numeric" and r.n_unique() > MAX_DISCRETE_VALUES)
    return ColumnValues(kind, "ks" if continuous else "tvd", r, s), r_missing, s_missing


def _column_metric(values: ColumnValues, r_missing: pl.Series, s_missing: pl.Series) -> dict:
    r, s = values.real, values.synthetic
    if values.kind == "time":
        value = ks(epoch_seconds(r).to_numpy(), epoch_seconds(s).to_numpy())
    elif values.metric == "ks":
        value = ks(r.cast(pl.Float64).to_numpy(), s.cast(pl.Float64).to_numpy())
    elif values.kind == "numeric":
        value = tvd_values(r.cast(pl.Float64), s.cast(pl.Float64))
    else:
        value = tvd_values(r.cast(pl.String), s.cast(pl.String))
    return {
        "metric": values.metric,
        "value": value,
        "null_rate_real": _rate(r_missing),
        "null_rate_synthetic": _rate(s_missing),
    }


def _unit_values(df: pl.DataFrame, name: str, user_col: str, per_user: bool) -> pl.Series:
    """The column per row, or one value per user for user attributes (`user_value`)."""
    if not per_user:
        return df.get_column(name)
    agg = df.group_by(user_col).agg(user_value(name))
    return agg.get_column(name)


def _missing(s: pl.Series) -> pl.Series:
    """Null, or NaN for floats: both mean "no value" for a marginal."""
    missing = s.is_null()
    if s.dtype.is_float():
        missing = missing | s.is_nan().fill_null(True)
    return missing


def _rate(mask: pl.Series) -> float | None:
    return float(mask.mean()) if len(mask) else None
