from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.stats import ks_2samp

from recsynth.rowmodel import MANIFEST, RowModel
from recsynth.schema import Column, Schema, infer_schema


def _catalog(frame: pl.DataFrame, item: str = "item_id") -> pl.Series:
    return frame.get_column(item).unique().sort()


def _replay(frame: pl.DataFrame, catalog: pl.Series, user: str = "user_id",
            item: str = "item_id") -> tuple[np.ndarray, np.ndarray, pl.Series]:
    """The real (user, item) rows as indices, grouped by user, with fresh user keys."""
    users = frame.get_column(user).unique().sort()
    ui = frame.get_column(user).replace_strict(users, np.arange(len(users))).to_numpy()
    ii = frame.get_column(item).replace_strict(catalog, np.arange(len(catalog))).to_numpy()
    order = np.argsort(ui, kind="stable")
    keys = pl.Series(user, np.arange(len(users)) + 10_000_000, dtype=frame.schema[user])
    return ui[order], ii[order], keys


def _tvd(a: pl.Series, b: pl.Series) -> float:
    pa = a.value_counts(normalize=True).rename({"proportion": "a"})
    pb = b.value_counts(normalize=True).rename({"proportion": "b"})
    both = pa.join(pb, on=a.name, how="full", coalesce=True, nulls_equal=True).fill_null(0)
    return 0.5 * float((both["a"] - both["b"]).abs().sum())


@pytest.fixture(scope="module")
def fitted(sample_frame: pl.DataFrame) -> tuple[RowModel, pl.DataFrame]:
    """The sample log replayed through a model fit on it (real item frequencies).

    The replay already holds the real repeat rows, so repeats are not added again.
    """
    schema = infer_schema(sample_frame.lazy(), "sample")
    catalog = _catalog(sample_frame)
    model = RowModel.fit(sample_frame, schema, catalog, None)
    ui, ii, keys = _replay(sample_frame, catalog)
    return model, model.sample(ui, ii, None, keys, np.random.default_rng(0), repeats=False)


def test_same_columns_dtypes_and_order(fitted, sample_frame):
    _, out = fitted
    assert out.schema == sample_frame.schema
    assert out.height == sample_frame.height


def test_keys_come_from_user_keys_and_catalog(sample_frame):
    schema = infer_schema(sample_frame.lazy(), "sample")
    catalog = _catalog(sample_frame)
    model = RowModel.fit(sample_frame, schema, catalog, None)
    users = np.array([0, 0, 0, 2, 2])
    items = np.array([5, 1, 7, 3, 3])
    keys = pl.Series("user_id", [101, 102, 103])
    out = model.sample(users, items, None, keys, np.random.default_rng(1), repeats=False)
    assert out.get_column("user_id").to_list() == [101] * 3 + [103] * 2
    got = out.group_by("user_id").agg(pl.col("item_id").sort()).sort("user_id")
    assert got.get_column("item_id").to_list() == [
        sorted(catalog.gather([5, 1, 7]).to_list()), sorted(catalog.gather([3, 3]).to_list())]


def test_timestamps_ordered_within_user_and_in_range(fitted, sample_frame):
    _, out = fitted
    unordered = out.group_by("user_id").agg(
        (pl.col("timestamp").diff() < pl.duration(microseconds=0)).any().alias("bad"))
    assert not unordered.get_column("bad").any()
    assert out["timestamp"].min() >= sample_frame["timestamp"].min()
    assert out["timestamp"].max() <= sample_frame["timestamp"].max()
    # the real log is minute-level; synthetic times stay on that grid
    assert (out["timestamp"].dt.second() == 0).all()


def test_identifiers_are_new_and_one_per_session(fitted, sample_frame):
    _, out = fitted
    assert not out["invoice_no"].is_in(sample_frame["invoice_no"].implode()).any()
    per_user = out.group_by("user_id").agg(pl.col("timestamp").n_unique().alias("t"),
                                           pl.col("invoice_no").n_unique().alias("i"))
    assert (per_user["t"] == per_user["i"]).all()
    # session structure close to the real one (many rows per invoice)
    assert out["invoice_no"].n_unique() == pytest.approx(sample_frame["invoice_no"].n_unique(),
                                                         rel=0.25)


@pytest.mark.parametrize("col", ["country", "is_cancellation"])
def test_categorical_marginals_match(fitted, sample_frame, col):
    _, out = fitted
    assert _tvd(out[col], sample_frame[col]) < 0.03


