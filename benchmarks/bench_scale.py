"""Scale benchmarks (issue 6): `sample --workers` throughput and peak RSS per process, and
`fit` wall time and peak RSS on large generated logs (benchmarks/make_scale_data.py).

    python benchmarks/bench_scale.py sample MODEL_DIR --rows 100000000 --workers 2
        --out /tmp/syn [--out-json benchmarks/results/scale_sample.json]
    python benchmarks/bench_scale.py fit DATA_DIR --epochs 2 --out /tmp/model
        [--out-json benchmarks/results/scale_fit_10m.json]

Each command runs as a subprocess; /proc is polled every 0.2 s for the peak resident set
(VmHWM) of it and of each of its child processes, so the sample workers get their own
figures. The output is deleted afterwards (`--keep` keeps it). The load average of the
machine goes beside every figure: the cores may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RS = [sys.executable, "-m", "recsynth"]


def _status(pid: int) -> dict[str, str]:
    try:
        text = (Path("/proc") / str(pid) / "status").read_text()
    except OSError:
        return {}
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def _children(pid: int) -> list[int]:
    try:
        tasks = (Path("/proc") / str(pid) / "task").iterdir()
        return [int(c) for t in tasks for c in (t / "children").read_text().split()]
    except OSError:
        return []


def _mib(field: str) -> float:
    return int(field.split()[0]) / 1024  # "123456 kB"


def run_polled(cmd: list[str]) -> dict:
    """Wall seconds and peak RSS (MiB) of a command and, separately, of each child."""
    loadavg = Path("/proc/loadavg").read_text().split()[:3]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peaks: dict[int, float] = {}
    while proc.poll() is None:
        for pid in [proc.pid, *_children(proc.pid)]:
            status = _status(pid)
            if "VmHWM" in status and "resource_tracker" not in _cmdline(pid):
                peaks[pid] = max(peaks.get(pid, 0.0), _mib(status["VmHWM"]))
        time.sleep(0.2)
    seconds = time.perf_counter() - start
    err = proc.stderr.read() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"bench_scale: {' '.join(cmd)} failed ({proc.returncode}): {err}")
    main_peak = peaks.pop(proc.pid, 0.0)
    return {"seconds": round(seconds, 1), "peak_rss_mib": round(main_peak),
            "children_peak_rss_mib": [round(v) for v in peaks.values()],
            "loadavg_before": loadavg,
            "loadavg_after": Path("/proc/loadavg").read_text().split()[:3]}


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


def count_rows(path: str) -> tuple[int, int]:
    import polars as pl

    frame = pl.scan_parquet(path).select(pl.len().alias("rows"),
                                         pl.col("user_id").n_unique().alias("users")).collect()
    return int(frame["rows"][0]), int(frame["users"][0])


def bench_sample(args: argparse.Namespace) -> dict:
    cmd = [*RS, "sample", args.model, "--rows", str(args.rows), "--workers", str(args.workers),
           "--out", args.out, "--seed", "0", "-q"]
    result = run_polled(cmd)
    rows, users = count_rows(args.out)
    size = sum(p.stat().st_size for p in Path(args.out).rglob("*.parquet"))
    if not args.keep:
        shutil.rmtree(args.out, ignore_errors=True)
    return {"benchmark": "sample_workers", "command": " ".join(cmd[2:]), "rows": rows,
            "users": users, "parquet_bytes": size,
            "rows_per_s": round(rows / result["seconds"]), **result,
            "target": ">= 500000 rows/s; <= 1024 MiB per worker"}


def bench_fit(args: argparse.Namespace) -> dict:
    cmd = [*RS, "fit", args.data, "--out", args.out, "--epochs", str(args.epochs),
           "--seed", "0", "-q", "--overwrite"]
    rows, users = count_rows(args.data)
    result = run_polled(cmd)
    manifest = json.loads((Path(args.out) / "manifest.json").read_text())
    if not args.keep:
        shutil.rmtree(args.out, ignore_errors=True)
    return {"benchmark": "fit_scale", "command": " ".join(cmd[2:]), "rows": rows,
            "users": users, "rows_per_s": round(rows / result["seconds"]),
            "users_per_s": round(users / result["seconds"]),
            "timings_s": manifest.get("timings_s"), **result,
            "target": "<= 4096 MiB peak (issue 6, at 50 M rows)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("sample")
    s.add_argument("model")
    s.add_argument("--rows", type=int, default=100_000_000)
    s.add_argument("--workers", type=int, default=2)
    f = sub.add_parser("fit")
    f.add_argument("data")
    f.add_argument("--epochs", type=int, default=2)
    for p in (s, f):
        p.add_argument("--out", required=True)
        p.add_argument("--out-json")
        p.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    result = bench_sample(args) if args.what == "sample" else bench_fit(args)
    result.update(cpu_count=os.cpu_count(), machine=platform.platform())
    text = json.dumps(result, indent=2) + "\n"
    if args.out_json:
        Path(args.out_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out_json).write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
