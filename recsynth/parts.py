"""A directory of part files, written in order or by worker processes, the same either way.

Part k holds the fixed batch range [k·P, (k+1)·P) (batch b is seeded by (seed, b) and its
user keys start at b·batch_users), so its bytes do not depend on which process writes it or
how many there are: `--workers 1` and `--workers 4` give identical directories, and parts
never share a user key. P is chosen once from the rows of batch 0 (deterministic).

Rows mode (`--rows N`, whole users up to at least N rows) cannot know in advance where the
N-th row falls. Each part is written with the budget left after the parts already finished
before it (exact when written in order); the first part whose end crosses N is rewritten
with its exact budget if it was cut from a looser one, and parts after it are deleted. The
result is the in-order result; the cost is at most one part per worker of wasted work.

This module imports only the standard library at the top, so a worker can limit polars'
thread pool before polars loads; each worker runs torch on one thread.
"""

from __future__ import annotations

import os
import pickle
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recsynth.checkpoint import Model
    from recsynth.distributed import World
    from recsynth.sampling import Job, SampleStats

DEFAULT_PART_ROWS = 1_000_000  # part size when --workers is given without --rows-per-file

Submit = Callable[[int, "int | None"], "Future[tuple[int, int]]"]


def part_path(directory: Path, index: int) -> Path:
    return directory / f"part-{index:05d}.parquet"


def batches_per_part(model: Model, job: Job, rows_per_file: int) -> tuple[int, int]:
    """Batches per part so that parts hold about `rows_per_file` rows, judged on batch 0
    (deterministic); and the rows a part is then expected to hold."""
    from recsynth.sampling import generate_batch

    first = max(1, generate_batch(model, job.seed, 0, 0, job.size(0), job.shaping).height)
    per_part = max(1, round(rows_per_file / first))
    return per_part, per_part * first


def write_part(model: Model, job: Job, directory: Path, per_part: int, index: int,
               budget: int | None) -> tuple[int, int]:
    """Part `index` (batches [index·P, (index+1)·P)); returns (users, rows)."""
    from recsynth.sampling import write_batches

    batches = job.batches(index * per_part, (index + 1) * per_part)
    return write_batches(model, part_path(directory, index), job, batches, budget)


def write_parts(model: Model, model_dir: str | os.PathLike[str] | None, directory: Path,
                job: Job, rows_per_file: int, n_rows: int | None, workers: int,
                on_progress: Callable[[int, int], None] = lambda users, rows: None
                ) -> SampleStats:
    """Every part of the run into `directory` (which exists and is empty)."""
    from recsynth.sampling import SampleStats

    per_part, expect = batches_per_part(model, job, rows_per_file)
    with _submitter(model, model_dir, directory, job, per_part, workers) as submit:
        kept = _drive(submit, job, per_part, n_rows, expect,
                      2 * workers if workers > 1 else 1, on_progress)
    for extra in directory.glob("part-*.parquet"):
        if int(extra.stem.split("-")[1]) >= len(kept):  # written past the row target
            extra.unlink()
    return SampleStats(sum(u for u, _ in kept), sum(r for _, r in kept), len(kept))