@pytest.mark.parametrize("col", ["quantity", "unit_price"])
def test_numeric_marginals_match(fitted, sample_frame, col):
    _, out = fitted
    assert ks_2samp(out[col].to_numpy(), sample_frame[col].to_numpy()).statistic < 0.05


def test_same_seed_same_frame(fitted, sample_frame):
    model, out = fitted
    ui, ii, keys = _replay(sample_frame, model.catalog)
    assert model.sample(ui, ii, None, keys, np.random.default_rng(0),
                        repeats=False).equals(out)
    assert not model.sample(ui, ii, None, keys, np.random.default_rng(1),
                            repeats=False).equals(out)


def test_empty_sample_has_the_schema(fitted, sample_frame):
    model, _ = fitted
    empty = np.array([], dtype=np.int64)
    out = model.sample(empty, empty, None, pl.Series("user_id", [], dtype=pl.Int64),
                       np.random.default_rng(0))
    assert out.height == 0 and out.schema == sample_frame.schema


def test_bad_indices_are_rejected(fitted):
    model, _ = fitted
    keys = pl.Series("user_id", [1])
    with pytest.raises(ValueError, match="item_index"):
        model.sample(np.array([0]), np.array([len(model.catalog)]), None, keys,
                     np.random.default_rng(0))
    with pytest.raises(ValueError, match="user_index"):
        model.sample(np.array([1]), np.array([0]), None, keys, np.random.default_rng(0))


# ------------------------------------------------------------------ user / item levels

@pytest.fixture(scope="module")
def leveled(sample_frame: pl.DataFrame) -> tuple[pl.DataFrame, Schema]:
    """sample_data with a user-constant country and an item-constant price band."""
    frame = sample_frame.with_columns(
        pl.col("country").first().over("user_id"),
        (pl.col("unit_price").first().over("item_id") > 2.0).alias("premium"),
    )
    schema = infer_schema(frame.lazy(), "leveled")
    cols = tuple(replace(c, level="user") if c.name == "country" else c for c in schema.columns)
    schema = Schema(cols)
    assert schema.column("country").level == "user"
    assert schema.column("premium").level == "item"
    return frame, schema


def test_user_and_item_level_columns(leveled):
    frame, schema = leveled
    catalog = _catalog(frame)
    model = RowModel.fit(frame, schema, catalog, None)
    ui, ii, keys = _replay(frame, catalog)
    out = model.sample(ui, ii, None, keys, np.random.default_rng(2))
    assert out.columns == frame.columns
    assert (out.group_by("user_id").agg(pl.col("country").n_unique())["country"] == 1).all()
    assert out["country"].is_in(frame["country"].implode()).all()
    real = frame.group_by("item_id").agg(pl.col("premium").first().alias("real"))
    joined = out.join(real, on="item_id", how="left")
    assert (joined["premium"] == joined["real"]).all()
    per_user = frame.group_by("user_id").agg(pl.col("country").first())["country"]
    drawn = out.group_by("user_id").agg(pl.col("country").first())["country"]
    assert _tvd(drawn, per_user) < 0.1


def test_user_attributes_override_drawn_values(leveled):
    frame, schema = leveled
    catalog = _catalog(frame)
    model = RowModel.fit(frame, schema, catalog, None)
    keys = pl.Series("user_id", [7, 8])
    given = pl.DataFrame({"country": ["Iceland", "Norway"]})
    out = model.sample(np.array([0, 0, 1]), np.array([0, 1, 2]), None, keys,
                       np.random.default_rng(0), user_attributes=given)
    assert dict(zip(out["user_id"], out["country"], strict=True)) == {7: "Iceland", 8: "Norway"}
    with pytest.raises(ValueError, match="rows"):
        model.sample(np.array([0]), np.array([0]), None, keys, np.random.default_rng(0),
                     user_attributes=given.head(1))


# ------------------------------------------------------------------ ratings

