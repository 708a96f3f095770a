"""Streaming fit (issue 6): batched encoding, --cache-dir, the per-row model's user sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsynth import encode
from recsynth import schema as schema_mod
from recsynth.cli import main
from recsynth.encode import encode_users
from recsynth.errors import DataError
from recsynth.schema import Column, Schema, infer_schema
from recsynth.streaming import sample_users

RATED = Schema((Column("u", "user_key"), Column("i", "item_key"), Column("r", "rating")))


def rated_log(seed: int = 0, n: int = 3000) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    ratings = rng.integers(1, 6, n).astype(float)
    ratings[rng.random(n) < 0.1] = np.nan
    return pl.DataFrame({"u": rng.integers(0, 80, n), "i": rng.integers(0, 60, n) * 7,
                         "r": ratings}).with_columns(pl.col("r").fill_nan(None))


def keys(frame: pl.DataFrame, col: str) -> pl.Series:
    return frame.get_column(col).unique().sort()


def test_encoding_does_not_depend_on_batch_size_or_order(
        monkeypatch: pytest.MonkeyPatch) -> None:
    log = rated_log()
    users, catalog = keys(log, "u"), keys(log, "i")
    whole, rows = encode_users([log], RATED, users, catalog, 4.0, "log")
    shuffled = log.sample(fraction=1.0, shuffle=True, seed=1)
    monkeypatch.setattr(encode, "BATCH_PAIRS", 50)  # fold batches in every few batches
    small, rows_small = encode_users(shuffled.iter_slices(7), RATED, users, catalog, 4.0, "log")
    for a, b in zip(whole.channels, small.channels, strict=True):
        assert (a != b).nnz == 0
    assert np.array_equal(rows, rows_small) and rows.sum() == log.height
    assert np.array_equal(whole.activity, small.activity)
    # a pair is liked when its best rating reaches the threshold
    best = log.group_by("u", "i").agg(pl.col("r").max())
    liked = best.filter(pl.col("r") >= 4)
    assert whole.channels[0].nnz == liked.height
    assert whole.channels[0].nnz + whole.channels[1].nnz == best.height
    u = int(np.searchsorted(users.to_numpy(), liked["u"][0]))
    i = int(np.searchsorted(catalog.to_numpy(), liked["i"][0]))
    assert whole.channels[0][u, i] == 1 and whole.channels[1][u, i] == 0


def test_an_item_outside_the_catalog_is_a_data_error() -> None:
    log = rated_log()
    catalog = keys(log, "i")
    catalog = catalog.filter(catalog != 7)
    with pytest.raises(DataError, match="column 'i' has item key 7 not in the real catalog"):
        encode_users([log], RATED, keys(log, "u"), catalog, None, "log.parquet")


def test_user_sample_takes_whole_users_up_to_the_row_budget() -> None:
    users = pl.Series("u", np.arange(100))
    rows = np.random.default_rng(0).integers(1, 50, 100)
    chosen = sample_users(users, rows, 500, seed=3)
    assert chosen.is_sorted() and 0 < len(chosen) < 100
    assert rows[chosen.to_numpy()].sum() <= 500
    assert chosen.equals(sample_users(users, rows, 500, seed=3))
    assert not chosen.equals(sample_users(users, rows, 500, seed=4))
    assert sample_users(users, rows, int(rows.sum()), seed=3).equals(users)


def test_schema_of_a_large_log_comes_from_whole_users(monkeypatch: pytest.MonkeyPatch,
                                                     sample_frame: pl.DataFrame) -> None:
    frame = sample_frame.with_columns(
        (pl.col("user_id") % 7).cast(pl.String).alias("segment"))  # user-constant
    full = infer_schema(frame.lazy(), "log")
    monkeypatch.setattr(schema_mod, "SCHEMA_ROWS", frame.height // 4)
    sampled = infer_schema(frame.lazy(), "log")
    assert sampled.column("segment").level == "user" == full.column("segment").level
    for col in ("user_id", "item_id", "timestamp", "quantity", "invoice_no"):
        assert sampled.column(col) == full.column(col)


@pytest.fixture(scope="module")
def small_log(tmp_path_factory: pytest.TempPathFactory, sample_frame: pl.DataFrame) -> Path:
    users = sample_frame["user_id"].unique().sort().head(150)
    path = tmp_path_factory.mktemp("log") / "log.parquet"
    sample_frame.filter(pl.col("user_id").is_in(users.implode())).write_parquet(path)
    return path


def test_cache_dir_is_reused_and_keyed_by_the_data(small_log: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache"
    fit = ["fit", str(small_log), "--epochs", "1", "--cache-dir", str(cache)]
    assert main([*fit, "--out", str(tmp_path / "a")]) == 0
    first = capsys.readouterr().err
    assert "encoded users cached in" in first and len(list(cache.iterdir())) == 1
    assert main([*fit, "--out", str(tmp_path / "b")]) == 0
    assert "encoded users read from the cache" in capsys.readouterr().err
    assert (tmp_path / "a" / "weights.pt").read_bytes() == \
        (tmp_path / "b" / "weights.pt").read_bytes()
    # other bytes, other key: the old entry is never read for the new data
    other = tmp_path / "other.parquet"
    pl.read_parquet(small_log).head(-5).write_parquet(other)
    assert main(["fit", str(other), "--epochs", "0", "--cache-dir", str(cache), "--out",
                 str(tmp_path / "c"), "-q"]) == 0
    assert len(list(cache.iterdir())) == 2
    # a damaged entry is rebuilt, not trusted
    for entry in cache.iterdir():
        (entry / "arrays.npz").write_bytes(b"not an npz")
    assert main([*fit, "--out", str(tmp_path / "d")]) == 0
    assert "encoded users cached in" in capsys.readouterr().err
    assert (tmp_path / "d" / "weights.pt").read_bytes() == \
        (tmp_path / "a" / "weights.pt").read_bytes()


def test_row_model_on_a_user_sample_keeps_item_values_of_every_item(
        small_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items = Path(__file__).resolve().parents[1] / "sample_data" / "items.parquet"
    model = tmp_path / "m"
    assert main(["fit", str(small_log), "--items", str(items), "--epochs", "0",
                 "--row-model-rows", "1500", "--out", str(model)]) == 0
    assert "per-row model from" in capsys.readouterr().err
    out = tmp_path / "syn.parquet"
    assert main(["sample", str(model), "--users", "150", "--out", str(out), "-q"]) == 0
    syn = pl.read_parquet(out)
    real = pl.read_parquet(items)
    joined = syn.join(real, on="item_id", suffix="_real")
    assert joined.height == syn.height
    assert (joined["description"] == joined["description_real"]).all()
    assert main(["fit", str(small_log), "--row-model-rows", "0", "--out",
                 str(tmp_path / "bad"), "-q"]) == 2


def test_many_users_fit_on_a_basis_and_a_capped_check(
        small_log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The paths a log with millions of users takes, forced on 150 users: factors and
    mixture from a random basis of users, every user projected; the check on a subset."""
    import json

    from recsynth import fitting, latent
    from recsynth.checkpoint import load_model

    monkeypatch.setattr(latent, "BASIS_USERS", 60)
    monkeypatch.setattr(fitting, "MAX_CHECK_USERS", 25)
    fit = ["fit", str(small_log), "--epochs", "1", "--holdout-frac", "0.3", "-q"]
    assert main([*fit, "--out", str(tmp_path / "a")]) == 0
    assert main([*fit, "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "a" / "weights.pt").read_bytes() == \
        (tmp_path / "b" / "weights.pt").read_bytes()
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["users"] == {"fit": 125, "check": 25}  # unscored held-out users fit
    assert manifest["refit"] is None  # a capped check: no refit, one user matrix held
    assert manifest["rows"] == pl.read_parquet(small_log).height
    model = load_model(tmp_path / "a")
    assert model.form.n_components >= 1 and np.isfinite(model.form.chol).all()
    out = tmp_path / "syn.parquet"
    assert main(["sample", str(tmp_path / "a"), "--users", "50", "--out", str(out), "-q"]) == 0
    assert pl.read_parquet(out)["user_id"].n_unique() == 50
