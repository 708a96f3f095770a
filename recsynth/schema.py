"""Column roles: inferred from names, dtypes and per-user/per-item constancy, or read from a file.

A schema file (TOML or JSON, as printed by `recsynth schema`) fixes every column's role
so a user can correct the inference once and pass the file back with `--schema`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl
import tomllib

from recsynth import io
from recsynth.errors import DataError, UsageError

SCHEMA_VERSION = 1
KEY_ROLES = ("user_key", "item_key", "timestamp")
VALUE_ROLES = ("rating", "numeric", "categorical", "identifier")
ROLES = KEY_ROLES + VALUE_ROLES
LEVELS = ("row", "user", "item")
TIME_UNITS = ("datetime", "s", "ms", "us", "ns")

USER_NAMES = ("userid", "user", "customerid", "customer", "clientid", "visitorid", "memberid",
              "accountid", "uid", "buyerid", "viewerid", "readerid", "reviewerid", "personid")
ITEM_NAMES = ("itemid", "item", "movieid", "productid", "product", "stockcode", "sku",
              "articleid", "asin", "trackid", "songid", "bookid", "isbn", "iid", "contentid",
              "videoid", "pid")
TIME_NAMES = ("timestamp", "ts", "time", "datetime", "date", "eventtime", "eventtimestamp",
              "invoicedate", "createdat", "unixtimestamp", "orderdate", "eventdate", "timestampms")
RATING_NAMES = ("rating", "ratings", "score", "stars", "rate", "preference")
# A string column with more distinct values than this is an identifier (an invoice number,
# a free-text title), not a category whose marginal is worth matching.
MAX_CATEGORIES = 1000


@dataclass(frozen=True)
class Column:
    name: str
    role: str
    level: str = "row"
    time_unit: str | None = None


@dataclass(frozen=True)
class Schema:
    """Every column of the log with its role and level (row, user- or item-constant)."""

    columns: tuple[Column, ...]

    def _only(self, role: str) -> str | None:
        names = [c.name for c in self.columns if c.role == role]
        return names[0] if names else None

    @property
    def user_col(self) -> str:
        return self._only("user_key")  # type: ignore[return-value]

    @property
    def item_col(self) -> str:
        return self._only("item_key")  # type: ignore[return-value]

    @property
    def time_col(self) -> str | None:
        return self._only("timestamp")

    @property
    def rating_col(self) -> str | None:
        return self._only("rating")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def value_columns(self) -> list[Column]:
        return [c for c in self.columns if c.role in VALUE_ROLES]

    def user_attributes(self) -> list[Column]:
        return [c for c in self.value_columns() if c.level == "user"]

    def item_attributes(self) -> list[Column]:
        return [c for c in self.value_columns() if c.level == "item"]


def user_value(name: str) -> pl.Expr:
    """A user-level column's one value per user (in a group_by on the user): the smallest
    non-null value of the user's rows, so a user whose rows disagree still gets a value
    that does not depend on row order."""
    return pl.col(name).drop_nulls().sort().first()


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _match(names: list[str], wanted: tuple[str, ...]) -> str | None:
    """First column whose normalised name is in `wanted`, in the order of `wanted`."""
    by_norm = {}
    for n in names:
        by_norm.setdefault(_norm(n), n)
    for w in wanted:
        if w in by_norm:
            return by_norm[w]
    return None


def _is_time_dtype(dtype: pl.DataType) -> bool:
    return dtype in (pl.Date,) or isinstance(dtype, pl.Datetime)


def _epoch_unit(max_abs: float) -> str:
    """Guess the unit of integer epochs from their magnitude (seconds until year 5138)."""
    if max_abs < 1e11:
        return "s"
    if max_abs < 1e14:
        return "ms"
    if max_abs < 1e17:
        return "us"
    return "ns"


def infer_schema(
    lf: pl.LazyFrame,
    source: str,
    user_col: str | None = None,
    item_col: str | None = None,
    time_col: str | None = None,
) -> Schema:
    """Give every column a role; explicit column names win over name matching."""
    dtypes = dict(lf.collect_schema())
    names = list(dtypes)
    for flag, given in (("--user-col", user_col), ("--item-col", item_col),
                        ("--time-col", time_col)):
        if given is not None and given not in dtypes:
            raise DataError(f"{source}: column {given!r} given by {flag} not found "
                            f"(columns: {', '.join(names)})")
    user = user_col or _match(names, USER_NAMES)
    if user is None:
        raise DataError(f"{source}: no user key column found (columns: {', '.join(names)}); "
                        "pass --user-col")
    item = item_col or _match([n for n in names if n != user], ITEM_NAMES)
    if item is None:
        raise DataError(f"{source}: no item key column found (columns: {', '.join(names)}); "
                        "pass --item-col")
    if item == user:
        raise DataError(f"{source}: column {user!r} cannot be both user and item key")
    rest = [n for n in names if n not in (user, item)]
    time = time_col or _infer_time(rest, dtypes)
    if time is not None:
        _check_time_dtype(source, time, dtypes[time], "pick another --time-col")
    rest = [n for n in rest if n != time]
    rating = _match([n for n in rest if dtypes[n].is_numeric()], RATING_NAMES)

    stats = _column_stats(lf, user, item, rest, time, dtypes, source)
    columns = [Column(user, "user_key"), Column(item, "item_key")]
    if time is not None:
        unit = "datetime" if _is_time_dtype(dtypes[time]) else _epoch_unit(stats["__time_max"])
        columns.append(Column(time, "timestamp", time_unit=unit))
    for n in rest:
        role = "rating" if n == rating else _value_role(dtypes[n], stats[f"{n}__n"])
        columns.append(Column(n, role, _level(n, stats)))
    return Schema(tuple(columns))


def _infer_time(names: list[str], dtypes: dict[str, pl.DataType]) -> str | None:
    named = _match([n for n in names if _is_time_dtype(dtypes[n]) or dtypes[n].is_integer()],
                   TIME_NAMES)
    if named is not None:
        return named
    typed = [n for n in names if _is_time_dtype(dtypes[n])]
    return typed[0] if len(typed) == 1 else None


SCHEMA_ROWS = 4_000_000  # rows read to infer roles and levels (whole users, hashed)
HASH_BUCKETS = 1 << 20


def _column_stats(lf: pl.LazyFrame, user: str, item: str, rest: list[str], time: str | None,
                  dtypes: dict[str, pl.DataType], source: str) -> dict[str, float]:
    """Distinct counts overall and the largest distinct count within a user/item.

    Exact per-user and per-item distinct counts cost memory in proportion to the rows, and
    so does counting a high-cardinality column exactly; a log over SCHEMA_ROWS rows is
    therefore read through a hashed sample of whole users (about SCHEMA_ROWS rows). A
    column constant within every user stays so in any sample of users; one that varies in
    a few users only may be missed (`--schema` pins the levels then). A column with at most
    MAX_CATEGORIES values in the sample (a string column: categorical or identifier) is
    counted again over every row (a small count, cheap), so categorical vs identifier is
    decided on the whole log.
    """
    exprs: list[pl.Expr] = [pl.len().alias("__rows")]
    if time is not None and dtypes[time].is_integer():
        exprs.append(pl.col(time).abs().max().cast(pl.Float64).alias("__time_max"))
    overall = lf.select(exprs).pipe(io.collect, source, streaming=True).row(0, named=True)
    if not rest:
        return overall
    sample = lf
    if overall["__rows"] > SCHEMA_ROWS:
        keep = int(HASH_BUCKETS * SCHEMA_ROWS / overall["__rows"])
        sample = lf.filter(pl.col(user).hash(seed=0) % HASH_BUCKETS < keep)
    counts = (sample.select([pl.col(n).n_unique().alias(f"{n}__n") for n in rest])
              .pipe(io.collect, source, streaming=True).row(0, named=True))
    if sample is not lf:  # a distinct-values pass streams where n_unique() would not
        for n in rest:
            if dtypes[n] == pl.String and counts[f"{n}__n"] <= MAX_CATEGORIES:
                counts[f"{n}__n"] = (lf.select(pl.col(n)).unique().select(pl.len())
                                     .pipe(io.collect, source, streaming=True).item())
    overall.update(counts)
    per_user = (sample.group_by(user).agg(pl.col(rest).n_unique()).select(pl.col(rest).max())
                .pipe(io.collect, source, streaming=True).row(0, named=True))
    per_item = (sample.group_by(item).agg(pl.col(rest).n_unique()).select(pl.col(rest).max())
                .pipe(io.collect, source, streaming=True).row(0, named=True))
    for n in rest:
        overall[f"{n}__user"] = per_user[n]
        overall[f"{n}__item"] = per_item[n]
    return overall


def _value_role(dtype: pl.DataType, n_unique: int) -> str:
    if dtype == pl.Boolean or isinstance(dtype, (pl.Categorical, pl.Enum)):
        return "categorical"
    if dtype.is_numeric() or dtype.is_temporal():  # a second date/time: by its physical value
        return "numeric"
    if dtype == pl.String:
        return "identifier" if n_unique > MAX_CATEGORIES else "categorical"
    return "identifier"


def _level(name: str, stats: dict[str, float]) -> str:
    if stats[f"{name}__user"] == 1:
        return "user"
    if stats[f"{name}__item"] == 1:
        return "item"
    return "row"


# ---------------------------------------------------------------- schema files

def schema_to_dict(schema: Schema) -> dict:
    cols = {}
    for c in schema.columns:
        entry: dict[str, str] = {"role": c.role}
        if c.role in VALUE_ROLES:
            entry["level"] = c.level
        if c.time_unit is not None:
            entry["time_unit"] = c.time_unit
        cols[c.name] = entry
    return {"schema_version": SCHEMA_VERSION, "columns": cols}


def dump_schema(schema: Schema, fmt: str) -> str:
    data = schema_to_dict(schema)
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    if fmt != "toml":
        raise UsageError(f"unknown schema format {fmt!r} (use toml or json)")
    lines = ["# recsynth schema: edit roles/levels and pass back with --schema",
             f"# roles: {', '.join(ROLES)}; levels: {', '.join(LEVELS)}",
             f"schema_version = {SCHEMA_VERSION}", ""]
    for name, entry in data["columns"].items():
        lines.append(f"[columns.{json.dumps(name)}]")
        lines.extend(f"{k} = {json.dumps(v)}" for k, v in entry.items())
        lines.append("")
    return "\n".join(lines)


def load_schema(path: str | Path) -> Schema:
    """Read a schema file; any problem is a one-line DataError naming the file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{p}: cannot read schema file ({exc.strerror})") from None
    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DataError(f"{p}: cannot parse schema file ({str(exc).splitlines()[0]})") from None
    return schema_from_dict(data, str(p))


