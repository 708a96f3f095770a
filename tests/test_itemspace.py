"""Large catalogs: head items modelled one by one, the tail through ordinal slots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsynth.cli import main
from recsynth.itemspace import MAX_SLOTS, ItemSpace


def _random_sets(n_users: int, n_items: int, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for u in range(n_users):
        items = np.unique(rng.zipf(1.4, size=rng.integers(1, 40)) % n_items)
        rows += [u] * len(items)
        cols += items.tolist()
    return sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)),
                         shape=(n_users, n_items))


def test_small_catalogs_are_modelled_item_for_item() -> None:
    m = _random_sets(50, 300, 0)
    space = ItemSpace.build(m, 20_000)
    assert not space.capped and space.n_model_items == 300
    assert space.to_model(m) is m


def test_tail_slots_count_each_users_tail_items_and_map_back_to_distinct_items() -> None:
    m = _random_sets(400, 3000, 1)
    space = ItemSpace.build(m, 4 * MAX_SLOTS)
    assert space.capped and space.n_model_items <= 4 * MAX_SLOTS
    assert set(space.head) | set(space.tail) == set(range(3000))
    model = space.to_model(m)
    tail_per_user = np.diff(m[:, space.tail].tocsr().indptr)
    slots_per_user = np.diff(model[:, len(space.head):].tocsr().indptr)
    assert (slots_per_user == np.minimum(tail_per_user, space.n_slots)).all()
    # the most popular items are the head
    pop = np.asarray(m.sum(axis=0)).ravel()
    assert pop[space.head].min() >= pop[space.tail].max()

    coo = model.tocoo()
    order = np.lexsort((coo.col, coo.row))
    users, items = coo.row[order], coo.col[order]
    mapped = space.to_catalog(users, items, np.random.default_rng(0))
    assert len(mapped) == len(items)
    pairs = users.astype(np.int64) * 3000 + mapped
    assert len(np.unique(pairs)) == len(pairs)  # no user gets an item twice
    head_rows = items < len(space.head)
    assert (mapped[head_rows] == space.head[items[head_rows]]).all()
    assert np.isin(mapped[~head_rows], space.tail).all()
    again = space.to_catalog(users, items, np.random.default_rng(0))
    assert (again == mapped).all()


def test_fit_caps_a_large_catalog_and_samples_real_tail_items(sample_path: Path,
                                                              tmp_path: Path) -> None:
    model = tmp_path / "m"
    assert main(["fit", str(sample_path), "--out", str(model), "--max-items", "1024",
                 "--epochs", "1", "--temperature", "0.01", "-q"]) == 0
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["items"] == 2703 and manifest["modelled_items"] <= 1024
    out = tmp_path / "syn.parquet"
    assert main(["sample", str(model), "--users", "200", "--out", str(out), "-q"]) == 0
    real = pl.read_parquet(sample_path)
    syn = pl.read_parquet(out)
    assert set(syn["item_id"]) <= set(real["item_id"])
    head = set(real["item_id"].value_counts(sort=True).head(500)["item_id"])
    assert syn.filter(~pl.col("item_id").is_in(list(head))).height > 0  # the tail is drawn
    assert main(["fit", str(sample_path), "--out", str(tmp_path / "x"),
                 "--max-items", "10"]) == 2


def test_long_tail_augmentation_on_a_capped_model_favours_tail_items(
        sample_path: Path, tmp_path: Path) -> None:
    from recsynth.augment import tail_items

    model = tmp_path / "m"
    assert main(["fit", str(sample_path), "--out", str(model), "--max-items", "1024",
                 "--epochs", "1", "--temperature", "0.01", "-q"]) == 0
    real = pl.read_parquet(sample_path)
    catalog = real["item_id"].unique().sort()
    is_tail = tail_items(real, "user_id", "item_id", catalog)
    tail_keys = set(catalog.filter(pl.Series(is_tail)).to_list())
    shares = {}
    for strategy in ("match", "long-tail"):
        out = tmp_path / f"{strategy}.parquet"
        assert main(["augment", str(sample_path), str(model), "--out", str(out), "--strategy",
                     strategy, "--ratio", "0.5", "--mark-synthetic", "-q"]) == 0
        added = pl.read_parquet(out).filter(pl.col("is_synthetic"))
        shares[strategy] = added["item_id"].is_in(list(tail_keys)).mean()
    assert shares["long-tail"] > shares["match"] + 0.02
