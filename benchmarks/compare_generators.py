"""Generators side by side on the same 80/20 user split: popularity sampler, the tuned
SVD-Gaussian closed form (`fit --epochs 0` over a small rank/temperature grid), and the
default GAN. Re-run with every model change.

    python benchmarks/compare_generators.py [--datasets ml100k,online_retail] [--seeds 0,1,2]
        [--grid 20:0.01,50:0.01,50:0.02] [--sizes 1,4] [--gan-args "--epochs 50"]
        [--no-popularity] [--repeats 5] [--draws 2]
        [--out benchmarks/results/compare_generators.json]

--sizes: synthetic users per real train user; each fitted model is sampled at every size,
so the GAN and the closed form are compared at equal size (the popularity floor at 1).
--grid '' skips the closed-form cells. --draws: samples scored per fitted model (their
mean is the seed's figure), since one sample's TSTR varies by about ±0.025 on MovieLens.

Needs the splits made by `benchmarks/popularity_tables.sh` (benchmarks/data/NAME-*.parquet).
Prints one line per generator: mean over seeds of EASE TSTR (NDCG@10 ratio), membership
AUC, DCR share, exact copies among users with >= 5 items, activity KS, popularity TVD.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
RS = [sys.executable, "-m", "recsynth"]
KEYS = ("tstr", "mia_auc", "dcr_share", "copies", "copies_5plus", "activity_ks", "popularity_tvd")


def evaluate(name: str, synthetic: Path, out: Path, repeats: int) -> dict[str, float]:
    extra = ["--min-rating", "4"] if name == "ml100k" else []
    subprocess.run([*RS, "evaluate", "--train", str(DATA / f"{name}-train.parquet"),
                    "--holdout", str(DATA / f"{name}-holdout.parquet"), "--synthetic",
                    str(synthetic), "--recommenders", "ease", "--k", "10", "--out", str(out),
                    "--repeats", str(repeats), "--overwrite", "-q", *extra], check=True,
                   stdout=subprocess.DEVNULL)
    r = json.loads(out.read_text())
    return {"tstr": r["utility"]["ease"]["ratio"]["ndcg@10"], "mia_auc": r["privacy"]["mia_auc"],
            "dcr_share": r["privacy"]["dcr_share"],
            "copies": r["privacy"]["exact_copy_share"] or 0.0,
            "copies_5plus": r["privacy"]["exact_copy_share_5plus"] or 0.0,
            "activity_ks": r["fidelity"]["activity_ks"],
            "popularity_tvd": r["fidelity"]["item_popularity_tvd"]}


def run_generator(name: str, kind: str, fit_args: list[str], seed: int, tmp: Path,
                  repeats: int, sizes: list[float], draws: int) -> dict[float, dict]:
    """One fit (or popularity draw) per seed, scored at every sample size: the mean of
    `draws` samples (sample seeds seed, seed + 100, …; one draw of 3,000 MovieLens users
    moves TSTR by ±0.025 on its own)."""
    train = DATA / f"{name}-train.parquet"
    syn = tmp / "syn.parquet"
    if kind == "popularity":
        subprocess.run([sys.executable, str(HERE / "baselines.py"), str(train), "--out",
                        str(syn), "--seed", str(seed), "--overwrite"], check=True,
                       stdout=subprocess.DEVNULL)
        return {1.0: evaluate(name, syn, tmp / "report.json", repeats)}
    model = tmp / "model"
    subprocess.run([*RS, "fit", str(train), "--out", str(model), "--seed", str(seed),
                    "--overwrite", "-q", *fit_args], check=True, stdout=subprocess.DEVNULL)
    n_users = pl.scan_parquet(train).select(pl.col("user_id").n_unique()).collect().item()
    scores = {}
    for size in sizes:
        runs = []
        for draw in range(draws):
            subprocess.run([*RS, "sample", str(model), "--users", str(round(size * n_users)),
                            "--out", str(syn), "--seed", str(seed + 100 * draw), "--overwrite",
                            "-q"], check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            runs.append(evaluate(name, syn, tmp / "report.json", repeats))
        scores[size] = {k: float(np.mean([r[k] for r in runs])) for k in KEYS}
    return scores


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", default="ml100k,online_retail")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--grid", default="20:0.01,50:0.01,50:0.02,100:0.005")
    parser.add_argument("--sizes", default="1",
                        help="synthetic users per real train user, e.g. 1,4")
    parser.add_argument("--gan-args", default="", help="extra `recsynth fit` options for the GAN")
    parser.add_argument("--no-popularity", action="store_true")
    parser.add_argument("--repeats", type=int, default=5,
                        help="`evaluate --repeats`: EASE fits (λ-validation draws) averaged")
    parser.add_argument("--draws", type=int, default=2,
                        help="samples drawn (and scored) per fitted model, averaged")
    parser.add_argument("--out", default=str(HERE / "results" / "compare_generators.json"))
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    sizes = [float(s) for s in args.sizes.split(",")]
    generators = [] if args.no_popularity else [("popularity", "popularity", [])]
    for cell in filter(None, args.grid.split(",")):
        rank, temp = cell.split(":")
        generators.append((f"svd-gaussian r{rank} T{temp}", "fit",
                           ["--epochs", "0", "--rank", rank, "--temperature", temp,
                            "--components", "1", "--holdout-frac", "0"]))
    gan_args = shlex.split(args.gan_args)
    generators.append((f"gan {args.gan_args}" if gan_args else "gan (defaults)", "fit", gan_args))
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name in args.datasets.split(","):
        if not (DATA / f"{name}-train.parquet").exists():
            print(f"{name}: no split in {DATA}; run benchmarks/popularity_tables.sh",
                  file=sys.stderr)
            continue
        results[name] = {}
        print(f"\n{name}\n{'generator':32s} " + " ".join(f"{k:>14s}" for k in KEYS))
        for label, kind, fit_args in generators:
            runs = []
            for seed in seeds:
                with tempfile.TemporaryDirectory() as tmp:
                    runs.append(run_generator(name, kind, fit_args, seed, Path(tmp),
                                              args.repeats, sizes, args.draws))
            for size in runs[0]:
                row = f"{label} ×{size:g}"
                mean = {k: float(np.mean([r[size][k] for r in runs])) for k in KEYS}
                mean["tstr_sd"] = float(np.std([r[size]["tstr"] for r in runs]))
                mean["tstr_per_seed"] = [r[size]["tstr"] for r in runs]
                results[name][row] = mean
                print(f"{row:32s} " + " ".join(f"{mean[k]:14.3f}" for k in KEYS), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"seeds": seeds, "sizes": sizes, "draws": args.draws,
                                          "results": results},
                                         indent=2) + "\n")


if __name__ == "__main__":
    main()
