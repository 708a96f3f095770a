"""Utility and privacy of `fit --epsilon` at ε ∈ {1, 4, 8, ∞} (∞: the non-private defaults),
on the 80/20 user splits of `benchmarks/popularity_tables.sh`.

    python benchmarks/dp_table.py [--datasets ml100k,online_retail] [--epsilons 1,4,8,inf]
        [--seed 0] [--sizes 4] [--repeats 5] [--draws 1] [--data benchmarks/data]
        [--out benchmarks/results/dp_table.json]

Per run: fit (DP runs: `--epsilon E --public-catalog`, plus `--like-threshold 4` on
MovieLens), sample `--sizes` × the train split's users (`--draws` samples, averaged),
evaluate with EASE at K 10 (MovieLens with `--min-rating 4`, `--repeats` EASE fits): the
yardstick of compare_generators.py. Prints one markdown row per run: EASE TSTR, membership AUC, DCR
share, exact copies (all users / users with >= 5 items), and the ε the manifest reports.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import compare_generators as cg


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="ml100k,online_retail")
    ap.add_argument("--epsilons", default="1,4,8,inf")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sizes", default="4", help="synthetic users per real train user")
    ap.add_argument("--repeats", type=int, default=5, help="`evaluate --repeats`")
    ap.add_argument("--draws", type=int, default=1, help="samples scored per fitted model")
    ap.add_argument("--data", type=Path, default=cg.DATA)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    cg.DATA = args.data
    rows = []
    sizes = [float(s) for s in args.sizes.split(",")]
    print("| dataset | ε | users | reported ε (δ) | items, rank | EASE TSTR | MIA AUC "
          "| DCR share | copies | copies ≥ 5 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.datasets.split(","):
        for eps in args.epsilons.split(","):
            fit_args = [] if eps == "inf" else ["--epsilon", eps, "--public-catalog"]
            if eps != "inf" and name == "ml100k":
                fit_args += ["--like-threshold", "4"]
            with tempfile.TemporaryDirectory() as tmp:
                by_size = cg.run_generator(name, "fit", fit_args, args.seed, Path(tmp),
                                           args.repeats, sizes, args.draws)
                manifest = json.loads((Path(tmp) / "model" / "manifest.json").read_text())
            priv = manifest.get("privacy")
            rep = "∞" if priv is None else f"{priv['epsilon']:.2f} ({priv['delta']:.1g})"
            shape = f"{manifest['modelled_items']}, {manifest['config']['rank']}"
            for size, r in by_size.items():
                r.update(dataset=name, epsilon=eps, size=size,
                         reported=None if priv is None else [priv["epsilon"], priv["delta"]])
                rows.append(r)
                print(f"| {name} | {eps} | {size:g}× | {rep} | {shape} | {r['tstr']:.3f} "
                      f"| {r['mia_auc']:.3f} | {r['dcr_share']:.3f} | {r['copies']:.3f} "
                      f"| {r['copies_5plus']:.3f} |", flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
