from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from recsynth.errors import DataError
from recsynth.schema import dump_schema, infer_schema, load_schema, resolve_schema


def _roles(schema) -> dict[str, tuple[str, str]]:
    return {c.name: (c.role, c.level) for c in schema.columns}


def test_sample_data_roles(sample_path: Path) -> None:
    s = infer_schema(pl.scan_parquet(sample_path), "sample")
    assert (s.user_col, s.item_col, s.time_col) == ("user_id", "item_id", "timestamp")
    roles = _roles(s)
    assert roles["quantity"][0] == "numeric"
    assert roles["invoice_no"][0] == "identifier"  # > 1000 distinct strings
    assert roles["is_cancellation"][0] == "categorical"
    assert s.column("timestamp").time_unit == "datetime"


def test_common_names_epoch_seconds_rating_and_levels() -> None:
    lf = pl.LazyFrame({
        "userId": [1, 1, 2, 2, 3],
        "movieId": [10, 11, 10, 12, 11],
        "rating": [4.0, 3.5, 5.0, 1.0, 2.0],
        "ts": [964982703, 964981247, 964982224, 964983815, 964982931],
        "gender": ["F", "F", "M", "M", "F"],
        "genre": ["a", "b", "a", "c", "b"],
        "event": ["view", "buy", "buy", "view", "view"],
    })
    s = infer_schema(lf, "ml")
    assert (s.user_col, s.item_col, s.time_col, s.rating_col) == ("userId", "movieId", "ts", "rating")
    assert s.column("ts").time_unit == "s"
    roles = _roles(s)
    assert roles["gender"] == ("categorical", "user")
    assert roles["genre"] == ("categorical", "item")
    assert roles["event"] == ("categorical", "row")


def test_retail_style_names() -> None:
    lf = pl.LazyFrame({"CustomerID": [1, 2], "StockCode": ["A", "B"],
                       "InvoiceDate": [datetime(2011, 1, 1), datetime(2011, 1, 2)]})
    s = infer_schema(lf, "retail")
    assert (s.user_col, s.item_col, s.time_col) == ("CustomerID", "StockCode", "InvoiceDate")


def test_overrides_win_and_unknown_override_is_named() -> None:
    lf = pl.LazyFrame({"a": [1, 2], "b": [3, 4], "user_id": [5, 6]})
    s = infer_schema(lf, "x", user_col="a", item_col="b")
    assert (s.user_col, s.item_col) == ("a", "b")
    with pytest.raises(DataError, match="'nope' given by --item-col"):
        infer_schema(lf, "x", item_col="nope")


def test_missing_key_column_says_how_to_fix() -> None:
    with pytest.raises(DataError, match="no item key column.*--item-col"):
        infer_schema(pl.LazyFrame({"user_id": [1], "thing": [2.0]}), "f.parquet")


@pytest.mark.parametrize("fmt,suffix", [("toml", ".toml"), ("json", ".json")])
def test_schema_file_round_trip(sample_path: Path, tmp_path: Path, fmt: str, suffix: str) -> None:
    lf = pl.scan_parquet(sample_path)
    s = infer_schema(lf, "sample")
    path = tmp_path / f"schema{suffix}"
    path.write_text(dump_schema(s, fmt))
    assert load_schema(path) == s
    edited = path.read_text().replace('"identifier"', '"categorical"')
    path.write_text(edited)
    assert resolve_schema(lf, "sample", str(path)).column("invoice_no").role == "categorical"


def test_schema_file_timestamp_must_be_a_datetime_or_integer_epoch(tmp_path: Path) -> None:
    """The same rule as inference, before any work (a float epoch used to fail after the GAN)."""
    lf = pl.LazyFrame({"u": [1, 2], "i": [3, 4], "ts": [1.5e9, float("nan")]})
    path = tmp_path / "s.toml"
    path.write_text('[columns."u"]\nrole = "user_key"\n[columns."i"]\nrole = "item_key"\n'
                    '[columns."ts"]\nrole = "timestamp"\ntime_unit = "s"\n')
    with pytest.raises(DataError, match="f.parquet: column 'ts' is Float64, not a datetime"):
        resolve_schema(lf, "f.parquet", str(path))
    ok = lf.with_columns(pl.col("ts").fill_nan(0).cast(pl.Int64))
    assert resolve_schema(ok, "f.parquet", str(path)).time_col == "ts"


@pytest.mark.parametrize("text,problem", [
    ("not = [valid", "cannot parse"),
    ('[columns."u"]\nrole = "user_key"\n', "exactly one item_key"),
    ('[columns."u"]\nrole = "boss"\n', "role 'boss'"),
])
def test_bad_schema_files(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(DataError, match=problem) as err:
        load_schema(path)
    assert str(path) in str(err.value)


def test_unreadable_schema_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read schema"):
        load_schema(tmp_path / "missing.toml")
