"""`torchrun --nproc-per-node=2 -m recsynth fit` on CPU (gloo) with a tiny model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl

from recsynth.checkpoint import load_model
from recsynth.cli import main


def test_two_processes_train_one_model_written_by_rank_0(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(161), 8)  # an odd count: shards must still be equal
    log = pl.DataFrame({"user_id": users, "item_id": rng.integers(0, 60, users.size)})
    data = tmp_path / "log.parquet"
    log.write_parquet(data)
    out = tmp_path / "m"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
         "-m", "recsynth", "fit", str(data), "--out", str(out), "--epochs", "6",
         "--temperature", "0.01", "--rank", "4", "--holdout-frac", "0",
         "--cache-dir", str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(list((tmp_path / "cache").iterdir())) == 1  # rank 0 encoded, rank 1 read it
    assert proc.stdout.splitlines() == [str(out)]  # rank 0 alone prints the result
    assert proc.stderr.count("device: cpu (2 processes, gloo)") == 1  # and reports progress
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["processes"] == 2
    history = [json.loads(line) for line in (out / "training.jsonl").open()]
    assert [r["epoch"] for r in history] == list(range(7))
    assert any(r.get("loss_g") is not None for r in history)  # generator steps ran too
    model = load_model(out)
    assert model.generator.net[-1].weight.abs().sum() > 0  # trained (starts at zero)
    syn = tmp_path / "syn.parquet"
    assert main(["sample", str(out), "--users", "20", "--out", str(syn), "-q"]) == 0
    assert pl.read_parquet(syn)["user_id"].n_unique() == 20


def _torchrun(args: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             "--nproc-per-node=2", "-m", "recsynth", "fit", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_interrupted_two_process_fit_resumes_to_the_uninterrupted_weights(
        tmp_path: Path) -> None:
    import os
    import signal
    import time

    import torch

    rng = np.random.default_rng(1)
    users = np.repeat(np.arange(161), 8)
    pl.DataFrame({"user_id": users, "item_id": rng.integers(0, 60, users.size)}) \
        .write_parquet(tmp_path / "log.parquet")
    common = [str(tmp_path / "log.parquet"), "--temperature", "0.01", "--rank", "4",
              "--holdout-frac", "0", "-q"]
    part, ckpt = tmp_path / "part", tmp_path / "part.checkpoint.pt"
    proc = _torchrun([*common, "--out", str(part), "--epochs", "100000"],
                     start_new_session=True)
    deadline = time.monotonic() + 180
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)  # a scheduler stopping the whole job
    proc.communicate(timeout=120)
    assert ckpt.is_file() and not part.exists()
    done = torch.load(ckpt, weights_only=True)["state"]["epoch"]
    total = str(done + 3)

    full = _torchrun([*common, "--out", str(tmp_path / "full"), "--epochs", total])
    resumed = _torchrun([*common, "--out", str(part), "--epochs", total, "--resume"])
    for p in (full, resumed):
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-2000:]
    assert not ckpt.exists()
    a = torch.load(tmp_path / "full" / "weights.pt", weights_only=True)
    b = torch.load(part / "weights.pt", weights_only=True)
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)


def test_sample_under_torchrun_writes_the_parts_one_process_writes(
        tmp_path: Path, sample_path: Path) -> None:
    model = tmp_path / "m"
    assert main(["fit", str(sample_path), "--out", str(model), "--epochs", "0",
                 "--temperature", "0.01", "-q"]) == 0
    for mode in (["--users", "700"], ["--rows", "30000"]):
        common = [str(model), *mode, "--rows-per-file", "1500", "--batch-users", "64",
                  "--seed", "3"]
        ref, ranked = tmp_path / f"ref{mode[0]}", tmp_path / f"ranked{mode[0]}"
        assert main(["sample", *common, "--out", str(ref), "-q"]) == 0
        proc = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone",
             "--nproc-per-node=2", "-m", "recsynth", "sample", *common, "--out", str(ranked)],
            capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.splitlines() == [str(ranked)]
        assert "(2 processes)" in proc.stderr
        names = sorted(p.name for p in ref.iterdir())
        assert len(names) > 3 and names == sorted(p.name for p in ranked.iterdir())
        for name in names:
            assert (ref / name).read_bytes() == (ranked / name).read_bytes(), name
        if mode[0] == "--rows":
            assert pl.scan_parquet(ranked).select(pl.len()).collect().item() >= 30000