def write_parts_ranked(model: Model, directory: Path, job: Job, rows_per_file: int,
                       n_rows: int | None, world: World,
                       on_progress: Callable[[int, int], None] = lambda users, rows: None
                       ) -> SampleStats:
    """Under torchrun: rank r writes parts r, r + W, r + 2W, … of the plan `write_parts`
    follows, into the shared `directory`, so the files are the ones any --workers count
    writes. In rows mode the ranks write rounds of parts until the rows are reached; rank 0
    then cuts the crossing part at the exact row and deletes the parts after it."""
    from recsynth.sampling import SampleStats

    # rank 0's plan for all: ranks on other machines must not round differently
    per_part, expect = world.broadcast(batches_per_part(model, job, rows_per_file)
                                       if world.is_main else None)
    done: dict[int, tuple[int, int]] = {}
    start = 0
    n_batches = job.n_batches
    while True:
        if n_batches is not None:
            end = -(-n_batches // per_part)
        else:
            have = sum(r for _, r in done.values())
            if have >= n_rows:
                break
            end = start + max(world.size, -(-(n_rows - have) // expect))
        mine = {k: write_part(model, job, directory, per_part, k, None)
                for k in range(start + world.rank, end, world.size)}
        for part in world.gather(mine):
            done.update(part)
        on_progress(sum(u for u, _ in done.values()), sum(r for _, r in done.values()))
        start = end
        if n_batches is not None:
            break
    kept = len(done)
    if n_rows is not None and world.is_main:
        rows_before = 0
        for k in range(len(done)):
            done[k], last = _settle(done[k], None, n_rows - rows_before,
                                    partial(write_part, model, job, directory, per_part, k))
            if last:
                kept = k + 1
                break
            rows_before += done[k][1]
        for k in range(kept, len(done)):
            part_path(directory, k).unlink()
    parts = [done[k] for k in range(kept)]
    return SampleStats(sum(u for u, _ in parts), sum(r for _, r in parts), kept)


def _drive(submit: Submit, job: Job, per_part: int, n_rows: int | None, expect: int,
           window: int, on_progress: Callable[[int, int], None]) -> list[tuple[int, int]]:
    """Submit parts in order, at most `window` at a time, and in rows mode none that the
    parts before it are expected (`expect` rows each) to make useless; (users, rows) of the
    kept parts."""
    n_batches = job.n_batches
    end = None if n_batches is None else -(-n_batches // per_part)
    done: dict[int, tuple[int, int]] = {}
    budgets: dict[int, int | None] = {}
    pending: dict[Future[tuple[int, int]], int] = {}
    frontier = rows_before = next_part = 0  # parts < frontier are final; their row total

    def planned(upto: int) -> int:
        return rows_before + sum(done[k][1] if k in done else expect
                                 for k in range(frontier, upto))

    while True:
        while ((end is None or next_part < end) and len(pending) < window
               and (n_rows is None or planned(next_part) < n_rows)):
            budgets[next_part] = None if n_rows is None else n_rows - rows_before
            pending[submit(next_part, budgets[next_part])] = next_part
            next_part += 1
        if not pending:
            break
        finished, _ = wait(pending, return_when=FIRST_COMPLETED)
        for future in finished:
            done[pending.pop(future)] = future.result()
        on_progress(sum(u for u, _ in done.values()), sum(r for _, r in done.values()))
        while frontier in done and (end is None or frontier < end):
            if n_rows is not None:
                done[frontier], last = _settle(done[frontier], budgets[frontier],
                                               n_rows - rows_before,
                                               lambda left, k=frontier: submit(k, left).result())
                if last:
                    end = frontier + 1
            rows_before += done[frontier][1]
            frontier += 1
    return [done[k] for k in range(frontier)]


def _settle(part: tuple[int, int], budget: int | None, left: int,
            rewrite: Callable[[int], tuple[int, int]]) -> tuple[tuple[int, int], bool]:
    """Rows mode, a part whose predecessors are final and hold all but `left` rows: the
    part as kept (rewritten with the exact budget if it crosses the target and was cut from
    a looser one), and whether it is the last part."""
    if part[1] > left and budget != left:
        part = rewrite(left)
    return part, part[1] >= left


@contextmanager
def _submitter(model: Model, model_dir: str | os.PathLike[str] | None, directory: Path,
               job: Job, per_part: int, workers: int) -> Iterator[Submit]:
    """submit(part, budget) → Future: in this process, or in `workers` spawned processes
    that each load the model once. On any error or Ctrl-C the workers are killed."""
    if workers == 1:
        yield partial(_now, partial(write_part, model, job, directory, per_part))
        return
    # polars sizes its thread pool at import, which a spawned worker does before its
    # initializer runs: the variable must be in the environment it inherits (workers
    # start lazily, on submit, so it stays set while this block runs)
    saved = os.environ.get("POLARS_MAX_THREADS")
    os.environ["POLARS_MAX_THREADS"] = "1"
    pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"),
                               initializer=_init_worker,
                               initargs=(os.fspath(model_dir), pickle.dumps(job)))
    def submit(index: int, budget: int | None) -> Future[tuple[int, int]]:
        with _sigint_blocked():  # workers are spawned here and inherit the mask
            return pool.submit(_worker_part, directory, per_part, index, budget)

    try:
        yield submit
    except BaseException:
        _kill(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if saved is None:
            os.environ.pop("POLARS_MAX_THREADS", None)
        else:
            os.environ["POLARS_MAX_THREADS"] = saved


@contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Ctrl-C reaches the whole process group; a worker still starting up would die of it
    with a traceback. Workers spawned while SIGINT is blocked keep it blocked (the parent
    kills them), and the parent receives a Ctrl-C pressed meanwhile once it is unblocked."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _now(fn: Callable[..., tuple[int, int]], *args: Any) -> Future[tuple[int, int]]:
    """Run in this process; a Future so that one driver serves both cases."""
    future: Future[tuple[int, int]] = Future()
    try:
        future.set_result(fn(*args))
    except Exception as exc:  # Ctrl-C is not caught: it unwinds at once
        future.set_exception(exc)
    return future


def _kill(pool: ProcessPoolExecutor) -> None:
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.join(timeout=10)


_WORKER: dict[str, Any] = {}


def _init_worker(model_dir: str, job: bytes) -> None:
    """Per worker: one thread each for torch and polars (N workers share the cores), Ctrl-C
    left to the parent (it kills the workers), the model loaded once."""
    os.environ.setdefault("POLARS_MAX_THREADS", "1")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    from recsynth.checkpoint import load_model

    torch.set_num_threads(1)
    _WORKER["model"] = load_model(model_dir)
    _WORKER["job"] = pickle.loads(job)


def _worker_part(directory: Path, per_part: int, index: int,
                 budget: int | None) -> tuple[int, int]:
    return write_part(_WORKER["model"], _WORKER["job"], directory, per_part, index, budget)
