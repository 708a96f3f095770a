from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from recsynth import io
from recsynth.errors import DataError, OutputExistsError, UsageError


def _write(path: Path, df: pl.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.write_parquet(path)
    return path


def test_file_directory_and_glob_resolve_to_the_same_rows(tmp_path: Path) -> None:
    a = _write(tmp_path / "parts" / "a.parquet", pl.DataFrame({"user_id": [1, 2], "item_id": [3, 4]}))
    _write(tmp_path / "parts" / "b.parquet", pl.DataFrame({"user_id": [5], "item_id": [6]}))
    assert io.resolve_parquet_paths(a) == [a]
    assert io.scan(tmp_path / "parts").collect().height == 3
    assert io.scan(str(tmp_path / "parts" / "*.parquet")).collect().height == 3


def test_directory_reads_hive_keys_and_skips_models_and_hidden_parts(tmp_path: Path) -> None:
    log = tmp_path / "log"
    _write(log / "country=FR" / "a.parquet", pl.DataFrame({"user_id": [1, 2], "item_id": [3, 4]}))
    _write(log / "country=DE" / "b.parquet", pl.DataFrame({"user_id": [5], "item_id": [6]}))
    # a model written into the data folder, an unfinished write, a Spark marker folder
    _write(log / "model" / "catalog.parquet", pl.DataFrame({"item": [3]}))
    (log / "model" / "weights.pt").write_bytes(b"x")
    _write(log / ".out.abc.tmp" / "part-00000.parquet", pl.DataFrame({"x": [1]}))
    _write(log / "_temporary" / "p.parquet", pl.DataFrame({"x": [1]}))
    assert [p.parent.name for p in io.resolve_parquet_paths(log)] == ["country=DE", "country=FR"]
    frame = io.scan(log).collect().sort("user_id")
    assert frame.columns == ["user_id", "item_id", "country"]
    assert frame["country"].to_list() == ["FR", "FR", "DE"]
    # a folder key that the file also holds would replace the file's values: refused
    _write(log / "country=FR" / "a.parquet",
           pl.DataFrame({"user_id": [1, 2], "item_id": [3, 4], "country": ["ES", "UK"]}))
    _write(log / "country=DE" / "b.parquet",
           pl.DataFrame({"user_id": [5], "item_id": [6], "country": ["PT"]}))
    with pytest.raises(DataError, match="names column 'country', which the file also holds"):
        io.scan(log)
    # polars' own partitioned write keeps the column, with the folder's value: read as is
    kept = tmp_path / "kept"
    pl.DataFrame({"user_id": [1, 2, 3], "item_id": [3, 4, 5], "country": ["FR", "FR", "DE"]}
                 ).write_parquet(kept, partition_by="country")
    assert io.scan(kept).collect().sort("user_id")["country"].to_list() == ["FR", "FR", "DE"]


@pytest.mark.parametrize("content,problem", [(b"", "empty"), (b"user_id,item_id\n1,2\n", "not a Parquet")])
def test_empty_or_non_parquet_file_is_named(tmp_path: Path, content: bytes, problem: str) -> None:
    bad = tmp_path / "log.parquet"
    bad.write_bytes(content)
    with pytest.raises(DataError, match=problem) as err:
        io.scan(bad)
    assert str(bad) in str(err.value)


def test_missing_path_and_empty_glob(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        io.scan(tmp_path / "nope.parquet")
    with pytest.raises(DataError, match="no file matches"):
        io.scan(str(tmp_path / "*.parquet"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no \\*.parquet"):
        io.scan(tmp_path / "empty")


def test_mixed_dtypes_across_parts_name_file_and_column(tmp_path: Path) -> None:
    _write(tmp_path / "p" / "a.parquet", pl.DataFrame({"user_id": [1], "item_id": [3]}))
    b = _write(tmp_path / "p" / "b.parquet", pl.DataFrame({"user_id": ["x"], "item_id": [3]}))
    with pytest.raises(DataError, match="'user_id' is String") as err:
        io.scan(tmp_path / "p")
    assert str(b) in str(err.value)


def test_atomic_write_leaves_nothing_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "out.parquet"
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_refused_without_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("keep me")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        io.write_text("new", target)
    assert target.read_text() == "keep me"
    io.write_text("new", target, overwrite=True)
    assert target.read_text() == "new"


@pytest.mark.parametrize("old_is_dir,new_is_dir", [(False, True), (True, False),
                                                    (True, True)])
def test_overwrite_swaps_a_file_and_a_directory_either_way(
        tmp_path: Path, old_is_dir: bool, new_is_dir: bool) -> None:
    out = tmp_path / "out"
    if old_is_dir:
        out.mkdir()
        (out / "part-00000.parquet").write_text("old")
    else:
        out.write_text("old")
    with io.atomic_path(out, overwrite=True) as tmp:
        if new_is_dir:
            tmp.mkdir()
            (tmp / "part-00000.parquet").write_text("new")
        else:
            tmp.write_text("new")
    assert out.is_dir() == new_is_dir
    assert (out / "part-00000.parquet" if new_is_dir else out).read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temp or backup left


def test_a_failed_write_leaves_no_folder_it_created(tmp_path: Path) -> None:
    out = tmp_path / "new" / "deeper" / "out.parquet"
    assert io.check_writable(out, overwrite=False) == out
    assert not (tmp_path / "new").exists()  # checked, not created
    with pytest.raises(RuntimeError), io.atomic_path(out) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert not (tmp_path / "new").exists()
    with io.atomic_path(out) as tmp:
        tmp.write_text("whole")
    assert out.read_text() == "whole"


def test_a_failed_write_keeps_a_created_folder_that_got_other_files(tmp_path: Path) -> None:
    out = tmp_path / "new" / "out.parquet"
    with pytest.raises(RuntimeError), io.atomic_path(out):
        (tmp_path / "new" / "checkpoint.pt").write_text("kept")
        raise RuntimeError("interrupted")
    assert (tmp_path / "new" / "checkpoint.pt").read_text() == "kept"


def test_an_output_under_a_file_is_refused_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is not a directory"):
        io.check_writable(tmp_path / "file" / "sub" / "out.parquet", overwrite=False)


def test_overwrite_never_replaces_a_folder_recsynth_did_not_write(tmp_path: Path) -> None:
    """`split data.parquet --train . --overwrite` once emptied the folder, input and all."""
    data = tmp_path / "in.parquet"
    data.write_text("the user's input")
    with pytest.raises(UsageError, match="recsynth did not write"):
        io.check_writable(tmp_path, overwrite=True)
    assert data.read_text() == "the user's input"
    model = tmp_path / "model"
    model.mkdir()
    for name in ("config.json", "weights.pt", "catalog.parquet"):
        (model / name).write_text("x")
    parts = tmp_path / "parts"
    parts.mkdir()
    (parts / "part-00000.parquet").write_text("x")
    empty = tmp_path / "empty"
    empty.mkdir()
    dotted = tmp_path / "repo"  # hidden files are a user's too (.git, .env)
    dotted.mkdir()
    (dotted / ".env").write_text("secret")
    with pytest.raises(UsageError, match="recsynth did not write"):
        io.check_writable(dotted, overwrite=True)
    for ours in (model, parts, empty):
        assert io.check_writable(ours, overwrite=True) == ours


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux /proc")
def test_a_folder_nothing_can_be_created_in_is_refused_up_front() -> None:
    """Checked by creating a file, not os.access, which says yes to root everywhere."""
    with pytest.raises(UsageError, match="cannot be written"):
        io.check_writable("/proc/out.parquet", overwrite=False)