@pytest.fixture(scope="module")
def rated() -> tuple[pl.DataFrame, Schema]:
    """A small rated log: 60 users x 40 items, item-dependent ratings, epoch-second times."""
    rng = np.random.default_rng(5)
    users = np.repeat(np.arange(60), 20)
    items = np.concatenate([rng.choice(40, 20, replace=False) for _ in range(60)])
    rating = np.clip(np.rint(1 + items / 10 + rng.normal(0, 1, items.size)), 1, 5)
    frame = pl.DataFrame({
        "user_id": users.astype(np.int32), "movie_id": items.astype(np.int64),
        "stars": pl.Series(rating, dtype=pl.Float64).cast(pl.Int8),
        "ts": (1_000_000_000 + np.cumsum(rng.integers(0, 5000, items.size))).astype(np.int64),
        "review_id": np.arange(items.size, dtype=np.int64) + 500,
    })
    schema = Schema((Column("user_id", "user_key"), Column("movie_id", "item_key"),
                     Column("ts", "timestamp", time_unit="s"), Column("stars", "rating"),
                     Column("review_id", "identifier")))
    return frame, schema


def test_liked_flags_pick_the_rating_half(rated):
    frame, schema = rated
    catalog = _catalog(frame, "movie_id")
    model = RowModel.fit(frame, schema, catalog, like_threshold=4)
    ui, ii, keys = _replay(frame, catalog, "user_id", "movie_id")
    liked = np.random.default_rng(0).random(ui.size) < 0.4
    out = model.sample(ui, ii, liked, keys, np.random.default_rng(3))
    assert out.schema == frame.schema
    flags = pl.DataFrame({"user_id": keys.gather(ui), "movie_id": catalog.gather(ii),
                          "liked": liked})
    joined = out.join(flags, on=["user_id", "movie_id"], how="left")
    assert joined.height == out.height
    assert (joined.filter(pl.col("liked"))["stars"] >= 4).all()
    assert (joined.filter(~pl.col("liked"))["stars"] < 4).all()
    # the rated item's own tendency survives: high-index movies get higher ratings
    full = model.sample(ui, ii, None, keys, np.random.default_rng(3))
    by_item = full.group_by(pl.col("movie_id") >= 20).agg(pl.col("stars").mean())
    low, high = by_item.sort("movie_id")["stars"].to_list()
    assert high > low + 1


def test_null_ratings_and_times_keep_their_real_rates(rated, tmp_path: Path):
    frame, schema = rated
    rng = np.random.default_rng(11)
    frame = frame.with_columns(
        pl.when(pl.Series(rng.random(frame.height) < 0.2)).then(None)
        .otherwise(pl.col("stars")).alias("stars"),
        pl.when(pl.Series(rng.random(frame.height) < 0.15)).then(None)
        .otherwise(pl.col("ts")).alias("ts"))
    catalog = _catalog(frame, "movie_id")
    model = RowModel.fit(frame, schema, catalog, like_threshold=4)
    model.save(tmp_path)
    model = RowModel.load(tmp_path)  # the null rate of the times is saved with the model
    ui, ii, keys = _replay(frame, catalog, "user_id", "movie_id")
    real_liked = (frame.sort("user_id", maintain_order=True)["stars"] >= 4).fill_null(False)
    out = model.sample(ui, ii, real_liked.to_numpy(), keys, np.random.default_rng(3))
    other = frame.filter(~(pl.col("stars") >= 4).fill_null(False))
    real_rate = other["stars"].null_count() / other.height  # nulls are all 'other' rows
    flags = pl.DataFrame({"user_id": keys.gather(ui), "movie_id": catalog.gather(ii),
                          "liked": real_liked})
    joined = out.join(flags, on=["user_id", "movie_id"], how="left")
    syn_other = joined.filter(~pl.col("liked"))
    assert abs(syn_other["stars"].null_count() / syn_other.height - real_rate) < 0.05
    assert joined.filter(pl.col("liked"))["stars"].null_count() == 0
    assert abs(out["ts"].null_count() / out.height - 0.15) < 0.04


def test_epoch_timestamps_and_numeric_identifiers(rated):
    frame, schema = rated
    catalog = _catalog(frame, "movie_id")
    model = RowModel.fit(frame, schema, catalog, like_threshold=4)
    ui, ii, keys = _replay(frame, catalog, "user_id", "movie_id")
    out = model.sample(ui, ii, None, keys, np.random.default_rng(4))
    assert out.schema == frame.schema
    assert out["ts"].min() >= frame["ts"].min() and out["ts"].max() <= frame["ts"].max()
    assert out["review_id"].min() > frame["review_id"].max()


