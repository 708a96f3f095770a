"""Stream synthetic users to Parquet in record batches; memory does not grow with N.

Batch b draws its noise from a generator seeded by (seed, b), so the output depends only
on the model, the seed and the batch size. Output goes to a temp path renamed on success:
an interrupted run leaves nothing behind.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import torch

from recsynth import io
from recsynth.checkpoint import Model
from recsynth.conditions import Plan, Request, draw_codes, draw_tuples, resolve
from recsynth.condsampler import Conditioning
from recsynth.decode import DecodedUsers, decode, subset_users, tail_share
from recsynth.distributed import SINGLE, World
from recsynth.errors import DataError, UsageError
from recsynth.filtering import candidates, check_quantile, critic_scores, keep_best
from recsynth.rowmodel import USER_COUNT_COL
from recsynth.train import sample_codes


@dataclass(frozen=True)
class SampleStats:
    users: int
    rows: int
    files: int


def user_keys(model: Model, start: int, n: int) -> pl.Series:
    """New opaque keys: integers after the largest real key, or '<prefix><n>' strings (the
    prefix saved at fit: 'syn-' or one no real key starts with; a random one for DP)."""
    info = model.user_key
    name = model.schema.user_col
    if "first_new" in info:
        np_dtype = pl.Series(dtype=getattr(pl, info["dtype"])).to_numpy().dtype
        first = int(info["first_new"]) + start  # Python ints: no silent wrap-around
        if first + n - 1 > np.iinfo(np_dtype).max:
            raise DataError(f"column {name!r}: synthetic user keys up to {first + n - 1} do "
                            f"not fit the real key dtype {info['dtype']}; sample fewer users")
        return pl.Series(name, np.arange(n, dtype=np_dtype) + np_dtype.type(first))
    index = range(start, start + n)
    return pl.Series(name, [f"{info.get('prefix', 'syn-')}{i:09d}" for i in index])


@dataclass(frozen=True)
class Shaping:
    """Which users a batch keeps: a condition, critic filtering, a tail-item preference."""

    plan: Plan | None = None
    filter_quantile: float = 0.0  # drop this share of generated users, least realistic first
    tail: np.ndarray | None = None  # per item: True for tail items (long-tail selection)
    tail_oversample: int = 4  # candidates per kept user under the tail preference


PLAIN = Shaping()


def make_shaping(model: Model, request: Request, filter_quantile: float = 0.0,
                 tail: np.ndarray | None = None) -> Shaping:
    """Validate a condition and a filter against the model before anything is written."""
    q = check_quantile(filter_quantile)
    if q > 0 and model.config.epochs == 0:
        raise UsageError("--filter-quantile: this model was fitted with --epochs 0, so its "
                         "critic is untrained; refit with epochs > 0")
    plan = None if request.empty else resolve(request, model.form, model.conditions,
                                              model.rowmodel.user_tuples,
                                              model.space.n_model_items)
    if tail is not None:  # per catalog item → per modelled item (tail slots are tail)
        tail = model.space.model_mask(tail)
    return Shaping(plan, q, tail)


def _codes(model: Model, plan: Plan | None, cond: Conditioning | None, n: int,
           gen: torch.Generator) -> torch.Tensor:
    if plan is None:
        return sample_codes(model.generator, model.form, n, gen)
    return draw_codes(plan, model.form, model.space.n_model_items, n,
                      lambda form, m, g: sample_codes(model.generator, form, m, g, cond), gen)


def _conditioning(model: Model, plan: Plan | None) -> Conditioning | None:
    """The plan's condition vector, for a generator trained with one (else None)."""
    if plan is None or plan.vector is None or model.generator.n_cond == 0:
        return None
    return Conditioning(torch.from_numpy(plan.vector))


