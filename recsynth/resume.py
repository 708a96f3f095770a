"""Training checkpoints for `fit --resume`: one file beside the model directory.

`MODEL_DIR.checkpoint.pt` is rewritten atomically after every epoch while `fit` trains and
removed once the model directory is written, so an interrupted fit (Ctrl-C, SIGTERM, a
killed job) leaves the last finished epoch behind. It holds the generator, critic and both
optimisers, the best state so far, the training RNG and the history: continuing from it
gives the same weights as a run that was never interrupted. Everything before training
(encoding, closed form, temperature search) is deterministic for the seed and recomputed.

Like the model directory it holds only tensors and plain containers, loaded with
`weights_only=True`, and a key (input fingerprints and settings) so a checkpoint is never
continued with other data or other hyper-parameters.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from recsynth.errors import DataError, UsageError, first_line

CHECKPOINT_FORMAT = 1
# may change between the interrupted run and the resumed one
FREE_SETTINGS = ("epochs",)


def checkpoint_path(out: str | os.PathLike[str]) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".checkpoint.pt")


def resume_key(inputs: list[dict[str, Any]], settings: dict[str, Any]) -> str:
    """What must match for a checkpoint to be continued (file paths may move)."""
    fixed = {k: v for k, v in settings.items() if k not in FREE_SETTINGS}
    files = [{"bytes": f["bytes"], "sha256": f["sha256"]} for f in inputs]
    return json.dumps({"format": CHECKPOINT_FORMAT, "inputs": files, "settings": fixed},
                      sort_keys=True)


def save_checkpoint(path: Path, key: str, state: dict[str, Any]) -> None:
    """Write to a temp file and rename, so an interrupt mid-write keeps the previous one.
    The folder is made here, not when fit starts: a fit that fails before its first
    checkpoint leaves no folder behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        torch.save({"key": key, "state": state}, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def require_checkpoint(path: Path) -> None:
    if not path.is_file():
        raise UsageError(f"--resume: no checkpoint at {path} (a finished fit removes it; "
                         "run without --resume to start afresh)")


def load_checkpoint(path: Path, key: str) -> dict[str, Any]:
    require_checkpoint(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise DataError(f"{path}: not a recsynth checkpoint; refusing to load "
                        f"({first_line(exc)})") from None
    if not isinstance(blob, dict) or not isinstance(blob.get("state"), dict):
        raise DataError(f"{path}: not a recsynth checkpoint")
    if blob.get("key") != key:
        raise DataError(f"{path}: made from other input files or other settings than this "
                        "fit; rerun with the same data and options, or without --resume")
    return blob["state"]


def remove_checkpoint(path: Path) -> None:
    if path.exists():
        path.unlink()
