"""User and item side tables (e.g. MovieLens demographics): read, check, join on a key.

A side table has one row per key; its other columns become user-level (or item-level)
attributes of the log. Keys that appear only in the side table are ignored; log keys
missing from it get nulls, which the row model reproduces at their real rate.
"""

from __future__ import annotations

import polars as pl

from recsynth import io
from recsynth.errors import DataError


def read_side_table(path: str, key: str, key_dtype: pl.DataType) -> pl.DataFrame:
    """One row per key, the key cast to the log's dtype; every problem names file and column."""
    lf = io.scan(path)
    names = list(lf.collect_schema())
    if key not in names:
        raise DataError(f"{path}: column {key!r} (the key to join on) is missing "
                        f"(columns: {', '.join(names)})")
    side = io.collect(lf, path)
    col = side.get_column(key)
    if col.dtype != key_dtype:
        try:
            col = col.cast(key_dtype, strict=True)
        except (pl.exceptions.PolarsError, TypeError, ValueError):
            raise DataError(f"{path}: column {key!r} is {side.schema[key]} and cannot be read "
                            f"as {key_dtype} like the log's keys") from None
        side = side.with_columns(col.alias(key))
    if col.null_count():
        raise DataError(f"{path}: column {key!r} has {col.null_count()} null key value(s)")
    if col.is_duplicated().any():
        dup = col.filter(col.is_duplicated()).item(0)
        raise DataError(f"{path}: column {key!r} has duplicate keys (e.g. {dup!r}); "
                        "a side table needs one row per key")
    keep = [c for c in side.columns if c == key or side.schema[c] != pl.Null]
    return side.select(keep)


def join_side_table(log: pl.LazyFrame, source: str, path: str, key: str) -> pl.LazyFrame:
    """Left-join a side table's attribute columns onto the (lazy) log on `key`."""
    dtypes = log.collect_schema()
    side = read_side_table(path, key, dtypes[key])
    clash = [c for c in side.columns if c != key and c in dtypes]
    if clash:
        raise DataError(f"{path}: column {clash[0]!r} is also in {source}; rename it in one "
                        "of them")
    return log.join(side.lazy(), on=key, how="left", maintain_order="left")


def join_side_tables(log: pl.LazyFrame, source: str, user_col: str, item_col: str,
                     users_table: str | None, items_table: str | None) -> pl.LazyFrame:
    """The user and the item side table (either may be None) joined on their keys."""
    for table, key in ((users_table, user_col), (items_table, item_col)):
        if table is not None:
            log = join_side_table(log, source, table, key)
    return log
