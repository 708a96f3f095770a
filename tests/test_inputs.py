"""evaluate's inputs: which rows are positives, which value a held-out user's attribute has."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from recsynth.encode import encode_users
from recsynth.inputs import load_inputs
from recsynth.schema import infer_schema

NAN = float("nan")


def _log(users: list[int], items: list[int], ratings: list[float],
         country: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"user_id": users, "item_id": items, "rating": ratings,
                         "country": country})


def _write(tmp_path: Path, train: pl.DataFrame, holdout: pl.DataFrame) -> tuple[str, str]:
    t, h = tmp_path / "train.parquet", tmp_path / "holdout.parquet"
    train.write_parquet(t)
    holdout.write_parquet(h)
    return str(t), str(h)


def test_a_nan_rating_is_not_a_positive_nor_liked(tmp_path: Path) -> None:
    # NaN sorts above every number in polars: a bare `rating >= 4` would keep it
    train = _log([1, 1, 1, 2, 2, 2], [10, 11, 12, 10, 11, 12], [5.0, NAN, 2.0, 4.0, NAN, NAN],
                 ["a", "a", "a", "b", "b", "b"])
    holdout = _log([3, 3, 3], [10, 11, 12], [NAN, 4.5, 1.0], ["a", "a", "a"])
    inputs = load_inputs(*_write(tmp_path, train, holdout), None, min_rating=4.0)
    assert inputs.train.all_items.matrix.nnz == 6
    assert inputs.train.positives.matrix.nnz == 2  # (1, 10) and (2, 10)
    assert inputs.holdout.positives.matrix.nnz == 1  # (3, 11)
    schema = infer_schema(train.lazy(), "train")
    enc, _ = encode_users([train], schema, pl.Series([1, 2]), pl.Series([10, 11, 12]), 4.0,
                       "train")
    assert enc.channels[0].nnz == 2  # liked: the rows rated >= 4, not the NaN ones


def test_held_out_attributes_do_not_depend_on_row_order(tmp_path: Path) -> None:
    train = _log([1, 1, 2, 2], [10, 11, 10, 12], [5.0, 4.0, 3.0, 5.0], ["a", "a", "b", "b"])
    # user 3's rows disagree (and one is null): its value is the smallest non-null one
    holdout = pl.DataFrame({"user_id": [3, 3, 3, 4], "item_id": [10, 11, 12, 10],
                            "rating": [5.0, 4.0, 3.0, 5.0], "country": [None, "b", "a", "b"]})
    t, h = _write(tmp_path, train, holdout)
    first = load_inputs(t, h, None).user_attributes
    holdout.reverse().write_parquet(h)
    again = load_inputs(t, h, None).user_attributes
    assert first is not None and first.equals(again)
    assert dict(first.iter_rows()) == {3: "a", 4: "b"}
    assert np.array_equal(first.get_column("user_id").to_numpy(), [3, 4])
