"""Every column of a synthetic row except the GAN's choice of item (and liked flag).

The GAN decides which catalog items each synthetic user touches and, when the log has a
rating, whether each touch is liked. `RowModel` fills in the rest of each row so the
output has the real schema, dtypes and column order (the order of the frame given to
`fit`, which may differ from the schema's key-first order). It keeps only aggregates
(per-item value counts and quantiles, global quantiles, the table of distinct user-level
attribute tuples with their user counts), never a real user's rows, and saves as JSON +
Parquet.

How each column is generated, by role and level:

- user key: the caller's synthetic user keys; item key: the catalog key of the item.
- level "item" (any value role, identifiers included): the item's own real value (null for
  a catalog item with no real row).
- level "user" (not an identifier): from `user_attributes` when given, else one real user's
  tuple of user-level values, drawn with its frequency among real users.
- rating: the item's rating counts restricted to the liked half (>= like_threshold) or to
  the other half, smoothed towards that half's global counts; the global half alone when
  the item has fewer than MIN_HALF_RATINGS ratings there (the full global distribution if
  the real data has no rating in that half). Null and NaN ratings belong to the other half
  (fit does not count them as liked), so their rate among the other rows is reproduced.
- categorical, boolean, numeric with <= MAX_DISCRETE distinct values: the item's value
  counts smoothed towards the global counts; null is a value, so null rates match.
- numeric: inverse CDF through the item's ITEM_KNOTS quantiles (items with at least
  MIN_ITEM_VALUES values), else GLOBAL_KNOTS quantiles pooled over the rows of such rare
  items; integers rounded; per-item null rate smoothed towards the global one. Columns
  whose values repeat (prices, quantities) only emit knot values (see
  `rowparts.Numeric`). NaN and +-inf count as missing (they come out null).
- timestamp: a start per user from the quantiles of real users' first timestamps, then
  within-user gaps (a zero mass plus quantiles of positive gaps), on the real time grid;
  where it fits the real spans better, gaps above a threshold are session breaks whose
  per-user share (and tempo) follows real users of like activity (`timeline.Sessions`).
  A timeline that would end after the real maximum is shifted back; one longer than the
  real window is compressed into it, so times stay within the real [min, max]. A
  calibration chosen at fit time (see `timeline.Timeline`) then warps the times, or
  shifts each user's timeline, towards the real timestamp marginal. Rows whose real time
  is null have their share of rows set null at random.
  Rows are shuffled within each user first, so the input's item order carries no meaning.
- identifier, level row: one new id per session (a user's first row and every row after a
  positive gap): f"{user_key}{sep}{n}" for string dtypes, with `sep` a separator that no
  real value contains, so no real id can come out; for numeric dtypes base + u·stride + n
  above the real maximum, u the user's run-wide index (see `rowparts.NewId`). Level user:
  one new id per user by the same scheme.
- repeats: when some real (user, item) pair has several rows, each input pair becomes
  r >= 1 rows, r from the item's rows-per-pair counts smoothed towards the global ones,
  its excess r - 1 scaled for the user's number of distinct items (see
  `repeats.Repeats`); each repeat row draws its own values and time. Logs without
  repeats: one row per pair.
- anything else (row-level nested/object/null dtypes, identifiers of other dtypes,
  timestamps when the real column is all null): nulls of the real dtype.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from recsynth.errors import RecsynthError
from recsynth.repeats import Repeats
from recsynth.rowparts import (
    PARTS,
    Batch,
    Categorical,
    Context,
    ItemValue,
    NewId,
    Nulls,
    Numeric,
    Part,
    Rating,
    Timestamp,
    UserKey,
    UserValue,
)
from recsynth.rowvalues import is_modelable, is_number
from recsynth.schema import Column, Schema, schema_from_dict, schema_to_dict
from recsynth.streaming import first_per_key
from recsynth.timeline import Timeline

FORMAT = "recsynth-rowmodel"
VERSION = 1
MANIFEST = "rowmodel.json"
MAX_DISCRETE = 20
_USERS = "__recsynth_users"
USER_COUNT_COL = _USERS  # user count column of `RowModel.user_tuples`
MIN_TUPLE_USERS = 5  # attribute combinations held by fewer real users are generalised


# ------------------------------------------------------------------ the model

@dataclass(frozen=True, eq=False)
class RowModel:
    """Generates all non-GAN columns of synthetic rows from aggregated real statistics.

    Saved as a directory: `rowmodel.json` (format, version, schema, like_threshold,
    n_items, timeline knots, one entry per column with its kind and scalar parameters,
    and the SHA-256 of every Parquet file), `template.parquet` (zero rows: the real column
    order and dtypes), `items.parquet` (one row per catalog item: the item key and the
    item-level columns), `users.parquet` (distinct user-level tuples with their user count
    in `__recsynth_users`; only with user-level columns), `repeats.parquet` (only when
    real pairs repeat: sparse per-item counts of rows per pair, code r - 1, capped at
    REPEAT_CAP; the global counts are in the manifest), and per modelled column j
    `colJJ.levels.parquet` + `colJJ.counts.parquet` (categorical, rating: distinct values
    with global counts; sparse per-item counts) or `colJJ.items.parquet` (numeric: per-item
    value and null counts and quantile knots).
    """

    schema: Schema
    template: pl.DataFrame
    catalog: pl.Series
    like_threshold: float | None
    parts: tuple[Part, ...]
    timeline: Timeline | None
    user_tuples: pl.DataFrame | None
    repeats: Repeats | None = None

    # ---------------------------------------------------------------- fit

    @classmethod
    def fit(cls, frame: pl.DataFrame, schema: Schema, catalog: pl.Series,
            like_threshold: float | None, item_values: pl.DataFrame | None = None
            ) -> RowModel:
        """Learn per-item and global statistics; `catalog[i]` is item index i in sample().

        `item_values` (one row per item key, its item-level columns' first values) comes
        from every row when `frame` is a sample of users; by default it is read off `frame`.
        """
        missing = [n for n in schema.names if n not in frame.columns]
        if missing:
            raise ValueError(f"column {missing[0]!r} of the schema is not in the frame")
        template = frame.select([n for n in frame.columns if n in schema.names]).clear()
        catalog = _check_catalog(catalog, frame.schema[schema.item_col], schema.item_col)
        items = (frame.get_column(schema.item_col)
                 .replace_strict(catalog, np.arange(len(catalog)), default=-1,
                                 return_dtype=pl.Int64).to_numpy())
        timeline = None
        if schema.time_col is not None:
            timeline = Timeline.fit(frame, schema.user_col, schema.time_col)
        item = schema.item_col
        if item_values is None:
            item_values = first_per_key(frame.lazy(), item,
                                        [c.name for c in schema.item_attributes()], "frame")
        parts = tuple(_fit_part(schema.column(n), frame, items, catalog, like_threshold,
                                timeline, item_values, item, schema.user_col)
                      for n in template.columns)
        tuple_cols = [p.name for p in parts if isinstance(p, UserValue)]
        user_tuples = _fit_user_tuples(frame, schema.user_col, tuple_cols)
        threshold = None if like_threshold is None else float(like_threshold)
        repeats = Repeats.fit(frame, schema.user_col, items, len(catalog))
        return cls(schema, template, catalog, threshold, parts, timeline, user_tuples, repeats)

    # ---------------------------------------------------------------- sample

    def sample(self, user_index: np.ndarray, item_index: np.ndarray, liked: np.ndarray | None,
               user_keys: pl.Series, rng: np.random.Generator, *,
               user_attributes: pl.DataFrame | None = None,
               repeats: bool = True, first_user: int = 0) -> pl.DataFrame:
        """Rows for the given (user, item[, liked]) pairs, grouped by user, in time order.

        When the real log has repeat interactions (and `repeats`), each pair becomes r >= 1
        rows, r drawn from its item's rows-per-pair distribution, each with its own values;
        so the frame may have more rows than the input. Rows are shuffled within each user
        before times are assigned, so output row i is not input row i; the frame carries
        the keys. `user_attributes` (one row per user key) overrides the drawn user-level
        columns it holds; other columns are ignored. `first_user` is the run-wide index of
        user 0 here, which numbers fresh ids so that batches never share one.
        """
        batch = self._batch(user_index, item_index, liked, user_keys, user_attributes, rng,
                            repeats, first_user)
        return pl.DataFrame([part.sample(batch, rng) for part in self.parts])

    def _batch(self, user_index: np.ndarray, item_index: np.ndarray, liked: np.ndarray | None,
               user_keys: pl.Series, user_attributes: pl.DataFrame | None,
               rng: np.random.Generator, repeats: bool = True, first_user: int = 0) -> Batch:
        users, items, flags = _check_rows(user_index, item_index, liked, len(user_keys),
                                          len(self.catalog))
        if flags is not None and self.like_threshold is None and self._has_rating():
            raise ValueError("liked flags given but the row model was fit without "
                             "like_threshold")
        if repeats and self.repeats is not None and items.size:
            r = self.repeats.draw(users, items, rng)
            users, items = np.repeat(users, r), np.repeat(items, r)
            flags = None if flags is None else np.repeat(flags, r)
        order = _shuffle_within_users(users, rng)
        users, items = users[order], items[order]
        flags = None if flags is None else flags[order]
        first = np.ones(users.size, dtype=bool)
        first[1:] = users[1:] != users[:-1]
        times, new_session = None, first
        if self.timeline is not None:
            times, later = self.timeline.draw(first, rng)
            new_session = first | later
        user_values = self._user_values(user_keys, user_attributes, rng)
        return Batch(users, items, flags, user_keys, first, new_session, times, user_values,
                     first_user)

    def _has_rating(self) -> bool:
        return any(isinstance(p, Rating) for p in self.parts)

    def _user_values(self, user_keys: pl.Series, given: pl.DataFrame | None,
                     rng: np.random.Generator) -> pl.DataFrame | None:
        """One row per synthetic user: a real user's attribute tuple, overridden by `given`."""
        if self.user_tuples is None:
            return None
        k = len(user_keys)
        weights = np.cumsum(self.user_tuples.get_column(_USERS).to_numpy()).astype(np.float64)
        values = self.user_tuples.drop(_USERS)
        if weights.size:
            pick = np.searchsorted(weights, rng.random(k) * weights[-1], side="right")
            values = values.select(pl.all().gather(pick))
        else:
            values = values.clear(k)
        if given is None:
            return values
        if given.height != k:
            raise ValueError(f"user_attributes has {given.height} rows for {k} user keys")
        try:
            return values.with_columns(given.get_column(c).cast(values.schema[c])
                                       for c in values.columns if c in given.columns)
        except pl.exceptions.PolarsError as exc:
            raise ValueError(f"user_attributes: cannot cast to the real dtypes ({exc})") from None

    # ---------------------------------------------------------------- save / load

    def save(self, directory: Path) -> None:
        """Parquet tables first, the manifest (with their checksums) last."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files: dict[str, str] = {}
        for name, table in self._tables().items():
            path = directory / name
            table.write_parquet(path)
            files[name] = _sha256(path)
        manifest = {
            "format": FORMAT, "version": VERSION, "schema": schema_to_dict(self.schema),
            "like_threshold": self.like_threshold, "n_items": len(self.catalog),
            "timeline": None if self.timeline is None else self.timeline.meta(),
            "repeats": None if self.repeats is None else self.repeats.meta(),
            "columns": [{"name": p.name, "kind": p.kind, **p.meta()} for p in self.parts],
            "files": files,
        }
        (directory / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n",
                                          encoding="utf-8")

    def _tables(self) -> dict[str, pl.DataFrame]:
        item_cols = [p.values for p in self.parts if isinstance(p, ItemValue)]
        tables = {"template.parquet": self.template, "items.parquet": pl.DataFrame(item_cols)}
        if self.user_tuples is not None:
            tables["users.parquet"] = self.user_tuples
        if self.repeats is not None:
            tables["repeats.parquet"] = self.repeats.counts.table()
        for j, part in enumerate(self.parts):
            for suffix, table in part.tables().items():
                tables[f"col{j:02d}.{suffix}.parquet"] = table
        return tables

    @classmethod
    def load(cls, directory: Path) -> RowModel:
        """Read and validate; any missing, altered or inconsistent file is a ValueError."""
        directory = Path(directory)
        manifest = _read_manifest(directory / MANIFEST)
        try:
            return cls._from_manifest(directory, manifest)
        except (KeyError, TypeError, AttributeError, RecsynthError,
                pl.exceptions.PolarsError) as exc:
            raise ValueError(f"{directory / MANIFEST}: invalid row model ({exc})") from None

    @classmethod
    def _from_manifest(cls, directory: Path, manifest: dict) -> RowModel:
        tables = _read_tables(directory, manifest["files"])
        schema = schema_from_dict(manifest["schema"], str(directory / MANIFEST))
        template = tables["template.parquet"]
        if sorted(template.columns) != sorted(schema.names):
            raise ValueError("template.parquet does not match the schema's columns")
        items = tables["items.parquet"]
        n_items = int(manifest["n_items"])
        if items.height != n_items:
            raise ValueError(f"items.parquet has {items.height} rows, expected {n_items}")
        threshold = manifest["like_threshold"]
        ctx = Context(items, n_items, None if threshold is None else float(threshold))
        specs = manifest["columns"]
        if [s["name"] for s in specs] != template.columns:
            raise ValueError("column list does not match the schema")
        parts = tuple(_restore_part(j, s, template.schema[s["name"]], tables, ctx)
                      for j, s in enumerate(specs))
        timeline = manifest["timeline"]
        repeats = manifest.get("repeats")
        if repeats is not None and "repeats.parquet" not in tables:
            raise ValueError(f"repeats.parquet is not listed in {MANIFEST}")
        return cls(schema, template, items.get_column(schema.item_col), ctx.like_threshold,
                   parts, None if timeline is None else Timeline.restore(timeline),
                   tables.get("users.parquet"),
                   None if repeats is None else Repeats.restore(repeats,
                                                                tables["repeats.parquet"],
                                                                n_items))


# ------------------------------------------------------------------ fit helpers

def _check_catalog(catalog: pl.Series, dtype: pl.DataType, name: str) -> pl.Series:
    try:
        catalog = catalog.cast(dtype).alias(name)
    except pl.exceptions.PolarsError:
        raise ValueError(f"catalog of dtype {catalog.dtype} cannot be cast to the item key "
                         f"dtype {dtype}") from None
    if catalog.null_count() or catalog.n_unique() != len(catalog):
        raise ValueError("catalog must hold distinct, non-null item keys")
    return catalog


def _fit_part(col: Column, frame: pl.DataFrame, items: np.ndarray, catalog: pl.Series,
              like_threshold: float | None, timeline: Timeline | None,
              item_values: pl.DataFrame, item: str, user: str) -> Part:
    """Choose and fit the generator for one column from its role, level and dtype."""
    s = frame.get_column(col.name)
    if col.role == "user_key":
        return UserKey(col.name, s.dtype)
    if col.role == "item_key":
        return ItemValue(col.name, s.dtype, catalog)
    if col.role == "timestamp":
        if timeline is None:
            return Nulls(col.name, s.dtype)
        return Timestamp(col.name, s.dtype, s.null_count() / len(s) if len(s) else 0.0)
    if col.level == "item":
        return ItemValue(col.name, s.dtype, _item_values(item_values, item, col.name, catalog))
    if col.role == "identifier":
        per_real_user = 0 if timeline is None else frame.group_by(user).agg(
            pl.col(col.name).n_unique()).get_column(col.name).max()
        return NewId.fit(s, per_user=col.level == "user", per_real_user=int(per_real_user or 0))
    if col.level == "user":
        return UserValue(col.name, s.dtype)
    if not is_modelable(s.dtype):
        return Nulls(col.name, s.dtype)
    if col.role == "rating" and is_number(s.dtype):
        threshold = None if like_threshold is None else float(like_threshold)
        return Rating.fit_rating(s, items, len(catalog), threshold)
    if (col.role == "numeric" and is_number(s.dtype)
            and s.drop_nulls().n_unique() > MAX_DISCRETE):
        return Numeric.fit(s, items, len(catalog))
    if col.role in ("numeric", "categorical", "rating"):
        return Categorical.fit(s, items, len(catalog))
    return Nulls(col.name, s.dtype)


def _item_values(values: pl.DataFrame, item: str, name: str, catalog: pl.Series) -> pl.Series:
    """Each catalog item's (first) value; null for items without real rows."""
    return (pl.DataFrame({item: catalog})
            .join(values.select(item, name), on=item, how="left", maintain_order="left")
            .get_column(name))


def _fit_user_tuples(frame: pl.DataFrame, user: str, cols: list[str]) -> pl.DataFrame | None:
    """Distinct tuples of user-level values with how many real users hold each."""
    if not cols:
        return None
    if _USERS in cols:
        raise ValueError(f"column name {_USERS!r} is reserved")
    per_user = frame.group_by(user, maintain_order=True).agg(pl.col(cols).first())
    tuples = per_user.group_by(cols, maintain_order=True).agg(
        pl.len().cast(pl.Int64).alias(_USERS))
    return _k_anonymous(tuples, cols)


def _k_anonymous(tuples: pl.DataFrame, cols: list[str]) -> pl.DataFrame:
    """Generalise combinations held by fewer than MIN_TUPLE_USERS real users.

    A synthetic user gets a whole stored tuple, so a combination held by one real user
    (age, gender, occupation and zip code, say) would be a quasi-identifier copied out.
    The most specific column (most distinct values) is set to null in the rare tuples,
    which are merged, and so on until every stored tuple is held by enough users (a rest
    too small even then is all-null: it says nothing about anyone).
    """
    order = sorted(cols, key=lambda c: -tuples.get_column(c).n_unique())
    for col in order:
        rare = pl.col(_USERS) < MIN_TUPLE_USERS
        if not tuples.select(rare.any()).item():
            break
        tuples = (tuples.with_columns(pl.when(rare).then(None).otherwise(pl.col(col))
                                      .alias(col))
                  .group_by(cols, maintain_order=True).agg(pl.col(_USERS).sum()))
    return tuples


def _shuffle_within_users(users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row order grouping users ascending, random within a user (one int64 sort, no lexsort)."""
    if users.size and users.max() < 2**32:
        key = (users << 31) | rng.integers(0, 2**31, users.size, dtype=np.int64)
        return np.argsort(key)
    return np.lexsort((rng.random(users.size), users))


def _check_rows(user_index: np.ndarray, item_index: np.ndarray, liked: np.ndarray | None,
                n_users: int, n_items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    users = np.asarray(user_index)
    items = np.asarray(item_index)
    if users.ndim != 1 or items.shape != users.shape:
        raise ValueError("user_index and item_index must be 1-D arrays of the same length")
    if users.size and not (np.issubdtype(users.dtype, np.integer)
                           and np.issubdtype(items.dtype, np.integer)):
        raise ValueError("user_index and item_index must be integer arrays")
    users, items = users.astype(np.int64, copy=False), items.astype(np.int64, copy=False)
    if users.size and (users.min() < 0 or users.max() >= n_users):
        raise ValueError(f"user_index out of range for {n_users} user keys")
    if items.size and (items.min() < 0 or items.max() >= n_items):
        raise ValueError(f"item_index out of range for a catalog of {n_items} items")
    if liked is None:
        return users, items, None
    flags = np.asarray(liked).astype(bool, copy=False)
    if flags.shape != users.shape:
        raise ValueError("liked must have one flag per row")
    return users, items, flags


# ------------------------------------------------------------------ load helpers

def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_manifest(path: Path) -> dict:
    if not path.is_file():
        raise ValueError(f"{path}: missing file (not a saved row model)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: corrupt file ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} manifest")
    if manifest.get("version") != VERSION:
        raise ValueError(f"{path}: version {manifest.get('version')!r} not supported "
                         f"(this recsynth reads {VERSION})")
    return manifest


def _read_tables(directory: Path, files: dict[str, str]) -> dict[str, pl.DataFrame]:
    for name in ("template.parquet", "items.parquet"):
        if name not in files:
            raise ValueError(f"{directory / MANIFEST}: does not list {name}")
    tables = {}
    for name, digest in files.items():
        path = directory / name
        if Path(name).name != name or not path.is_file():
            raise ValueError(f"{path}: missing file")
        if _sha256(path) != digest:
            raise ValueError(f"{path}: corrupt file (checksum does not match {MANIFEST})")
        try:
            tables[name] = pl.read_parquet(path)
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise ValueError(f"{path}: corrupt file ({exc})") from None
    return tables


def _restore_part(j: int, spec: dict, dtype: pl.DataType, tables: dict[str, pl.DataFrame],
                  ctx: Context) -> Part:
    kind = spec["kind"]
    if kind not in PARTS:
        raise ValueError(f"column {spec['name']!r}: unknown kind {kind!r}")
    prefix = f"col{j:02d}."
    own = {name[len(prefix):-len(".parquet")]: t for name, t in tables.items()
           if name.startswith(prefix)}
    needed = {"categorical": ("levels", "counts"), "rating": ("levels", "counts"),
              "numeric": ("items",)}.get(kind, ())
    for suffix in needed:
        if suffix not in own:
            raise ValueError(f"column {spec['name']!r}: {prefix}{suffix}.parquet is not "
                             f"listed in {MANIFEST}")
    return PARTS[kind].restore(spec["name"], dtype, spec, own, ctx)  # type: ignore[attr-defined]