def schema_from_dict(data: object, source: str) -> Schema:
    if not isinstance(data, dict) or not isinstance(data.get("columns"), dict):
        raise DataError(f"{source}: schema has no [columns] table")
    version = data.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise DataError(f"{source}: schema_version {version!r} not supported "
                        f"(this recsynth reads {SCHEMA_VERSION})")
    columns = []
    for name, entry in data["columns"].items():
        if not isinstance(entry, dict):
            raise DataError(f"{source}: column {name!r}: expected a table with a role")
        role = entry.get("role")
        if role not in ROLES:
            raise DataError(f"{source}: column {name!r}: role {role!r} is not one of "
                            f"{', '.join(ROLES)}")
        level = entry.get("level", "row")
        if level not in LEVELS:
            raise DataError(f"{source}: column {name!r}: level {level!r} is not one of "
                            f"{', '.join(LEVELS)}")
        unit = entry.get("time_unit")
        if role == "timestamp" and unit not in TIME_UNITS:
            raise DataError(f"{source}: column {name!r}: time_unit {unit!r} is not one of "
                            f"{', '.join(TIME_UNITS)}")
        columns.append(Column(name, role, level, unit if role == "timestamp" else None))
    for role in KEY_ROLES + ("rating",):
        count = sum(c.role == role for c in columns)
        if count > 1 or (count == 0 and role in ("user_key", "item_key")):
            raise DataError(f"{source}: schema needs exactly one {role} column, found {count}")
    return Schema(tuple(columns))


