"""Fetch MovieLens-100K as Parquet for local benchmarks (research use only; never commit it).

    python benchmarks/fetch_ml100k.py benchmarks/data/ml100k

The file ships inside the `recbole==1.2.1` wheel on the package index; this downloads that
wheel and converts the ratings and user demographics. Exit code 0 with a message when it
cannot be fetched, so `make bench` skips the MovieLens figures cleanly.

Cite: F. M. Harper and J. A. Konstan, "The MovieLens Datasets", ACM TiiS 5(4), 2015.
"""

from __future__ import annotations

import glob
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import polars as pl

BASE = "recbole/dataset_example/ml-100k/ml-100k"


def fetch(out: Path) -> bool:
    if (out / "interactions.parquet").exists() and (out / "users.parquet").exists():
        return True
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                               "recbole==1.2.1", "-d", tmp], capture_output=True, check=False)
        wheels = glob.glob(f"{tmp}/recbole-*.whl")
        if done.returncode != 0 or not wheels:
            print("fetch_ml100k: cannot download recbole==1.2.1; skipping MovieLens",
                  file=sys.stderr)
            return False
        z = zipfile.ZipFile(wheels[0])
        inter = pl.read_csv(io.BytesIO(z.read(BASE + ".inter")), separator="\t")
        users = pl.read_csv(io.BytesIO(z.read(BASE + ".user")), separator="\t")
    inter.columns = [c.split(":")[0] for c in inter.columns]
    users.columns = [c.split(":")[0] for c in users.columns]
    inter = inter.select(pl.col("user_id").cast(pl.Int32), pl.col("item_id").cast(pl.Int32),
                         pl.col("rating").cast(pl.Int8),
                         pl.from_epoch("timestamp", time_unit="s").alias("timestamp"))
    out.mkdir(parents=True, exist_ok=True)
    inter.sort("user_id", "timestamp", "item_id").write_parquet(out / "interactions.parquet")
    users.with_columns(pl.col("user_id").cast(pl.Int32)).write_parquet(out / "users.parquet")
    return True


if __name__ == "__main__":
    ok = fetch(Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/data/ml100k"))
    print("ok" if ok else "skipped")
