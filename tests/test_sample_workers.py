"""`sample --workers N`: the same part files for any worker count, disjoint user keys,
usage errors, and nothing left behind by an interrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from recsynth.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory, sample_path: Path) -> Path:
    """A tiny model with a user attribute (country, from the users table) for --where."""
    work = tmp_path_factory.mktemp("workers")
    pl.read_parquet(sample_path).drop("country").write_parquet(work / "log.parquet")
    assert main(["fit", str(work / "log.parquet"), "--users",
                 str(ROOT / "sample_data" / "users.parquet"), "--out", str(work / "model"),
                 "--epochs", "1", "--rank", "8", "--holdout-frac", "0", "--temperature",
                 "0.01", "-q"]) == 0
    return work / "model"


@pytest.fixture(autouse=True)
def importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spawned workers import recsynth from this checkout, whatever is installed."""
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), path) if p))


def sample(model: Path, out: Path, *args: str) -> int:
    return main(["sample", str(model), "--out", str(out), "--batch-users", "16", "-q", *args])


def part_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_two_workers_write_the_same_parts_as_one(model: Path, tmp_path: Path) -> None:
    common = ["--users", "300", "--rows-per-file", "2000", "--filter-quantile", "0.2",
              "--where", "country=United Kingdom"]
    assert sample(model, tmp_path / "one", *common) == 0
    assert sample(model, tmp_path / "two", *common, "--workers", "2") == 0
    one = part_bytes(tmp_path / "one")
    assert len(one) >= 3 and one == part_bytes(tmp_path / "two")
    keys = [set(pl.read_parquet(tmp_path / "one" / name)["user_id"]) for name in one]
    assert sum(map(len, keys)) == len(set().union(*keys)) == 300  # disjoint parts
    assert (pl.read_parquet(tmp_path / "one")["country"] == "United Kingdom").all()
    # a single file holds the same rows in the same order
    assert sample(model, tmp_path / "file.parquet", *common) == 0
    assert pl.read_parquet(tmp_path / "file.parquet").equals(pl.read_parquet(tmp_path / "one"))


def test_rows_target_cuts_at_the_same_user_for_any_worker_count(model: Path,
                                                               tmp_path: Path) -> None:
    common = ["--rows", "7000", "--rows-per-file", "1500"]
    assert sample(model, tmp_path / "file.parquet", "--rows", "7000") == 0
    assert sample(model, tmp_path / "one", *common) == 0
    assert sample(model, tmp_path / "two", *common, "--workers", "2") == 0
    assert part_bytes(tmp_path / "one") == part_bytes(tmp_path / "two")
    whole = pl.read_parquet(tmp_path / "file.parquet")
    assert whole.height >= 7000 and pl.read_parquet(tmp_path / "two").equals(whole)


@pytest.mark.parametrize("args, message", [
    (["--workers", "0"], "--workers must be at least 1"),
    (["--workers", "-2"], "--workers must be at least 1"),
])
def test_workers_usage_errors(model: Path, tmp_path: Path, args: list[str], message: str,
                              capsys: pytest.CaptureFixture[str]) -> None:
    code = sample(model, tmp_path / "out", "--users", "10", *args)
    assert code == 2 and message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_interrupted_parts_leave_nothing(model: Path, tmp_path: Path,
                                        interrupt_batch) -> None:
    interrupt_batch(5)
    assert sample(model, tmp_path / "parts", "--users", "200", "--rows-per-file", "500") == 130
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_stops_the_workers_and_leaves_nothing(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "parts"
    proc = subprocess.Popen([sys.executable, "-m", "recsynth", "sample", str(model), "--out",
                             str(out), "--users", "100000000", "--workers", "2",
                             "--rows-per-file", "2000", "--batch-users", "16", "-q"],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while (proc.poll() is None and time.monotonic() < deadline
           and not any(tmp_path.glob(".parts.*/part-00001.parquet"))):
        time.sleep(0.1)
    children = _children(proc.pid)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
    deadline = time.monotonic() + 20  # multiprocessing's resource tracker exits on its own
    while [c for c in children if _alive(c)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(children) >= 2 and not [c for c in children if _alive(c)]


def _stat(pid: int) -> list[str]:
    """State and parent id (and the rest) of a process from /proc; [] once it is gone."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _children(pid: int) -> list[int]:
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    return [c for c in pids if _stat(c)[1:2] == [str(pid)]]


def _alive(pid: int) -> bool:
    return _stat(pid)[:1] not in ([], ["Z"])  # a zombie has exited
