"""Build a baseline synthetic log from a real train log (popularity sampler).

    python benchmarks/baselines.py TRAIN.parquet --out SYN.parquet [--seed 0]

The popularity sampler is the floor any generator must clear; `recsynth evaluate` scores it.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from recsynth import io
from recsynth.baselines import popularity_sampler
from recsynth.errors import RecsynthError
from recsynth.schema import resolve_schema


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        io.check_writable(args.out, args.overwrite)
        lf = io.scan(args.train)
        schema = resolve_schema(lf, args.train)
        real = io.collect(lf, args.train)
        syn = popularity_sampler(real, schema, None, np.random.default_rng(args.seed))
        io.write_parquet(syn, args.out, args.overwrite)
    except RecsynthError as exc:
        print(f"baselines: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
