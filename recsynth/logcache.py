"""`--cache-dir`: the encoded log on disk, keyed by what the encoding depends on.

An entry is a directory (arrays.npz without pickles, users/catalog Parquet, meta.json)
written to a temp directory and renamed, never replacing a good entry, so fits of the same
data may share the cache; an entry that cannot be read is rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsynth.encode import EncodedUsers
from recsynth.schema import Schema

CACHE_FORMAT = 2  # raise whenever the encoding changes: old entries are then never read


@dataclass(frozen=True)
class EncodedLog:
    """What `fit` keeps of the whole log."""

    enc: EncodedUsers
    catalog: pl.Series  # sorted item keys
    rows_per_user: np.ndarray  # log rows (repeats included) per user of enc.users
    rows: int
    like_threshold: float | None


def cache_key(inputs: list[dict[str, Any]], schema: Schema,
              like_threshold: float | None) -> str:
    """Changes with any input byte, the key and rating columns or the like threshold."""
    what = {"format": CACHE_FORMAT, "inputs": [(i["bytes"], i["sha256"]) for i in inputs],
            "columns": [schema.user_col, schema.item_col, schema.rating_col],
            "like_threshold": like_threshold}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:24]


def save_cache(log: EncodedLog, directory: Path) -> None:
    arrays: dict[str, np.ndarray] = {"activity": log.enc.activity,
                                     "rows_per_user": log.rows_per_user}
    if log.enc.liked_share is not None:
        arrays["liked_share"] = log.enc.liked_share
    for j, c in enumerate(log.enc.channels):
        arrays[f"indptr{j}"], arrays[f"indices{j}"] = c.indptr, c.indices
    meta = {"format": CACHE_FORMAT, "rows": log.rows, "like_threshold": log.like_threshold,
            "channels": len(log.enc.channels)}
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        np.savez(tmp / "arrays.npz", **arrays)
        pl.DataFrame({"user": log.enc.users}).write_parquet(tmp / "users.parquet")
        pl.DataFrame({"item": log.catalog}).write_parquet(tmp / "catalog.parquet")
        (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        if load_cache(directory) is None:  # never replace a good entry: another fit of
            shutil.rmtree(directory, ignore_errors=True)  # the same data may be reading it
            try:
                os.rename(tmp, directory)
            except OSError:  # another writer got there first: its entry is as good
                pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_cache(directory: Path) -> EncodedLog | None:
    """The cached encoding, or None when absent or unreadable (it is then rebuilt)."""
    try:
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
        if meta.get("format") != CACHE_FORMAT:
            return None
        users = pl.read_parquet(directory / "users.parquet").get_column("user")
        catalog = pl.read_parquet(directory / "catalog.parquet").get_column("item")
        with np.load(directory / "arrays.npz", allow_pickle=False) as z:
            shape = (len(users), len(catalog))
            channels = tuple(
                sp.csr_matrix((np.ones(len(z[f"indices{j}"]), dtype=np.float32),
                               z[f"indices{j}"], z[f"indptr{j}"]), shape=shape)
                for j in range(int(meta["channels"])))
            share = z["liked_share"] if "liked_share" in z.files else None
            enc = EncodedUsers(users, channels, z["activity"], share)
            return EncodedLog(enc, catalog, z["rows_per_user"], int(meta["rows"]),
                              meta["like_threshold"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile,
            pl.exceptions.PolarsError):
        return None