def draw_users(model: Model, seed: int, batch: int, n: int,
               shaping: Shaping = PLAIN) -> DecodedUsers:
    """Batch `batch`'s users as item sets: codes, critic filter, decode, tail preference.

    The torch half of a batch (noise from its own generator): it runs in a thread beside
    the numpy half of the batch before it (see `write_batches`).
    """
    gen = torch.Generator().manual_seed(seed * 1_000_003 + batch)
    m = n if shaping.tail is None else n * shaping.tail_oversample
    cond = _conditioning(model, shaping.plan)
    x = _codes(model, shaping.plan, cond, candidates(m, shaping.filter_quantile), gen)
    if shaping.filter_quantile > 0:
        scores = critic_scores(model.critic, model.form, x, gen, cond)
        x = x[torch.from_numpy(keep_best(scores, m))]
    d = decode(x, model.form, model.config.temperature, model.space.n_model_items, gen)
    if shaping.tail is not None:
        d = subset_users(d, keep_best(tail_share(d, shaping.tail), n))
    return d


def users_to_rows(model: Model, seed: int, batch: int, start: int, n: int,
                  shaping: Shaping, d: DecodedUsers) -> pl.DataFrame:
    """The numpy half of a batch: catalog items, user attributes and per-row values."""
    rng = np.random.default_rng([seed, batch, 11])
    attrs = None
    if shaping.plan is not None:
        attrs = draw_tuples(shaping.plan, np.random.default_rng([seed, batch, 13]), n,
                            USER_COUNT_COL)
    items = model.space.to_catalog(d.user_index, d.item_index,
                                   np.random.default_rng([seed, batch, 17]))
    return model.rowmodel.sample(d.user_index, items, d.liked,
                                 user_keys(model, start, n), rng, user_attributes=attrs,
                                 first_user=start)


def generate_batch(model: Model, seed: int, batch: int, start: int, n: int,
                   shaping: Shaping = PLAIN) -> pl.DataFrame:
    """Batch `batch` made whole in this thread: what augment calls, and what the file
    `write_batches` writes must equal batch by batch."""
    return users_to_rows(model, seed, batch, start, n, shaping,
                         draw_users(model, seed, batch, n, shaping))


def _whole_users_up_to(frame: pl.DataFrame, user_col: str, wanted: int) -> pl.DataFrame:
    """The first users of a batch whose rows reach `wanted` (never splits a user)."""
    if frame.height <= wanted:
        return frame
    runs = frame.get_column(user_col).rle_id().to_numpy()
    ends = np.cumsum(np.bincount(runs))
    return frame.head(int(ends[np.searchsorted(ends, wanted)]))


@dataclass(frozen=True)
class Job:
    """What every batch of one run shares; picklable, since it travels to worker processes.

    `n_users` None means rows mode: batches go on until a row budget is met.
    """

    seed: int
    batch_users: int
    n_users: int | None
    shaping: Shaping = PLAIN

    @property
    def n_batches(self) -> int | None:
        return None if self.n_users is None else -(-self.n_users // self.batch_users)

    def size(self, batch: int) -> int:
        """Users in batch `batch` (the last batch of a --users run may be short)."""
        if self.n_users is None:
            return self.batch_users
        return min(self.batch_users, self.n_users - batch * self.batch_users)

    def batches(self, first: int = 0, stop: int | None = None) -> Iterator[int]:
        last = self.n_batches
        if stop is not None:
            last = stop if last is None else min(last, stop)
        return iter(range(first, last)) if last is not None else itertools.count(first)


def write_batches(model: Model, path: Path, job: Job, batches: Iterable[int],
                  budget: int | None = None,
                  on_batch: Callable[[int, int], None] = lambda users, rows: None
                  ) -> tuple[int, int]:
    """Batches in order into one Parquet file (a row group each); with a row `budget`, whole
    users until at least that many rows. Returns (users, rows).

    Batch b + 1's users are drawn (torch, which releases the GIL) in a thread while batch
    b's rows are made (numpy) and written: on two cores the halves overlap. Each batch has
    its own seeds, so the output is the same as drawing them one after the other.
    """
    user_col = model.schema.user_col
    writer: pq.ParquetWriter | None = None
    users = rows = 0
    todo = iter(batches)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="draw-users") as pool:
        def ahead() -> tuple[int, Future[DecodedUsers]] | None:
            b = next(todo, None)
            return None if b is None else (b, pool.submit(
                draw_users, model, job.seed, b, job.size(b), job.shaping))

        nxt = ahead()
        try:
            while nxt is not None and (budget is None or rows < budget):
                b, drawn = nxt
                d = drawn.result()
                nxt = ahead()
                frame = users_to_rows(model, job.seed, b, b * job.batch_users, job.size(b),
                                      job.shaping, d)
                if budget is not None:
                    frame = _whole_users_up_to(frame, user_col, budget - rows)
                users += frame.get_column(user_col).n_unique()
                table = frame.to_arrow()
                if writer is None:
                    writer = pq.ParquetWriter(str(path), table.schema)
                writer.write_table(table)
                rows += table.num_rows
                on_batch(users, rows)
        finally:
            if nxt is not None:
                nxt[1].cancel()
            if writer is not None:
                writer.close()
    return users, rows