def test_numeric_identifiers_never_repeat_across_batches(rated):
    """Batches are numbered by their first user's run-wide index, so batch 2 (users 60..119)
    never reuses batch 1's invoice or account numbers, even with UInt64 ids past int64."""
    frame, schema = rated
    for top in (500, 2**63 + 7):
        log = frame.with_columns(
            (pl.col("review_id").cast(pl.UInt64) + (top - 500)).alias("review_id"),
            (pl.col("user_id").cast(pl.UInt64) + top).alias("account"))
        account = Schema((*schema.columns, Column("account", "identifier", "user")))
        catalog = _catalog(log, "movie_id")
        model = RowModel.fit(log, account, catalog, like_threshold=4)
        ui, ii, keys = _replay(log, catalog, "user_id", "movie_id")
        one, two = (model.sample(ui, ii, None, keys, np.random.default_rng(b), first_user=60 * b)
                    for b in (0, 1))
        assert one.schema == two.schema == log.schema
        both = pl.concat([one.with_columns(pl.lit(0).alias("b")),
                          two.with_columns(pl.lit(1).alias("b"))])
        for col in ("review_id", "account"):
            assert both[col].null_count() == 0 and both[col].min() > log[col].max()
            owners = both.group_by(col).agg(pl.struct("b", "user_id").n_unique().alias("n"))
            assert (owners["n"] == 1).all(), col  # one (batch, user) per id
        assert both["account"].n_unique() == 120
        # sessions stay distinguishable: one review id per (user, time) session
        per_user = one.group_by("user_id").agg(pl.col("ts").n_unique().alias("t"),
                                               pl.col("review_id").n_unique().alias("i"))
        assert (per_user["t"] == per_user["i"]).all()


def test_numeric_ids_that_do_not_fit_become_null_never_a_real_value():
    """UInt64 hashes near 2^64: past the top an id would wrap onto real ones (8 here)."""
    from recsynth.rowparts import Batch, NewId

    part = NewId.fit(pl.Series("h", [8, 2**64 - 3], dtype=pl.UInt64), per_user=True)
    users = np.arange(3)
    batch = Batch(users, users, None, pl.Series([1, 2, 3]), np.ones(3, bool), np.ones(3, bool),
                  None, None, first_user=0)
    assert part.sample(batch, np.random.default_rng(0)).to_list() == [2**64 - 2, 2**64 - 1,
                                                                      None]
    # one session per user (no timestamp): ids as dense as the users, base + u
    assert NewId.fit(pl.Series("i", [5, 9]), per_user=False, per_real_user=0).stride == 1
    assert NewId.fit(pl.Series("i", [5, 9]), per_user=False, per_real_user=26).stride == 1000


def test_string_identifiers_take_a_separator_no_real_value_holds():
    from recsynth.rowparts import SEPARATORS, NewId

    every = "".join(SEPARATORS)
    part = NewId.fit(pl.Series("invoice", [f"a{every}", "b-s-1", "-s1-x"]), per_user=False)
    assert part.sep == "-s2-"


def test_a_rare_items_own_price_comes_back_at_its_smoothed_weight():
    """Items with 5 rows at one price each: drawn at their own price with probability
    5 / (5 + PRIOR), else from the rare items' pooled values (they used to get the pool only,
    so a 1.65 item came back at anything from 0.2 to 295)."""
    from recsynth.rowvalues import PRIOR

    rng = np.random.default_rng(2)
    rich_items = np.repeat(np.arange(40), 50)
    rare_items = np.repeat(np.arange(40, 100), 5)
    items = np.concatenate([rich_items, rare_items])
    price = np.concatenate([rng.uniform(0, 300, rich_items.size), 1.65 + rare_items])
    frame = pl.DataFrame({"user_id": np.arange(items.size) // 10, "item_id": items,
                          "price": price})
    schema = Schema((Column("user_id", "user_key"), Column("item_id", "item_key"),
                     Column("price", "numeric")))
    catalog = _catalog(frame)
    model = RowModel.fit(frame, schema, catalog, None)
    ui, ii, keys = _replay(pl.concat([frame] * 20), catalog)
    out = model.sample(ui, ii, None, keys, np.random.default_rng(0), repeats=False)
    rare = out.filter(pl.col("item_id") >= 40)
    own = (rare["price"] - 1.65 - rare["item_id"]).abs() < 1e-9
    assert float(own.mean()) == pytest.approx(5 / (5 + PRIOR), abs=0.03)
    assert rare["price"].min() >= 41.65 and rare["price"].max() <= 100.65  # the rare pool


