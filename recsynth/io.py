"""Parquet in (file, directory of parts or glob, read lazily) and atomic files out."""

from __future__ import annotations

import glob as globlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote

import polars as pl

from recsynth.errors import DataError, OutputExistsError, UsageError, first_line

_MAGIC = b"PAR1"


def resolve_parquet_paths(spec: str | os.PathLike[str]) -> list[Path]:
    """Expand a file, a directory of Parquet parts or a glob into sorted file paths."""
    text = os.fspath(spec)
    path = Path(text)
    if any(ch in text for ch in "*?["):
        files = sorted(Path(p) for p in globlib.glob(text, recursive=True) if Path(p).is_file())
        if not files:
            raise DataError(f"{text}: no file matches this glob")
    elif path.is_dir():
        models = {w.parent for w in path.rglob("weights.pt")}  # recsynth model directories
        files = sorted(p for p in path.rglob("*.parquet")
                       if p.is_file() and _is_data(path, p, models))
        if not files:
            raise DataError(f"{text}: directory holds no *.parquet file")
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"{text}: no such file or directory")
    for f in files:
        _check_parquet_file(f)
    return files


def _is_data(root: Path, file: Path, models: set[Path]) -> bool:
    """A part of the log under directory `root`: not hidden or underscored ('.tmp' files of
    an unfinished write, Spark's '_temporary'), not inside one of the `models` directories."""
    if any(p.startswith((".", "_")) for p in file.relative_to(root).parts):
        return False
    return not any(d in models for d in file.parents if d != root and d.is_relative_to(root))


def _hive(root: Path, files: list[Path]) -> bool:
    """Parts under key=value folders (Spark, polars, pyarrow datasets): read the keys too."""
    return any("=" in p for f in files for p in f.relative_to(root).parts[:-1])


def _check_parquet_file(path: Path) -> None:
    """Reject empty and non-Parquet files up front, before polars gives a vaguer error."""
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"{path}: file is empty (0 bytes), not Parquet")
    if size < 12:
        raise DataError(f"{path}: not a Parquet file (too short)")
    with path.open("rb") as fh:
        head = fh.read(4)
        fh.seek(-4, os.SEEK_END)
        tail = fh.read(4)
    if head != _MAGIC or tail != _MAGIC:
        raise DataError(f"{path}: not a Parquet file (no PAR1 magic bytes)")


def scan(spec: str | os.PathLike[str]) -> pl.LazyFrame:
    """A lazy frame over every part; parts must agree on column names and dtypes."""
    files = resolve_parquet_paths(spec)
    first = _file_schema(files[0])
    for f in files[1:]:
        other = _file_schema(f)
        if set(other) != set(first):
            missing = sorted(set(first) ^ set(other))
            raise DataError(f"{f}: columns differ from {files[0]} (column {missing[0]!r})")
        for name, dtype in other.items():
            if dtype != first[name]:
                raise DataError(
                    f"{f}: column {name!r} is {dtype} here but {first[name]} in {files[0]}"
                )
    root = Path(os.fspath(spec))
    hive = root.is_dir() and _hive(root, files)
    if hive:
        _check_hive_keys(root, files, first)
    return pl.scan_parquet([str(f) for f in files], hive_partitioning=hive)


def _check_hive_keys(root: Path, files: list[Path], columns: dict[str, pl.DataType]) -> None:
    """A key=value folder over files that also hold the key column must agree with them
    (polars' own partitioned writes keep the column): polars lets the folder win silently."""
    for f in files:
        for part in f.relative_to(root).parts[:-1]:
            key, equals, value = part.partition("=")
            if not equals or key not in columns:
                continue
            held = pl.read_parquet(f, columns=[key]).get_column(key).cast(pl.String).unique()
            if held.to_list() not in ([unquote(value)], []):
                raise DataError(f"{f}: folder {part!r} names column {key!r}, which the file "
                                "also holds with other values; rename the folder or drop "
                                "the column")


