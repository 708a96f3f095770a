"""One output column each: how its values are drawn from the row model's statistics, and
how those statistics are stored (scalar parameters in the manifest, tables as Parquet).
See `rowmodel` for which part a column gets."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import polars as pl

from recsynth.rowvalues import (
    GLOBAL_GRID,
    GLOBAL_KNOTS,
    ITEM_KNOTS,
    MAX_RATING_LEVELS,
    MIN_ITEM_VALUES,
    PRIOR,
    Counts,
    Sampler,
    from_float,
    from_physical,
    inverse_cdf,
    item_knots,
    levels_and_codes,
    null_series,
    quantile_knots,
    require_columns,
    snap_to_grid,
    to_float,
)

MIN_FALLBACK_VALUES = 100
ATOM_REPEATS = 5
MIN_HALF_RATINGS = 5
SEPARATORS = ("-", "~", "#", ":", "|", "/", "_", "+", "=", ".")


# ------------------------------------------------------------------ sampled batch

@dataclass(frozen=True, eq=False)
class Batch:
    """Rows of one sample() call after the within-user shuffle, plus shared draws."""

    users: np.ndarray
    items: np.ndarray
    liked: np.ndarray | None
    user_keys: pl.Series
    first: np.ndarray
    new_session: np.ndarray
    times: np.ndarray | None
    user_values: pl.DataFrame | None
    first_user: int = 0  # run-wide index of this batch's user 0: ids unique across batches

    @property
    def size(self) -> int:
        return int(self.items.size)


# ------------------------------------------------------------------ column parts

class Part:
    """One output column: how its values are drawn and how its statistics are stored."""

    kind: ClassVar[str] = ""
    name: str
    dtype: pl.DataType

    @classmethod
    def restore(cls, name: str, dtype: pl.DataType, meta: dict, tables: dict,
                ctx: Context) -> Part:
        """Parts that store nothing beyond their name and dtype; others override this."""
        return cls(name, dtype)  # type: ignore[call-arg]

    def sample(self, batch: Batch, rng: np.random.Generator) -> pl.Series:
        raise NotImplementedError

    def meta(self) -> dict[str, Any]:
        return {}

    def tables(self) -> dict[str, pl.DataFrame]:
        return {}


@dataclass(frozen=True, eq=False)
class Context:
    """What parts need at load time besides their own JSON and tables."""

    items: pl.DataFrame
    n_items: int
    like_threshold: float | None


@dataclass(frozen=True, eq=False)
class Nulls(Part):
    kind: ClassVar[str] = "nulls"
    name: str
    dtype: pl.DataType

    def sample(self, batch: Batch, rng: np.random.Generator) -> pl.Series:
        return null_series(self.name, self.dtype, batch.size)


@dataclass(frozen=True, eq=False)
class UserKey(Part):
    kind: ClassVar[str] = "user_key"
    name: str
    dtype: pl.DataType

    def sample(self, batch: Batch, rng: np.random.Generator) -> pl.Series:
        keys = batch.user_keys.gather(batch.users).alias(self.name)
        if keys.dtype == self.dtype:
            return keys
        try:
            return keys.cast(self.dtype)
        except pl.exceptions.PolarsError:
            raise ValueError(f"user keys of dtype {keys.dtype} cannot be cast to the real "
                             f"user key dtype {self.dtype}") from None


@dataclass(frozen=True, eq=False)
class ItemValue(Part):
    """The item key and every item-level column: the catalog item's own value."""

    kind: ClassVar[str] = "item_value"
    name: str
    dtype: pl.DataType
    values: pl.Series

    def sample(self, batch: Batch, rng: np.random.Generator) -> pl.Series:
        return self.values.gather(batch.items).alias(self.name)

    @classmethod
    def restore(cls, name: str, dtype: pl.DataType, meta: dict, tables: dict,
                ctx: Context) -> ItemValue:
        if name not in ctx.items.columns:
            raise ValueError(f"items.parquet: column {name!r} is missing")
        return cls(name, dtype, ctx.items.get_column(name).cast(dtype))


