"""Build a large interaction log from a small one, for scale benchmarks (issue 6).

    python benchmarks/make_scale_data.py --rows 10000000 --out /tmp/scale-10m
        [--source sample_data/interactions.parquet] [--seed 0] [--band 16]
        [--rows-per-part 1000000] [--overwrite]

Replica r of the source log is every source user with a new key (r · n_users + the user's
rank), invoice numbers prefixed `r-`, and each item replaced by another item of about the
same popularity: items are ranked by row count and permuted within bands of `--band`
items, a fresh permutation per replica drawn from (seed, r). Item popularity, activity,
quantities, prices and timestamps keep their distributions; co-occurrence differs per
replica, so the log is not just a stack of duplicates. Rows stay attached to their values
(a row's unit_price moves with it to the substitute item).

Output: a directory of Parquet parts of whole replicas (the last part cut to exactly
`--rows` rows), written one part at a time, so memory depends on the part size, not on
`--rows`; written to a temp directory renamed at the end. Same source, seed and options →
byte-identical parts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import polars as pl

from recsynth import io
from recsynth.errors import RecsynthError

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parent / "sample_data" / "interactions.parquet"


class Source:
    """The source log as arrays: a user rank and a popularity-ordered item code per row."""

    def __init__(self, frame: pl.DataFrame, user_col: str, item_col: str, invoice_col: str | None,
                 band: int) -> None:
        self.frame = frame
        self.user_col, self.item_col, self.invoice_col = user_col, item_col, invoice_col
        users = frame.get_column(user_col)
        self.n_users = users.n_unique()
        self.user_rank = users.rank("dense").cast(pl.Int64).to_numpy() - 1
        counts = (frame.group_by(item_col).len().sort(["len", item_col],
                                                      descending=[True, False]))
        self.items = counts.get_column(item_col)  # most popular first
        code = {v: i for i, v in enumerate(self.items.to_list())}
        self.item_code = np.array([code[v] for v in frame.get_column(item_col).to_list()],
                                  dtype=np.int64)
        self.band = band

    def permutation(self, seed: int, replica: int) -> np.ndarray:
        """Item code → substitute item code: a shuffle within each popularity band."""
        rng = np.random.default_rng([seed, replica])
        n = len(self.items)
        perm = np.arange(n)
        for lo in range(0, n, self.band):
            perm[lo:lo + self.band] = rng.permutation(perm[lo:lo + self.band])
        return perm

    def replicas(self, seed: int, first: int, count: int) -> pl.DataFrame:
        """Replicas first … first + count − 1, in order."""
        n = self.frame.height
        reps = np.repeat(np.arange(first, first + count, dtype=np.int64), n)
        perms = np.stack([self.permutation(seed, r) for r in range(first, first + count)])
        codes = perms[reps - first, np.tile(self.item_code, count)]
        out = pl.concat([self.frame] * count).with_columns(
            pl.Series(self.user_col, reps * self.n_users + np.tile(self.user_rank, count))
            .cast(self.frame.schema[self.user_col]),
            self.items.gather(codes).alias(self.item_col),
        )
        if self.invoice_col is not None:
            out = out.with_columns(pl.concat_str([pl.Series(reps).cast(pl.String), pl.lit("-"),
                                                  pl.col(self.invoice_col)])
                                   .alias(self.invoice_col))
        return out


def build(source: Source, out: str, rows: int, seed: int, rows_per_part: int,
          overwrite: bool = False) -> int:
    """Write `rows` rows as parts of whole replicas; returns the number of parts."""
    n = source.frame.height
    per_part = max(1, rows_per_part // n)  # replicas per part
    written = part = 0
    with io.atomic_path(out, overwrite) as tmp:
        tmp.mkdir()
        while written < rows:
            frame = source.replicas(seed, part * per_part, per_part).head(rows - written)
            frame.write_parquet(tmp / f"part-{part:05d}.parquet")
            written += frame.height
            part += 1
            print(f"make_scale_data: {written} / {rows} rows", file=sys.stderr)
    return part


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--source", default=str(DEFAULT_SOURCE))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--band", type=int, default=16, help="items per popularity band")
    parser.add_argument("--rows-per-part", type=int, default=1_000_000)
    parser.add_argument("--user-col", default="user_id")
    parser.add_argument("--item-col", default="item_id")
    parser.add_argument("--invoice-col", default="invoice_no", help="'' if none")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    if args.rows < 1 or args.band < 1 or args.rows_per_part < 1:
        parser.error("--rows, --band and --rows-per-part must be at least 1")
    frame = pl.read_parquet(args.source)
    invoice = args.invoice_col if args.invoice_col in frame.columns else None
    source = Source(frame, args.user_col, args.item_col, invoice, args.band)
    try:
        build(source, args.out, args.rows, args.seed, args.rows_per_part, args.overwrite)
    except RecsynthError as exc:  # output exists: one line, the CLI's exit code
        print(f"make_scale_data: error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    print(args.out)


if __name__ == "__main__":
    main()
