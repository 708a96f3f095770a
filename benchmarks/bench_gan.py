"""Benchmark `fit` on the full online-retail log and `sample` of 10 M rows (2 CPU cores).

    python benchmarks/bench_gan.py [--data ../shared/data/online-retail/interactions.parquet]
        [--rows 10000000] [--out benchmarks/results/bench_gan.json]

Targets (issue 3): fit on online-retail (407 K rows) <= 5 min at <= 3 GB peak;
sample >= 500 K rows/s to Parquet; 10 M rows with peak RSS <= 1.5 GB. Each command runs
as its own subprocess under GNU time, so peak RSS is that command's alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "online-retail" / "interactions.parquet"


def timed(cmd: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one command."""
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as fh:
        start = time.perf_counter()
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", fh.name, *cmd], check=True,
                       stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        return seconds, int(fh.read().split()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--out", default=str(HERE / "results" / "bench_gan.json"))
    args = parser.parse_args()
    if not Path(args.data).exists():
        print(f"bench_gan: {args.data} not found; skipping", file=sys.stderr)
        return
    rs = [sys.executable, "-m", "recsynth"]
    with tempfile.TemporaryDirectory() as tmp:
        model, syn = Path(tmp) / "model", Path(tmp) / "syn.parquet"
        fit_cmd = [*rs, "fit", args.data, "--out", str(model), "--seed", "0", "-q"]
        fit_s, fit_mib = timed(fit_cmd)
        sample_cmd = [*rs, "sample", str(model), "--rows", str(args.rows), "--out", str(syn),
                      "--seed", "0", "-q"]
        sample_s, sample_mib = timed(sample_cmd)
        import polars as pl

        rows = pl.scan_parquet(syn).select(pl.len()).collect().item()
        manifest = json.loads((model / "manifest.json").read_text())
    result = {
        "benchmark": "gan_fit_sample",
        "fit": {"command": " ".join(fit_cmd[2:]), "seconds": round(fit_s, 1),
                "peak_rss_mib": round(fit_mib), "timings_s": manifest["timings_s"],
                "best_epoch": manifest["best_epoch"], "stopped": manifest["stopped"],
                "target": "<= 300 s, <= 3072 MiB"},
        "sample": {"command": " ".join(sample_cmd[2:]), "rows": rows,
                   "seconds": round(sample_s, 1), "rows_per_s": round(rows / sample_s),
                   "peak_rss_mib": round(sample_mib),
                   "target": ">= 500000 rows/s, <= 1536 MiB for 10 M rows"},
        "cpu_count": os.cpu_count(), "machine": platform.platform(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
