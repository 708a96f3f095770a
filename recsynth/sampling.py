"""Stream synthetic users to Parquet in record batches; memory does not grow with N.

Batch b draws its noise from a generator seeded by (seed, b), so the output depends only
on the model, the seed and the batch size. Output goes to a temp path renamed on success:
an interrupted run leaves nothing behind.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import torch

from recsynth import io
from recsynth.checkpoint import Model
from recsynth.decode import decode
from recsynth.errors import UsageError
from recsynth.train import sample_codes


@dataclass(frozen=True)
class SampleStats:
    users: int
    rows: int
    files: int


def user_keys(model: Model, start: int, n: int) -> pl.Series:
    """New opaque keys: integers after the largest real key, or 'syn-<n>' strings."""
    info = model.user_key
    name = model.schema.user_col
    index = np.arange(start, start + n, dtype=np.int64)
    if "first_new" in info:
        dtype = getattr(pl, info["dtype"])
        return pl.Series(name, index + int(info["first_new"])).cast(dtype)
    return pl.Series(name, [f"{info.get('prefix', 'syn-')}{i:09d}" for i in index])


PILOT_USERS = 512


def expected_rows_per_user(model: Model, seed: int) -> float:
    """Rows per user measured on a small seeded pilot batch (for --rows): it counts
    whatever the row model adds, such as repeated purchases of one item."""
    return generate_batch(model, seed + 7919, 0, 0, PILOT_USERS).height / PILOT_USERS


def generate_batch(model: Model, seed: int, batch: int, start: int, n: int) -> pl.DataFrame:
    gen = torch.Generator().manual_seed(seed * 1_000_003 + batch)
    x = sample_codes(model.generator, model.form, n, gen)
    d = decode(x, model.form, model.config.temperature, model.n_items, gen)
    rng = np.random.default_rng([seed, batch, 11])
    return model.rowmodel.sample(d.user_index, d.item_index, d.liked,
                                 user_keys(model, start, n), rng)


def sample_to_parquet(model: Model, out: str, *, n_users: int, seed: int, batch_users: int,
                      rows_per_file: int | None = None, overwrite: bool = False,
                      on_batch: Callable[[int, int], None] = lambda users, rows: None
                      ) -> SampleStats:
    if n_users < 1:
        raise UsageError(f"--users must be at least 1 (got {n_users})")
    if batch_users < 1:
        raise UsageError(f"--batch-users must be at least 1 (got {batch_users})")
    n_batches = math.ceil(n_users / batch_users)
    rows = files = 0
    with io.atomic_path(out, overwrite) as tmp:
        if rows_per_file is not None:
            tmp.mkdir()
        writer: pq.ParquetWriter | None = None
        in_file = 0
        for b in range(n_batches):
            start = b * batch_users
            n = min(batch_users, n_users - start)
            table = generate_batch(model, seed, b, start, n).to_arrow()
            if writer is not None and rows_per_file is not None and in_file >= rows_per_file:
                writer.close()
                writer = None
            if writer is None:
                path = tmp / f"part-{files:05d}.parquet" if rows_per_file is not None else tmp
                writer = pq.ParquetWriter(str(path), table.schema)
                files += 1
                in_file = 0
            writer.write_table(table)
            rows += table.num_rows
            in_file += table.num_rows
            on_batch(start + n, rows)
        if writer is not None:
            writer.close()
    return SampleStats(n_users, rows, files)
