"""What would perfect synthetic users do for the users served worst? Real users as the oracle.

    python benchmarks/augment_oracle.py [--datasets ml100k,online_retail]
        [--oracles sparse-half,sparse-all,random-20] [--seeds 0] [--recommenders ease,bpr]
        [--repeats 5] [--work benchmarks/results/oracle]

A generator can at best add users drawn from the real population. So hold some real train
users back, train the recommenders on the rest ("real-only"), add the held-back users again
("augmented") and score both on the same held-out users with `recsynth evaluate
--augmented`: the lift is what a perfect generator of those users would give.

- sparse-half: a random half of the bottom-20 %-activity train users (distinct items at or
  under the 20th percentile, as `augment --strategy sparse-users` targets) held back; about
  `--ratio 0.1` of new sparse users;
- sparse-all: all of them held back (a base with no sparse users at all);
- random-20: a random 20 % of the train users (what `--strategy match` at ratio 0.25 could
  give at best).

Items that only the held-back users hold are dropped from the augmented log (evaluate needs
its items in the real training catalog). Needs the 80/20 splits in benchmarks/data
(`benchmarks/popularity_tables.sh`). One markdown table on stdout, JSON beside in --work.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
from augment_groups import DATA, HERE, evaluate, lifts, table


def held_back(train: pl.DataFrame, oracle: str, seed: int) -> list:
    """The user keys an oracle holds back."""
    act = (train.group_by("user_id").agg(pl.col("item_id").n_unique().alias("n"))
           .sort("user_id"))
    rng = np.random.default_rng(seed)
    users = act.get_column("user_id").to_numpy()
    sparse = act.filter(pl.col("n") <= act.get_column("n").quantile(0.2)).get_column("user_id")
    if oracle == "sparse-half":
        return rng.choice(sparse.to_numpy(), len(sparse) // 2, replace=False).tolist()
    if oracle == "sparse-all":
        return sparse.to_list()
    if oracle == "random-20":
        return rng.choice(users, len(users) // 5, replace=False).tolist()
    raise SystemExit(f"unknown oracle {oracle!r}")


def oracle_row(name: str, oracle: str, seed: int, args) -> dict:
    out = args.work / name
    out.mkdir(parents=True, exist_ok=True)
    train = pl.read_parquet(DATA / f"{name}-train.parquet")
    back = held_back(train, oracle, seed)
    base = train.filter(~pl.col("user_id").is_in(back))
    augmented = train.filter(pl.col("item_id").is_in(base.get_column("item_id").unique()
                                                     .implode()))
    tag = f"{oracle}-s{seed}"
    base_path, aug_path = out / f"base-{tag}.parquet", out / f"aug-{tag}.parquet"
    base.write_parquet(base_path)
    augmented.write_parquet(aug_path)
    r = evaluate(name, base_path, DATA / f"{name}-holdout.parquet", "--augmented", aug_path,
                 args.recommenders, out / f"report-{tag}.json", args.repeats)["augmented"]
    row = {"dataset": name, "oracle": oracle, "seed": seed,
           "base_users": base.get_column("user_id").n_unique(),
           "added_users": r["data"]["users_not_in_train"],
           **lifts(r, args.recommenders)}
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--datasets", default="ml100k,online_retail")
    p.add_argument("--oracles", default="sparse-half,sparse-all,random-20")
    p.add_argument("--seeds", default="0", help="draws of the held-back users")
    p.add_argument("--recommenders", default="ease,bpr")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--work", type=Path, default=HERE / "results" / "oracle")
    args = p.parse_args()
    rows = [oracle_row(name, oracle, int(seed), args)
            for name in args.datasets.split(",") for oracle in args.oracles.split(",")
            for seed in (["0"] if oracle == "sparse-all" else args.seeds.split(","))]
    (args.work / "augment_oracle.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