@dataclass(frozen=True, eq=False)
class UserValue(Part):
    kind: ClassVar[str] = "user_value"
    name: str
    dtype: pl.DataType

    def sample(self, batch: Batch, rng: np.random.Generator) -> pl.Series:
        assert batch.user_values is not None
        return batch.user_values.get_column(self.name).gather(batch.users).alias(self.name)


@dataclass(frozen=True, eq=False)
class Timestamp(Part):
    kind: ClassVar[str] = "timestamp"
    name: str
    dtype: pl.DataType
    null_rate: float = 0.0  # share of real rows without a time: as many rows come out null

    def sample(self, batch: Batch, rng: np.random.Generator) -> pl.Series:
        assert batch.times is not None
        times = from_physical(self.name, batch.times, self.dtype)
        if self.null_rate > 0.0:  # no draw otherwise: logs without null times keep their bytes
            times = times.scatter(np.flatnonzero(rng.random(batch.size) < self.null_rate), None)
        return times

    def meta(self) -> dict[str, Any]:
        return {"null_rate": self.null_rate}

    @classmethod
    def restore(cls, name: str, dtype: pl.DataType, meta: dict, tables: dict,
                ctx: Context) -> Timestamp:
        return cls(name, dtype, float(meta.get("null_rate", 0.0)))  # absent: earlier models


@dataclass(frozen=True, eq=False)
class NewId(Part):
    """Fresh ids per session (level row) or per user (level user); never a real value.

    Strings are the user key, `sep` (which no real value contains) and the session number.
    Numbers start above the real maximum and are numbered by the user's run-wide index, so
    every batch and every part file gets its own: user u's sessions are
    base + u·stride + (0, 1, …), where stride (a power of ten) is at least 4× the most ids
    one real user holds; a user with more sessions than that shares the last one.
    """

    kind: ClassVar[str] = "new_id"
    name: str
    dtype: pl.DataType
    per_user: bool
    sep: str | None
    base: int
    stride: int = 1

    @classmethod
    def fit(cls, s: pl.Series, per_user: bool, per_real_user: int = 1) -> Part:
        """`per_real_user`: the most distinct values one real user holds; 0 where every
        synthetic user has one session (no timestamp), so ids are base + u, as dense as
        they can be (an Int32 column holds 2 M users at stride 1000)."""
        if s.dtype in (pl.String, pl.Categorical):
            text = s.cast(pl.String).drop_nulls()
            return cls(s.name, s.dtype, per_user, _unused_separator(text), 0)
        if not s.dtype.is_numeric():
            return Nulls(s.name, s.dtype)
        if s.dtype.is_integer():  # exactly: float64 loses integers past 2^53
            top = s.max()
            top = 0 if top is None else int(top)
        else:
            values = to_float(s)
            values = values[np.isfinite(values)]
            top = int(np.floor(values.max())) if values.size else 0
        stride = 1 if per_user or per_real_user < 1 else _stride(per_real_user)
        return cls(s.name, s.dtype, per_user, None, top + 1, stride)

    def sample(self, batch: Batch, rng: np.random.Generator) -> pl.Series:
        if self.per_user:
            return self._per_user(batch)
        ordinal = np.cumsum(batch.new_session) - 1
        first_of_user = np.maximum.accumulate(np.where(batch.first, ordinal, 0))
        number = ordinal - first_of_user  # the session's number within its user, from 0
        if self.sep is None:
            user = batch.first_user + batch.users
            return self._numbers(user, np.minimum(number, self.stride - 1))
        heads = np.flatnonzero(batch.new_session)
        frame = pl.DataFrame({"k": batch.user_keys.cast(pl.String).gather(batch.users[heads]),
                              "n": number[heads] + 1})
        ids = frame.select(pl.concat_str("k", pl.lit(self.sep), "n")).to_series()
        return ids.gather(ordinal).cast(self.dtype).alias(self.name)

    def _per_user(self, batch: Batch) -> pl.Series:
        if self.sep is None:
            return self._numbers(batch.first_user + batch.users, np.zeros(batch.size, np.int64))
        text = batch.user_keys.cast(pl.String) + f"{self.sep}u"
        return text.gather(batch.users).cast(self.dtype).alias(self.name)

    def _numbers(self, user: np.ndarray, number: np.ndarray) -> pl.Series:
        """base + user·stride + number, exact beyond int64 (UInt64 ids); values the dtype
        cannot hold (a tiny integer dtype) become null rather than wrap around."""
        offsets = user.astype(np.int64) * self.stride + number
        if self.base + int(offsets.max(initial=0)) < 2**63:
            values = pl.Series(self.name, offsets + self.base, dtype=pl.Int64)
        else:  # UInt64 ids: past 2^64 - 1 they would wrap onto real ids
            fits = offsets <= min(2**64 - 1 - self.base, 2**63 - 1)
            values = pl.Series(self.name, np.where(fits, offsets, 0).astype(np.uint64)
                               + np.uint64(self.base), dtype=pl.UInt64)
            values = values.scatter(np.flatnonzero(~fits), None)
        return values.cast(self.dtype, strict=False)

    def meta(self) -> dict[str, Any]:
        return {"per_user": self.per_user, "sep": self.sep, "base": self.base,
                "stride": self.stride}

    @classmethod
    def restore(cls, name: str, dtype: pl.DataType, meta: dict, tables: dict,
                ctx: Context) -> NewId:
        stride = int(meta.get("stride", 1 if meta["per_user"] else OLD_STRIDE))
        return cls(name, dtype, bool(meta["per_user"]), meta["sep"], int(meta["base"]), stride)


