"""Once the held-out check has chosen the temperature and the epoch, the model is fitted
again on every user: the check's users are not lost to the final model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import torch

from recsynth.cli import main
from recsynth.config import ModelConfig, auto_holdout
from recsynth.latent import ClosedForm, Marginal
from recsynth.split import holdout_users
from recsynth.train import train_gan

ONLY_CHECKED = "ONLY-IN-THE-CHECK"


def _log_with_an_item_only_the_check_has(frame: pl.DataFrame, path: Path) -> int:
    """sample_data plus one item bought by exactly the users `fit --seed 0` holds out."""
    n_users = frame["user_id"].n_unique()
    held = holdout_users(frame["user_id"], auto_holdout(n_users, refit=True), 0)
    extra = frame.filter(pl.col("user_id").is_in(held.implode())) \
        .group_by("user_id", maintain_order=True).first() \
        .with_columns(item_id=pl.lit(ONLY_CHECKED))
    pl.concat([frame, extra]).write_parquet(path)
    return len(held)


def _share_with_item(model: Path, out: Path) -> float:
    assert main(["sample", str(model), "--users", "600", "--out", str(out), "--seed", "1",
                 "-q"]) == 0
    syn = pl.read_parquet(out)
    return syn.filter(pl.col("item_id") == ONLY_CHECKED)["user_id"].n_unique() / 600


def test_refit_learns_from_the_check_users(sample_frame: pl.DataFrame, tmp_path: Path) -> None:
    data = tmp_path / "log.parquet"
    n_held = _log_with_an_item_only_the_check_has(sample_frame, data)
    real_share = n_held / sample_frame["user_id"].n_unique()
    frac = str(auto_holdout(sample_frame["user_id"].n_unique(), refit=True))
    args = [str(data), "--epochs", "0", "--temperature", "0.01", "--holdout-frac", frac,
            "--max-items", "1024", "-q"]  # a smaller check EASE: quicker
    assert main(["fit", *args, "--out", str(tmp_path / "refit")]) == 0
    assert main(["fit", *args, "--no-refit", "--out", str(tmp_path / "kept")]) == 0

    refit = json.loads((tmp_path / "refit" / "manifest.json").read_text())
    assert refit["users"] == {"fit": sample_frame["user_id"].n_unique(), "check": n_held}
    assert refit["refit"]["users"] == refit["users"]["fit"]
    assert json.loads((tmp_path / "kept" / "manifest.json").read_text())["refit"] is None
    # the item only the check's users hold: unseen by the model fitted without them
    assert _share_with_item(tmp_path / "kept", tmp_path / "kept.parquet") < 0.01
    assert _share_with_item(tmp_path / "refit", tmp_path / "refit.parquet") > real_share / 3


def _form(codes: np.ndarray) -> ClosedForm:
    mean = codes.mean(axis=0).astype(np.float64)
    chol = np.linalg.cholesky(np.cov(codes.T))
    return ClosedForm(np.zeros((4, 1)), np.zeros(4), mean, chol, np.ones(1), mean[None],
                      chol[None], Marginal(np.zeros(3)), None, 1)


def test_keep_epoch_keeps_that_generator_while_the_critic_trains_on() -> None:
    codes = np.random.default_rng(0).normal(size=(400, 3)).astype(np.float32)
    codes[:, 0] = np.abs(codes[:, 0])  # something for the generator to learn
    form = _form(codes)
    config = ModelConfig(epochs=6, hidden=16, batch_size=64, seed=0)
    kept = train_gan(codes, form, config, None, keep_epoch=3)
    short = train_gan(codes, form, ModelConfig(epochs=3, hidden=16, batch_size=64, seed=0),
                      None)
    full = train_gan(codes, form, config, None)
    assert kept.best_epoch == 3 and full.best_epoch == 6
    same = [torch.equal(kept.generator_state[k], short.generator_state[k])
            for k in kept.generator_state]
    assert all(same)
    assert not all(torch.equal(kept.generator_state[k], full.generator_state[k])
                   for k in kept.generator_state)
    assert all(torch.equal(kept.critic_state[k], full.critic_state[k])
               for k in kept.critic_state)  # the most trained judge, for --filter-quantile


def test_small_logs_hold_out_enough_users_for_the_check() -> None:
    assert auto_holdout(754, refit=True) == 0.25  # MovieLens-100K's train side: 188 checked
    assert round(auto_holdout(1500, refit=True) * 1500) == 200
    assert auto_holdout(3498, refit=True) == 0.1  # online-retail's: 350 checked
    assert auto_holdout(754, refit=False) == 0.1  # without the refit they are lost to the model
