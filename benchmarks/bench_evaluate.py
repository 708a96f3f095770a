"""Benchmark: `recsynth evaluate` on ~1 M interactions (target: < 60 s, < 4 GB peak, 2 cores).

    python benchmarks/bench_evaluate.py [--replicas 10]
        [--out benchmarks/results/bench_evaluate.json]

Builds the log from MovieLens-100K users replicated with new ids (10 x 100 K rows), splits
it 80/20 by user, draws a popularity-sampler synthetic log, then times the real CLI in a
subprocess and reads its peak RSS from the kernel (RUSAGE_CHILDREN).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from fetch_ml100k import fetch  # noqa: E402  (sibling script, importable once on the path)

DATA = HERE / "data"
RECSYNTH = [sys.executable, "-m", "recsynth"]


def build_log(replicas: int, out: Path) -> Path:
    ml = DATA / "ml100k"
    if not fetch(ml):
        raise SystemExit(0)
    base = pl.read_parquet(ml / "interactions.parquet")
    offset = int(base["user_id"].max()) + 1
    log = pl.concat([base.with_columns((pl.col("user_id") + r * offset).cast(pl.Int32))
                     for r in range(replicas)])
    out.parent.mkdir(parents=True, exist_ok=True)
    log.write_parquet(out)
    return out


def run(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replicas", type=int, default=10)
    parser.add_argument("--out", default=str(HERE / "results" / "bench_evaluate.json"))
    args = parser.parse_args()
    work = DATA / f"ml100k_x{args.replicas}"
    log = build_log(args.replicas, work / "interactions.parquet")
    run([*RECSYNTH, "split", str(log), "--train", str(work / "train.parquet"), "--holdout",
         str(work / "holdout.parquet"), "--seed", "0", "--overwrite"])
    run([sys.executable, str(HERE / "baselines.py"), str(work / "train.parquet"), "--out",
         str(work / "popularity.parquet"), "--overwrite"])
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    cmd = [*RECSYNTH, "evaluate", "--train", str(work / "train.parquet"), "--holdout",
           str(work / "holdout.parquet"), "--synthetic", str(work / "popularity.parquet"),
           "--min-rating", "4", "--out", str(work / "report.json"), "--overwrite", "--quiet"]
    seconds = run(cmd)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    report = json.loads((work / "report.json").read_text())
    result = {
        "benchmark": "evaluate_1m",
        "command": " ".join(cmd),
        "rows": pl.scan_parquet(log).select(pl.len()).collect().item(),
        "train_users": report["data"]["train"]["users"],
        "holdout_users": report["data"]["holdout"]["users"],
        "synthetic_users": report["data"]["synthetic"]["users"],
        "seconds": round(seconds, 2),
        "peak_rss_mib": round(max(peak_kib, before) / 1024, 1),
        "targets": {"seconds": 60, "peak_rss_mib": 4096},
        "ease_ndcg10_ratio": report["utility"]["ease"]["ratio"]["ndcg@10"],
        "cpu_count": os.cpu_count(),
        "machine": platform.platform(),
    }
    result["passed"] = result["seconds"] < 60 and result["peak_rss_mib"] < 4096
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