OLD_STRIDE = 1000  # models saved before the stride was: ids per user, numbered afresh


def _stride(per_real_user: int) -> int:
    """The smallest power of ten (at least 10) that is at least 4x `per_real_user`."""
    stride = 10
    while stride < 4 * per_real_user:
        stride *= 10
    return stride


def _unused_separator(text: pl.Series) -> str:
    """A separator no value of `text` contains: one character if one is free, else
    '-s-', '-s1-', '-s2-', …"""
    def free(sep: str) -> bool:
        return not text.str.contains(sep, literal=True).any()

    for sep in SEPARATORS:
        if free(sep):
            return sep
    n = 0
    while not free(sep := f"-s{n or ''}-"):
        n += 1
    return sep


@dataclass(frozen=True, eq=False)
class Categorical(Part):
    """Item value counts smoothed towards global counts (also discrete numerics, booleans)."""

    kind: ClassVar[str] = "categorical"
    name: str
    dtype: pl.DataType
    levels: pl.Series
    counts: Counts

    @classmethod
    def fit(cls, s: pl.Series, items: np.ndarray, n_items: int) -> Categorical:
        levels, codes = levels_and_codes(s)
        return cls(s.name, s.dtype, levels, Counts.fit(items, codes, len(levels), n_items))

    @cached_property
    def _full(self) -> Sampler:
        return Sampler.build(self.counts)

    def sample(self, batch: Batch, rng: np.random.Generator) -> pl.Series:
        sampler = self._full
        if sampler.empty:
            return null_series(self.name, self.dtype, batch.size)
        return self.levels.gather(sampler.draw(batch.items, rng, 1)).alias(self.name)

    def tables(self) -> dict[str, pl.DataFrame]:
        levels = pl.DataFrame({"value": self.levels, "global_count": self.counts.global_count})
        return {"levels": levels, "counts": self.counts.table()}

    @classmethod
    def restore(cls, name: str, dtype: pl.DataType, meta: dict, tables: dict,
                ctx: Context) -> Categorical:
        levels, counts = read_counts(name, tables, dtype, ctx.n_items)
        return cls(name, dtype, levels, counts)