def _file_schema(path: Path) -> dict[str, pl.DataType]:
    try:
        return dict(pl.read_parquet_schema(path))
    except Exception as exc:  # polars/pyarrow raise several types for corrupt files
        raise DataError(f"{path}: cannot read Parquet metadata ({first_line(exc)})") from None


def collect(lf: pl.LazyFrame, source: str | os.PathLike[str],
            streaming: bool = False) -> pl.DataFrame:
    """Collect, turning engine errors into one-line DataErrors that name the source;
    `streaming` for aggregations over logs larger than memory."""
    try:
        return lf.collect(engine="streaming") if streaming else lf.collect()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"{os.fspath(source)}: cannot read ({first_line(exc)})") from None


_PART = re.compile(r"part-\d{5,}\.parquet")


def check_writable(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """Refuse to replace existing data unless asked (and a folder recsynth did not write,
    even when asked), and an output that cannot be created; checked before any work
    starts. Creates no folder, so a run that fails leaves none behind (`made_parents`
    creates them when the output is written); only a probe file, removed at once."""
    out = Path(path)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out}: already exists (pass --overwrite to replace it)")
    if out.is_dir() and not _written_by_us(out):
        raise UsageError(f"{out}: is a directory recsynth did not write (neither a model nor "
                         "part files); refusing to replace it, even with --overwrite")
    _, ancestor = _missing_folders(out)
    if not ancestor.is_dir():
        raise UsageError(f"{out}: cannot be written ({ancestor} is not a directory)")
    try:  # a real file, not os.access: root passes os.access even where nothing can be made
        fd, probe = tempfile.mkstemp(prefix=".recsynth-probe-", dir=ancestor)
    except OSError as exc:
        raise UsageError(f"{out}: cannot be written ({ancestor}: "
                         f"{exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)
    return out


def _written_by_us(directory: Path) -> bool:
    """An empty folder, a model directory, or a directory of part files only (one is
    written whole in a temp folder, so nothing else is left in it): what --overwrite may
    replace. Anything else may hold a user's data (even the input, or a .git folder)."""
    if (directory / "config.json").is_file() and (directory / "weights.pt").is_file():
        return True
    return all(_PART.fullmatch(p.name) for p in directory.iterdir())


def _missing_folders(path: str | os.PathLike[str]) -> tuple[list[Path], Path]:
    """The folders above `path` that do not exist (deepest first), and the nearest that does."""
    missing = []
    parent = Path(path).absolute().parent
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    return missing, parent


@contextmanager
def made_parents(path: str | os.PathLike[str]) -> Iterator[None]:
    """Create the missing folders above `path`; if the block fails, remove those of them
    that are still empty, so a failed run leaves the file system as it found it."""
    missing, _ = _missing_folders(path)
    Path(path).absolute().parent.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for folder in missing:  # deepest first
            try:
                folder.rmdir()
            except OSError:  # something else was written there meanwhile: keep it
                break
        raise


@contextmanager
def atomic_path(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename onto it only if the block succeeds.

    A crash or Ctrl-C leaves the destination untouched, the temp path removed and no
    folder created for it.
    """
    out = check_writable(path, overwrite)
    with made_parents(out), _atomic(out) as tmp:
        yield tmp


@contextmanager
def _atomic(out: Path) -> Iterator[Path]:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        yield tmp
        if out.exists() and (out.is_dir() or tmp.is_dir()):  # os.replace cannot swap kinds
            backup = tmp.with_name(f"{tmp.name}.old")
            os.replace(out, backup)
            os.replace(tmp, out)
            _remove(backup)
            return
        os.replace(tmp, out)
    finally:
        _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def write_parquet(df: pl.DataFrame, path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    with atomic_path(path, overwrite) as tmp:
        df.write_parquet(tmp)
    return Path(path)


def write_text(text: str, path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    with atomic_path(path, overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


