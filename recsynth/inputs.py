"""Read and validate the real train, real holdout and synthetic logs for evaluation.

Synthetic data may come from any generator: it needs only the user and item columns, and
its keys are cast to the real dtypes. Every problem is a DataError naming file and column.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from recsynth import io
from recsynth.errors import DataError
from recsynth.matrix import UserItems, build_catalog, to_user_items
from recsynth.schema import Schema, resolve_schema, user_value
from recsynth.side_tables import read_side_table


@dataclass(frozen=True)
class Log:
    source: str
    frame: pl.DataFrame
    all_items: UserItems  # every interaction, for privacy and fidelity
    positives: UserItems  # interactions that count as positives, for utility


@dataclass(frozen=True)
class EvalInputs:
    schema: Schema
    catalog: pl.Series
    train: Log
    holdout: Log
    synthetic: Log | None  # None: only an augmented log is scored
    user_attributes: pl.DataFrame | None  # user key + attribute columns of held-out users
    augmented: Log | None = None  # real + synthetic training log (`evaluate --augmented`)


def _require(names: list[str], source: str, cols: list[str]) -> None:
    for c in cols:
        if c not in names:
            raise DataError(f"{source}: column {c!r} is missing (columns: {', '.join(names)})")


def check_keys(frame: pl.DataFrame, source: str, cols: list[str]) -> None:
    if frame.height == 0:
        raise DataError(f"{source}: no rows")
    for c in cols:
        nulls = frame.get_column(c).null_count()
        if nulls:
            raise DataError(f"{source}: column {c!r} has {nulls} null key value(s)")


def check_user_key_dtype(dtype: pl.DataType, source: str, column: str) -> None:
    """Synthetic users get new keys of the real key's dtype: integers, strings or
    categoricals. Other dtypes are refused before any work, not after training."""
    if dtype.is_integer() or isinstance(dtype, (pl.String, pl.Categorical)):
        return
    raise DataError(f"{source}: column {column!r}: user keys of dtype {type(dtype).__name__} "
                    "are not supported (synthetic users need new keys of that dtype); cast the "
                    "keys to integers or strings")


def check_item_key_dtype(dtype: pl.DataType, source: str, column: str) -> None:
    """Item keys are looked up in the catalog: nested values (lists, structs) cannot be."""
    if dtype.is_nested() or dtype == pl.Object:
        raise DataError(f"{source}: column {column!r}: item keys of dtype {dtype} are not "
                        "supported; use one integer or string per row")


def fresh_prefix(keys: pl.Series) -> str:
    """'syn-', or 'syn2-', 'syn3-', …: the first prefix no key in `keys` starts with."""
    taken = keys.cast(pl.String)
    prefix, n = "syn-", 1
    while taken.str.starts_with(prefix).any():
        n += 1
        prefix = f"syn{n}-"
    return prefix


def _cast_like(frame: pl.DataFrame, source: str, reference: dict[str, pl.DataType]) -> pl.DataFrame:
    """Bring a column to the real dtype (e.g. float item ids from a tabular GAN)."""
    exprs = []
    for name, dtype in reference.items():
        if name not in frame.columns or frame.schema[name] == dtype:
            continue
        col = frame.get_column(name)
        try:
            cast = col.cast(dtype, strict=True)
        except (pl.exceptions.PolarsError, TypeError, ValueError):
            raise DataError(f"{source}: column {name!r} is {col.dtype} and cannot be read as "
                            f"{dtype} like the real data") from None
        exprs.append(pl.lit(cast).alias(name))
    return frame.with_columns(exprs) if exprs else frame


def _positives(frame: pl.DataFrame, schema: Schema, min_rating: float | None,
               source: str) -> pl.DataFrame:
    if min_rating is None:
        return frame
    rating = schema.rating_col
    if rating is None:
        raise DataError(f"{source}: --min-rating needs a rating column, none in the schema")
    if rating not in frame.columns:
        raise DataError(f"{source}: column {rating!r} is missing, needed by --min-rating")
    # a NaN rating is no rating: polars orders NaN above every number, so it would pass
    return frame.filter(pl.col(rating).fill_nan(None) >= min_rating)


def _read(path: str) -> tuple[pl.LazyFrame, str]:
    return io.scan(path), str(path)


def _no_shared_users(a: pl.DataFrame, a_src: str, b: pl.DataFrame, b_src: str, user: str,
                     why: str) -> None:
    """Held-out users must stay unseen: no user key of `b` may appear in `a`."""
    shared = a.select(user).unique().join(b.select(user).unique(), on=user, how="inner")
    if shared.height:
        raise DataError(f"{b_src}: column {user!r} shares {shared.height} user(s) with "
                        f"{a_src} (e.g. {shared.item(0, 0)!r}); {why}")


def _read_generated(path: str, schema: Schema, reference: dict[str, pl.DataType],
                    opaque_users: bool = True) -> tuple[pl.DataFrame, str]:
    """A synthetic or augmented log: key columns required, other columns cast to the real
    dtypes (user keys too in an augmented log, which holds real users)."""
    lf, src = _read(path)
    names = list(lf.collect_schema())
    _require(names, src, [schema.user_col, schema.item_col])
    df = io.collect(lf.select([n for n in schema.names if n in names]), src)
    # synthetic user keys are opaque and need not share the real dtype
    df = _cast_like(df, src, {n: t for n, t in reference.items()
                              if n != schema.user_col or not opaque_users})
    check_keys(df, src, [schema.user_col, schema.item_col])
    return df, src


def load_inputs(train: str, holdout: str, synthetic: str | None, *,
                schema_file: str | None = None, user_col: str | None = None,
                item_col: str | None = None, time_col: str | None = None,
                users_table: str | None = None, min_rating: float | None = None,
                augmented: str | None = None) -> EvalInputs:
    train_lf, train_src = _read(train)
    holdout_lf, holdout_src = _read(holdout)
    schema = resolve_schema(train_lf, train_src, schema_file, user_col, item_col, time_col)
    keys = [schema.user_col, schema.item_col]

    train_df = io.collect(train_lf.select(schema.names), train_src)
    reference = dict(train_df.schema)
    check_keys(train_df, train_src, keys)
    hold_names = list(holdout_lf.collect_schema())
    _require(hold_names, holdout_src, keys)
    holdout_df = io.collect(holdout_lf.select([n for n in schema.names if n in hold_names]),
                            holdout_src)
    holdout_df = _cast_like(holdout_df, holdout_src, reference)
    check_keys(holdout_df, holdout_src, keys)
    generated = {name: _read_generated(path, schema, reference, name == "synthetic")
                 for name, path in (("synthetic", synthetic), ("augmented", augmented))
                 if path is not None}

    _no_shared_users(train_df, train_src, holdout_df, holdout_src, schema.user_col,
                     "holdout users must be unseen, split with `recsynth split`")
    if "augmented" in generated:
        _no_shared_users(*generated["augmented"], holdout_df, holdout_src, schema.user_col,
                         "an augmented log must not contain held-out users")

    catalog = build_catalog(schema.item_col, train_df, holdout_df)

    def as_log(df: pl.DataFrame, src: str) -> Log:
        all_items = to_user_items(df, schema.user_col, schema.item_col, catalog, src)
        pos_df = _positives(df, schema, min_rating, src)
        positives = to_user_items(pos_df, schema.user_col, schema.item_col, catalog, src)
        return Log(src, df, all_items, positives)

    logs = {name: as_log(*pair) for name, pair in generated.items()}
    attrs = _user_attributes(schema, holdout_df, users_table)
    return EvalInputs(schema, catalog, as_log(train_df, train_src),
                      as_log(holdout_df, holdout_src), logs.get("synthetic"), attrs,
                      logs.get("augmented"))


def _user_attributes(schema: Schema, holdout: pl.DataFrame,
                     users_table: str | None) -> pl.DataFrame | None:
    """One row per held-out user with its attribute columns (from the log or a side table)."""
    user = schema.user_col
    cols = [c.name for c in schema.user_attributes()
            if c.role in ("categorical", "numeric", "rating") and c.name in holdout.columns]
    frame = holdout.group_by(user).agg([user_value(c) for c in cols]).sort(user)
    if users_table is not None:
        side = read_side_table(users_table, user, holdout.schema[user])
        extra = [c for c in side.columns if c != user and c not in frame.columns]
        frame = frame.join(side.select([user, *extra]), on=user, how="left")
    return frame if frame.width > 1 else None
