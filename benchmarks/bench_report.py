"""Benchmark: what `evaluate --html` adds to evaluate (target: < 10 s on online-retail).

    python benchmarks/bench_report.py TRAIN HOLDOUT SYNTHETIC [--users USERS] [--repeat 3]

Runs the evaluation once (default recommenders and K), then times rendering the page
(import of matplotlib included in the first round) and writing it, `--repeat` times.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from recsynth.config import EvalConfig
from recsynth.evaluate import evaluate_with_details
from recsynth.inputs import load_inputs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("train")
    ap.add_argument("holdout")
    ap.add_argument("synthetic")
    ap.add_argument("--users")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    inputs = load_inputs(args.train, args.holdout, args.synthetic, schema_file=None,
                         user_col=None, item_col=None, time_col=None, users_table=args.users,
                         min_rating=None)
    start = time.perf_counter()
    result, details = evaluate_with_details(inputs, EvalConfig())
    evaluate_s = time.perf_counter() - start
    result["gates"] = []
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            start = time.perf_counter()
            from recsynth.report.html import render_html, write_html

            page = render_html(result, details)
            write_html(page, str(Path(tmp) / "report.html"), overwrite=True)
            times.append(time.perf_counter() - start)
    print(f"evaluate {evaluate_s:.1f} s; render + write: first {times[0]:.2f} s (with the "
          f"matplotlib import), median {statistics.median(times):.2f} s, "
          f"max {max(times):.2f} s; page {len(page) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