@dataclass(frozen=True, eq=False)
class Rating(Categorical):
    """Categorical over rating values, restricted to the liked or disliked half on demand."""

    kind: ClassVar[str] = "rating"
    threshold: float | None = None

    @classmethod
    def fit_rating(cls, s: pl.Series, items: np.ndarray, n_items: int,
                   threshold: float | None) -> Rating:
        if s.dtype.is_numeric() and s.drop_nulls().n_unique() > MAX_RATING_LEVELS:
            s = snap_to_grid(s)
        base = Categorical.fit(s, items, n_items)
        return cls(base.name, base.dtype, base.levels, base.counts, threshold)

    @cached_property
    def _halves(self) -> tuple[Sampler, Sampler]:
        value = to_float(self.levels)
        assert self.threshold is not None
        with np.errstate(invalid="ignore"):
            liked = value >= self.threshold
            disliked = ~liked  # null and NaN too: fit put their rows in the other channel
        return (Sampler.build(self.counts.restrict(liked)),
                Sampler.build(self.counts.restrict(disliked)))

    def sample(self, batch: Batch, rng: np.random.Generator) -> pl.Series:
        if batch.liked is None or self.threshold is None:
            return super().sample(batch, rng)
        full = self._full
        if full.empty:
            return null_series(self.name, self.dtype, batch.size)
        codes = np.empty(batch.size, dtype=np.int64)
        for mask, half in zip((batch.liked, ~batch.liked), self._halves, strict=True):
            rows = np.flatnonzero(mask)
            sampler, least = (full, 1) if half.empty else (half, MIN_HALF_RATINGS)
            codes[rows] = sampler.draw(batch.items[rows], rng, least)
        return self.levels.gather(codes).alias(self.name)

    def meta(self) -> dict[str, Any]:
        return {"threshold": self.threshold}

    @classmethod
    def restore(cls, name: str, dtype: pl.DataType, meta: dict, tables: dict,
                ctx: Context) -> Rating:
        levels, counts = read_counts(name, tables, dtype, ctx.n_items)
        threshold = meta.get("threshold")
        return cls(name, dtype, levels, counts, None if threshold is None else float(threshold))


def read_counts(name: str, tables: dict[str, pl.DataFrame], dtype: pl.DataType,
                n_items: int) -> tuple[pl.Series, Counts]:
    levels, table = tables["levels"], tables["counts"]
    require_columns(levels, ("value", "global_count"), f"column {name!r} levels")
    require_columns(table, ("item", "code", "count"), f"column {name!r} counts")
    n_levels = levels.height
    item, code, count = (table.get_column(c).cast(pl.Int64).to_numpy() for c in
                         ("item", "code", "count"))
    key = item * max(n_levels, 1) + code
    if table.height and (item.min() < 0 or item.max() >= n_items or code.min() < 0
                         or code.max() >= n_levels or count.min() < 1
                         or np.any(np.diff(key) <= 0)):
        raise ValueError(f"column {name!r}: counts table is inconsistent with its levels "
                         "or the catalog")
    global_count = levels.get_column("global_count").cast(pl.Int64).to_numpy()
    return (levels.get_column("value").cast(dtype),
            Counts(item, code, count, global_count, n_items))


