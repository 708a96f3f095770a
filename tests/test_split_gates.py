from __future__ import annotations

import polars as pl
import pytest

from recsynth.errors import DataError, UsageError
from recsynth.gates import apply_gates, parse_gates
from recsynth.split import split_frame


def test_split_keeps_whole_users_and_ignores_row_order(sample_frame: pl.DataFrame) -> None:
    train, hold = split_frame(sample_frame.lazy(), "user_id", 0.2, 7, "s")
    train, hold = train.collect(), hold.collect()
    tu, hu = set(train["user_id"]), set(hold["user_id"])
    assert not tu & hu
    assert len(hu) == 60 and len(tu) == 240
    assert train.height + hold.height == sample_frame.height
    shuffled = sample_frame.sample(fraction=1.0, shuffle=True, seed=3)
    _, hold2 = split_frame(shuffled.lazy(), "user_id", 0.2, 7, "s")
    assert set(hold2.collect()["user_id"]) == hu
    _, hold3 = split_frame(sample_frame.lazy(), "user_id", 0.2, 8, "s")
    assert set(hold3.collect()["user_id"]) != hu


def test_split_rejects_bad_fraction(sample_frame: pl.DataFrame) -> None:
    with pytest.raises(UsageError, match="between 0 and 1"):
        split_frame(sample_frame.lazy(), "user_id", 1.5, 0, "s")


def test_split_of_one_user_names_the_file(sample_frame: pl.DataFrame) -> None:
    one = sample_frame.filter(pl.col("user_id") == sample_frame["user_id"][0])
    with pytest.raises(DataError, match=r"^log\.parquet: column 'user_id': need at least 2"):
        split_frame(one.lazy(), "user_id", 0.2, 0, "log.parquet")


def test_gates_pass_fail_and_aliases() -> None:
    result = {"utility": {"ease": {"ratio": {"ndcg@10": 0.8}}}, "privacy": {"mia_auc": 0.52}}
    gates = parse_gates(["tstr=0.9"], ["privacy.mia_auc=0.6"])
    verdicts = apply_gates(gates, result)
    assert [v["passed"] for v in verdicts] == [False, True]
    assert verdicts[0]["value"] == 0.8
    with pytest.raises(UsageError, match="METRIC=NUMBER"):
        parse_gates(["tstr"], [])
    with pytest.raises(UsageError, match="unknown metric"):
        apply_gates(parse_gates(["utility.nope.ratio=1"], []), result)