def test_liked_without_threshold_is_an_error(rated):
    frame, schema = rated
    catalog = _catalog(frame, "movie_id")
    model = RowModel.fit(frame, schema, catalog, like_threshold=None)
    with pytest.raises(ValueError, match="like_threshold"):
        model.sample(np.array([0]), np.array([0]), np.array([True]),
                     pl.Series("user_id", [1], dtype=pl.Int32), np.random.default_rng(0))


# ------------------------------------------------------------------ save / load

def test_save_load_round_trip(fitted, sample_frame, tmp_path: Path):
    model, out = fitted
    model.save(tmp_path)
    assert (tmp_path / MANIFEST).is_file()
    assert {p.suffix for p in tmp_path.iterdir()} == {".json", ".parquet"}
    loaded = RowModel.load(tmp_path)
    ui, ii, keys = _replay(sample_frame, model.catalog)
    assert loaded.sample(ui, ii, None, keys, np.random.default_rng(0),
                         repeats=False).equals(out)
    assert loaded.repeats is not None
    pairs = _pairs(sample_frame, model.catalog)
    a = model.sample(*pairs, np.random.default_rng(2))
    assert a.height > pairs[0].size
    assert loaded.sample(*pairs, np.random.default_rng(2)).equals(a)


def test_save_load_round_trip_with_ratings_and_levels(rated, leveled, tmp_path: Path):
    for k, (frame, schema) in enumerate((rated, leveled)):
        item = schema.item_col
        catalog = _catalog(frame, item)
        model = RowModel.fit(frame, schema, catalog, like_threshold=4)
        ui, ii, keys = _replay(frame, catalog, schema.user_col, item)
        liked = np.arange(ui.size) % 3 == 0
        model.save(tmp_path / str(k))
        loaded = RowModel.load(tmp_path / str(k))
        a = model.sample(ui, ii, liked, keys, np.random.default_rng(9))
        b = loaded.sample(ui, ii, liked, keys, np.random.default_rng(9))
        assert a.equals(b)


def test_load_reports_missing_and_corrupt_files(fitted, tmp_path: Path):
    model, _ = fitted
    model.save(tmp_path)
    victim = next(p for p in sorted(tmp_path.glob("col*.parquet")))
    data = victim.read_bytes()
    victim.write_bytes(data[:-20] + bytes(20))
    with pytest.raises(ValueError, match=f"{victim.name}.*corrupt"):
        RowModel.load(tmp_path)
    victim.unlink()
    with pytest.raises(ValueError, match=f"{victim.name}.*missing"):
        RowModel.load(tmp_path)
    (tmp_path / MANIFEST).unlink()
    with pytest.raises(ValueError, match=MANIFEST):
        RowModel.load(tmp_path)
    (tmp_path / MANIFEST).write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="corrupt"):
        RowModel.load(tmp_path)


# ------------------------------------------------------------------ repeat interactions

def _pairs(frame: pl.DataFrame, catalog: pl.Series, user: str = "user_id",
           item: str = "item_id") -> tuple[np.ndarray, np.ndarray, None, pl.Series]:
    """Distinct real (user, item) pairs as indices (what the GAN emits), with user keys."""
    ui, ii, keys = _replay(frame.unique([user, item], maintain_order=True), catalog, user,
                           item)
    return ui, ii, None, keys


def test_repeats_match_the_real_rows_per_pair(fitted, sample_frame):
    model, _ = fitted
    ui, ii, liked, keys = _pairs(sample_frame, model.catalog)
    real_ratio = sample_frame.height / ui.size
    assert real_ratio > 1.2  # sample_data repeats pairs
    out = model.sample(ui, ii, liked, keys, np.random.default_rng(0))
    assert out.height / ui.size == pytest.approx(real_ratio, rel=0.1)
    # every input pair is present, and only input pairs
    got = out.select("user_id", "item_id").unique()
    want = pl.DataFrame({"user_id": keys.gather(ui), "item_id": model.catalog.gather(ii)})
    assert got.sort(got.columns).equals(want.unique().sort(want.columns))
    # rows per user follow the real ones
    rows = out.group_by("user_id").len()["len"].to_numpy()
    real = sample_frame.group_by("user_id").len()["len"].to_numpy()
    assert ks_2samp(rows, real).statistic < 0.1
    # users stay grouped and each user's times do not go back
    user = out["user_id"].to_numpy()
    assert np.unique(user).size == (np.diff(user) != 0).sum() + 1
    back = out.group_by("user_id").agg(
        (pl.col("timestamp").diff() < pl.duration(microseconds=0)).any().alias("bad"))
    assert not back["bad"].any()
    # repeat rows draw their own values: repeated pairs do not all copy one quantity
    repeated = out.group_by("user_id", "item_id").agg(pl.len(), pl.col("quantity").n_unique())
    repeated = repeated.filter(pl.col("len") > 1)
    assert (repeated["quantity"] > 1).mean() > 0.3