@dataclass(frozen=True, eq=False)
class Numeric(Part):
    """Inverse CDF through per-item (or fallback) quantile knots, with a per-item null rate.

    Columns whose values repeat a lot (prices, counts) are "atomic": knots are real values
    (nearest rank) and a draw lands on one of the two knots around it (randomised rounding),
    which keeps the atoms that linear interpolation would smear out. Other columns use
    linear quantiles and linear interpolation. An item with n < MIN_ITEM_VALUES values
    draws from its own knots with probability n / (n + PRIOR), as categorical counts are
    smoothed, else from fallback knots over the rows of such items, because rare items
    differ from popular ones (on sample_data, global knots there cost 0.04 of KS on
    unit_price). Models saved before rare items had knots use the fallback alone.
    """

    kind: ClassVar[str] = "numeric"
    name: str
    dtype: pl.DataType
    atomic: bool
    n: np.ndarray
    n_null: np.ndarray
    knots: np.ndarray
    global_knots: np.ndarray
    global_null: float

    @classmethod
    def fit(cls, s: pl.Series, items: np.ndarray, n_items: int) -> Numeric:
        v = to_float(s)
        ok = np.isfinite(v)
        known = items >= 0
        n = np.bincount(items[known & ok], minlength=n_items)
        n_null = np.bincount(items[known & ~ok], minlength=n_items)
        finite = v[ok]
        atomic = bool(finite.size) and np.unique(finite).size * ATOM_REPEATS <= finite.size
        knots = item_knots(v[known & ok], items[known & ok], n, atomic)
        rich_row = known & (n[np.maximum(items, 0)] >= MIN_ITEM_VALUES)
        pool = v[ok & ~rich_row]
        if pool.size < MIN_FALLBACK_VALUES:
            pool = finite
        global_knots = quantile_knots(np.sort(pool)[None, :], np.array([pool.size]), GLOBAL_GRID,
                                      atomic)[0] if pool.size else np.empty(0)
        global_null = float(1.0 - ok.mean()) if v.size else 0.0
        return cls(s.name, s.dtype, atomic, n, n_null, knots, global_knots, global_null)

    def sample(self, batch: Batch, rng: np.random.Generator) -> pl.Series:
        items = batch.items
        u = rng.random((3, items.size))
        if self.global_knots.size == 0:
            return null_series(self.name, self.dtype, batch.size)
        values = inverse_cdf(self.global_knots[None, :], np.zeros(items.size, np.int64),
                             u[1], u[2], self.atomic)
        weight = np.where(self.n >= MIN_ITEM_VALUES, 1.0, self.n / (self.n + PRIOR))
        if self._rare_knots:  # an extra draw only then: older models keep their bytes
            own = np.flatnonzero(rng.random(items.size) < weight[items])
        else:
            own = np.flatnonzero(weight[items] == 1.0)
        if own.size:
            values[own] = inverse_cdf(self.knots, items[own], u[1, own], u[2, own],
                                      self.atomic)
        total = self.n[items] + self.n_null[items]
        null_rate = (self.n_null[items] + PRIOR * self.global_null) / (total + PRIOR)
        values[u[0] < null_rate] = np.nan
        return from_float(self.name, values, self.dtype)

    @cached_property
    def _rare_knots(self) -> bool:
        """Whether some item under MIN_ITEM_VALUES has its own knots (newer models)."""
        rare = (self.n > 0) & (self.n < MIN_ITEM_VALUES)
        return bool(np.isfinite(self.knots[rare, 0]).any())

    def meta(self) -> dict[str, Any]:
        return {"atomic": self.atomic, "global_knots": self.global_knots.tolist(),
                "global_null": self.global_null}

    def tables(self) -> dict[str, pl.DataFrame]:
        cols: dict[str, Any] = {"n": self.n.astype(np.int64),
                                "n_null": self.n_null.astype(np.int64)}
        for k in range(ITEM_KNOTS):
            cols[f"k{k:02d}"] = pl.Series(self.knots[:, k], dtype=pl.Float64, nan_to_null=True)
        return {"items": pl.DataFrame(cols)}

    @classmethod
    def restore(cls, name: str, dtype: pl.DataType, meta: dict, tables: dict,
                ctx: Context) -> Numeric:
        table = tables["items"]
        knot_cols = [f"k{k:02d}" for k in range(ITEM_KNOTS)]
        require_columns(table, ("n", "n_null", *knot_cols), f"column {name!r} items")
        if table.height != ctx.n_items:
            raise ValueError(f"column {name!r}: {table.height} item rows for "
                             f"{ctx.n_items} catalog items")
        knots = table.select(pl.col(knot_cols).cast(pl.Float64)).to_numpy()
        n = table.get_column("n").cast(pl.Int64).to_numpy()
        if np.isnan(knots[n >= MIN_ITEM_VALUES]).any():
            raise ValueError(f"column {name!r}: an item with enough values lacks knots")
        global_knots = np.asarray(meta["global_knots"], dtype=np.float64)
        if global_knots.size not in (0, GLOBAL_KNOTS) or not np.isfinite(global_knots).all():
            raise ValueError(f"column {name!r}: global_knots must hold {GLOBAL_KNOTS} numbers")
        return cls(name, dtype, bool(meta["atomic"]), n,
                   table.get_column("n_null").cast(pl.Int64).to_numpy(), knots, global_knots,
                   float(meta["global_null"]))


PARTS: dict[str, type[Part]] = {cls.kind: cls for cls in (
    Nulls, UserKey, ItemValue, UserValue, Timestamp, NewId, Categorical, Rating,
    Numeric)}
