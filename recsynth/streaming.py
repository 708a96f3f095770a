"""The log in streaming passes, so `fit` memory follows users and pairs, never rows.

A 50 M-row log does not fit in 4 GB as a frame, but everything `fit` needs from it does:
the sorted user and item keys, the per-user item sets (a sparse matrix of distinct pairs),
rows per user, first values per user and per item, and a bounded sample of whole users
for the per-row model. Each comes from a streaming pass over the Parquet parts; the
encoded users can be kept in `--cache-dir`, keyed by the inputs' fingerprint, so a rerun
(a grid of settings, `--resume`, every torchrun rank) reads them instead of the log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from recsynth import io
from recsynth.encode import BATCH_ROWS, default_like_threshold, encode_users
from recsynth.errors import DataError, first_line
from recsynth.logcache import EncodedLog, cache_key, load_cache, save_cache
from recsynth.schema import Schema


def sorted_keys(lf: pl.LazyFrame, col: str, source: str) -> pl.Series:
    """The distinct keys of a column, sorted: row positions of the encoded matrix."""
    unique = lf.select(pl.col(col).drop_nulls().unique())
    return io.collect(unique, source, streaming=True).get_column(col).sort()


def check_log(lf: pl.LazyFrame, schema: Schema, source: str) -> tuple[int, float | None]:
    """Rows and the mean rating (None without ratings), in one pass; empty logs and null
    keys are data errors."""
    exprs = [pl.len().alias("__rows")]
    exprs += [pl.col(c).null_count().alias(c) for c in (schema.user_col, schema.item_col)]
    if schema.rating_col is not None:
        rating = pl.col(schema.rating_col).cast(pl.Float64).fill_nan(None)  # NaN: no rating
        exprs.append(rating.mean().alias("__mean"))
    row = io.collect(lf.select(exprs), source, streaming=True).row(0, named=True)
    if row["__rows"] == 0:
        raise DataError(f"{source}: no rows")
    for c in (schema.user_col, schema.item_col):
        if row[c]:
            raise DataError(f"{source}: column {c!r} has {row[c]} null key value(s)")
    return int(row["__rows"]), row.get("__mean")


def require_learnable(n_users: int, n_items: int, source: str) -> None:
    if n_users < 2 or n_items < 2:
        raise DataError(f"{source}: need at least 2 users and 2 items to learn from "
                        f"(found {n_users} users, {n_items} items)")


def file_batches(files: list[Path], columns: list[str], dtypes: dict[str, pl.DataType],
                 batch_rows: int = BATCH_ROWS) -> Iterator[pl.DataFrame]:
    """The named columns of every part, `batch_rows` rows at a time, in the log's dtypes."""
    for f in files:
        try:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=batch_rows, columns=columns):
                frame = pl.from_arrow(batch)
                assert isinstance(frame, pl.DataFrame)
                yield frame.cast({c: dtypes[c] for c in columns})
        except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
            raise DataError(f"{f}: cannot read ({first_line(exc)})") from None


def encode_log(lf: pl.LazyFrame, files: list[Path], schema: Schema,
               like_threshold: float | None, source: str, *, cache_dir: str | None = None,
               inputs: list[dict[str, Any]] | None = None, write_cache: bool = True,
               on_stage: Callable[[str], None] = lambda _: None) -> EncodedLog:
    """The encoded users of the whole log, from `cache_dir` when it holds them.

    `inputs` is the log files' fingerprint (checkpoint.fingerprint), the cache key."""
    key = None
    if cache_dir is not None:
        if not inputs:
            raise ValueError("a cache needs the inputs' fingerprint for its key")
        key = cache_key(inputs, schema, like_threshold)
        cached = load_cache(Path(cache_dir) / key)
        if cached is not None:
            on_stage(f"encoded users read from the cache {Path(cache_dir) / key}")
            return cached
    rows, mean = check_log(lf, schema, source)
    threshold = like_threshold
    if threshold is None and mean is not None:
        threshold = default_like_threshold(mean)
    users = sorted_keys(lf, schema.user_col, source)
    catalog = sorted_keys(lf, schema.item_col, source)
    require_learnable(len(users), len(catalog), source)
    cols = [c for c in (schema.user_col, schema.item_col, schema.rating_col) if c is not None]
    dtypes = dict(lf.collect_schema())
    absent = [c for c in cols if c not in pq.ParquetFile(files[0]).schema_arrow.names]
    if absent:
        raise DataError(f"{source}: column {absent[0]!r} must be in the log itself, not in a "
                        "side table")
    enc, per_user = encode_users(file_batches(files, cols, dtypes), schema, users, catalog,
                                 threshold, source)
    log = EncodedLog(enc, catalog, per_user, rows, threshold)
    if key is not None and write_cache:
        try:
            save_cache(log, Path(cache_dir) / key)
            on_stage(f"encoded users cached in {Path(cache_dir) / key}")
        except OSError as exc:  # the fit goes on without a cache
            on_stage(f"warning: cannot write the cache in {cache_dir} ({first_line(exc)})")
    return log


# ------------------------------------------------------------------ samples and per-key values


def sample_users(users: pl.Series, rows_per_user: np.ndarray, max_rows: int,
                 seed: int) -> pl.Series:
    """Whole users in random order until their rows reach `max_rows` (all when they fit),
    so the per-row model sees complete histories in bounded memory."""
    if int(rows_per_user.sum()) <= max_rows:
        return users
    order = np.random.default_rng([seed, 41]).permutation(len(users))
    take = order[:max(1, int(np.searchsorted(np.cumsum(rows_per_user[order]), max_rows,
                                             side="right")))]
    return users.gather(np.sort(take))


def rows_of(lf: pl.LazyFrame, user_col: str, users: pl.Series, source: str) -> pl.DataFrame:
    """The log's rows of these users, in log order (the filter runs while reading)."""
    rows = lf.filter(pl.col(user_col).is_in(users.implode()))
    return io.collect(rows, source, streaming=True)


def first_per_key(lf: pl.LazyFrame, key: str, cols: list[str], source: str) -> pl.DataFrame:
    """One row per key with each column's first value in log order, by a streaming pass."""
    per_key = lf.group_by(key).agg(pl.col(cols).first())
    return io.collect(per_key, source, streaming=True).sort(key)