def test_repeats_are_deterministic(fitted, sample_frame):
    model, _ = fitted
    pairs = _pairs(sample_frame, model.catalog)
    a = model.sample(*pairs, np.random.default_rng(7))
    assert model.sample(*pairs, np.random.default_rng(7)).equals(a)
    assert not model.sample(*pairs, np.random.default_rng(8)).equals(a)


def test_no_repeats_without_real_repeats(rated):
    frame, schema = rated
    catalog = _catalog(frame, "movie_id")
    model = RowModel.fit(frame, schema, catalog, like_threshold=4)
    assert model.repeats is None
    ui, ii, keys = _replay(frame, catalog, "user_id", "movie_id")
    out = model.sample(ui, ii, None, keys, np.random.default_rng(0))
    assert out.height == ui.size
    assert out.select("user_id", "movie_id").is_unique().all()


def test_repeats_follow_user_activity(fitted, sample_frame):
    """Users with many distinct items repeat them more, as in the real log."""
    model, _ = fitted
    ui, ii, liked, keys = _pairs(sample_frame, model.catalog)
    out = model.sample(ui, ii, liked, keys, np.random.default_rng(3))

    def ratio_by_activity(frame: pl.DataFrame) -> list[float]:
        per_user = frame.group_by("user_id").agg(pl.len().alias("rows"),
                                                 pl.col("item_id").n_unique().alias("pairs"))
        heavy = pl.col("pairs") >= pl.col("pairs").median()
        return [float(per_user.filter(h)["rows"].sum() / per_user.filter(h)["pairs"].sum())
                for h in (~heavy, heavy)]

    real, syn = ratio_by_activity(sample_frame), ratio_by_activity(out)
    assert syn == pytest.approx(real, rel=0.15)


def test_timestamp_marginal_is_calibrated(fitted, sample_frame):
    model, _ = fitted
    assert model.timeline is not None and model.timeline.mode in ("shift", "warp")
    ui, ii, liked, keys = _pairs(sample_frame, model.catalog)
    out = model.sample(ui, ii, liked, keys, np.random.default_rng(4))
    t = out["timestamp"].dt.epoch("s").to_numpy()
    real = sample_frame["timestamp"].dt.epoch("s").to_numpy()
    assert ks_2samp(t, real).statistic < 0.08


def test_load_rejects_bad_repeats_and_timeline(fitted, tmp_path: Path):
    import json

    model, _ = fitted
    for key, field, bad in (("repeats", "user_factor", [1.0]),
                            ("timeline", "mode", "sideways"),
                            ("timeline", "map_to", [0.0]),
                            ("timeline", "sessions", {"gap": 1.0, "edges": [],
                                                      "share_knots": [[0.5]],
                                                      "between_knots": []})):
        target = tmp_path / f"{key}-{field}"
        model.save(target)
        manifest = json.loads((target / MANIFEST).read_text())
        manifest[key][field] = bad
        (target / MANIFEST).write_text(json.dumps(manifest))
        with pytest.raises(ValueError, match=key):
            RowModel.load(target)


def test_user_attribute_combinations_are_k_anonymous() -> None:
    from recsynth.rowmodel import MIN_TUPLE_USERS, USER_COUNT_COL, _fit_user_tuples

    n = 60
    frame = pl.DataFrame({"u": list(range(n)),
                          "gender": ["F" if i % 2 else "M" for i in range(n)],
                          "zip": [f"{i:05d}" if i < 10 else "00000" for i in range(n)]})
    tuples = _fit_user_tuples(frame, "u", ["gender", "zip"])
    small = tuples.filter(pl.col(USER_COUNT_COL) < MIN_TUPLE_USERS)
    assert small.drop(USER_COUNT_COL).null_count().row(0) == (small.height,) * 2  # all null
    assert tuples[USER_COUNT_COL].sum() == n  # every user still counted
    assert set(tuples["zip"].drop_nulls()) == {"00000"}  # unique zips never stored
    assert set(tuples["gender"].drop_nulls()) == {"F", "M"}  # the common column survives