def check_schema_fits(schema: Schema, lf: pl.LazyFrame, source: str) -> Schema:
    """A schema from a file must name columns the data has; extra data columns are ignored."""
    present = lf.collect_schema()
    for c in schema.columns:
        if c.name not in present and c.role in ("user_key", "item_key", "timestamp"):
            raise DataError(f"{source}: column {c.name!r} named in the schema is missing")
        if c.role == "timestamp":
            _check_time_dtype(source, c.name, present[c.name], "change its role in the schema")
    kept = tuple(c for c in schema.columns if c.name in present)
    return replace(schema, columns=kept)


def _check_time_dtype(source: str, name: str, dtype: pl.DataType, other: str) -> None:
    """The timeline works on datetimes and integer epochs only (a float epoch can hold NaN
    and fractions the physical integers cannot)."""
    if not (_is_time_dtype(dtype) or dtype.is_integer()):
        raise DataError(f"{source}: column {name!r} is {dtype}, not a datetime or integer "
                        f"epoch; cast it or {other}")


def resolve_schema(lf: pl.LazyFrame, source: str, schema_file: str | None = None,
                   user_col: str | None = None, item_col: str | None = None,
                   time_col: str | None = None) -> Schema:
    if schema_file is not None:
        return check_schema_fits(load_schema(schema_file), lf, source)
    return infer_schema(lf, source, user_col, item_col, time_col)