def sample_to_parquet(model: Model, out: str, *, seed: int, batch_users: int,
                      n_users: int | None = None, n_rows: int | None = None,
                      rows_per_file: int | None = None, overwrite: bool = False,
                      shaping: Shaping = PLAIN, workers: int = 1,
                      model_dir: str | os.PathLike[str] | None = None,
                      on_batch: Callable[[int, int], None] = lambda users, rows: None,
                      world: World = SINGLE) -> SampleStats:
    """Exactly `n_users` users, or whole users until at least `n_rows` rows.

    One file, or with `rows_per_file` or `workers` > 1 a directory of parts that is the same
    whatever the worker count (see parts.py); workers load the model from `model_dir`.
    Under torchrun the ranks are the workers (a directory of parts on a filesystem they
    share); rank 0 renames it into place.
    """
    from recsynth import parts

    if (n_users is None) == (n_rows is None):
        raise UsageError("give exactly one of --users N or --rows N")
    if (n_users if n_users is not None else n_rows) < 1:
        raise UsageError("--users / --rows must be at least 1")
    if batch_users < 1:
        raise UsageError(f"--batch-users must be at least 1 (got {batch_users})")
    if workers < 1:
        raise UsageError(f"--workers must be at least 1 (got {workers})")
    if workers > 1 and model_dir is None:
        raise UsageError("sampling with workers needs the model directory")
    if workers > 1 and world.active:
        raise UsageError("under torchrun every process is a worker: drop --workers")
    job = Job(seed, batch_users, n_users, shaping)
    if world.active:
        return _sample_ranked(model, out, job, rows_per_file or parts.DEFAULT_PART_ROWS,
                              n_rows, overwrite, world, on_batch)
    with io.atomic_path(out, overwrite) as tmp:
        if rows_per_file is None and workers == 1:
            users, rows = write_batches(model, tmp, job, job.batches(), n_rows, on_batch)
            return SampleStats(users, rows, 1)
        tmp.mkdir()
        return parts.write_parts(model, model_dir, tmp, job,
                                 rows_per_file or parts.DEFAULT_PART_ROWS, n_rows, workers,
                                 on_batch)


def _sample_ranked(model: Model, out: str, job: Job, rows_per_file: int, n_rows: int | None,
                   overwrite: bool, world: World,
                   on_batch: Callable[[int, int], None]) -> SampleStats:
    """Rank 0 makes the temp directory and tells the others; all write parts; rank 0 cuts
    (rows mode) and renames after every rank has finished."""
    from recsynth import parts

    if not world.is_main:
        directory = Path(world.broadcast(None))
        return parts.write_parts_ranked(model, directory, job, rows_per_file, n_rows, world)
    with io.atomic_path(out, overwrite) as tmp:
        tmp.mkdir()
        world.broadcast(str(tmp))
        return parts.write_parts_ranked(model, tmp, job, rows_per_file, n_rows, world,
                                        on_batch)
