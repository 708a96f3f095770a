"""`fit --epsilon`: the accountant agrees with Opacus, the budget is never overspent,
bad budgets fail before any work, and the model records its guarantee."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier

from recsynth.cli import main
from recsynth.config import ModelConfig
from recsynth.dp import mechanisms as mech
from recsynth.dp.budget import epsilon_of, plan_budget
from recsynth.errors import UsageError
from recsynth.fitting import fit_model

SMALL = {"dp_max_items": 150, "hidden": 32, "calibration_steps": 2, "dp_public_catalog": True}


def test_our_epsilon_is_opacus_for_the_configured_noise_rate_and_steps() -> None:
    plan = plan_budget(3.0, 1e-5, 1000, 50, 4, None, 0.3, 0, 0)
    steps = plan.steps_per_epoch * plan.epochs
    opacus = RDPAccountant()
    for _ in range(steps):  # as Opacus's optimizer hook records DP-SGD steps
        opacus.step(noise_multiplier=plan.sgd_sigma, sample_rate=plan.sample_rate)
    assert plan.spent(steps) == pytest.approx(opacus.get_epsilon(delta=plan.delta_rdp),
                                              rel=1e-12)
    assert plan.spent(steps) <= 3.0
    theirs = get_noise_multiplier(target_epsilon=3.0, target_delta=1e-5,
                                  sample_rate=plan.sample_rate, steps=steps)
    assert plan.sgd_sigma == pytest.approx(theirs, rel=0.02)


def test_preprocessing_composes_into_the_reported_epsilon() -> None:
    plan = plan_budget(2.0, 1e-6, 5000, 64, 3, None, 0.3, 5, 2)
    assert epsilon_of(plan.history(0), plan.delta_rdp) == pytest.approx(0.6, rel=0.01)
    full = plan.steps_per_epoch * plan.epochs
    assert 0.6 < plan.spent(full) <= 2.0 and not plan.affords(full + plan.steps_per_epoch)
    assert plan.delta_rdp == pytest.approx(0.5e-6)


def test_a_given_noise_multiplier_buys_only_the_epochs_it_affords() -> None:
    plan = plan_budget(4.0, 1e-5, 1000, 100, 500, 2.0, 0.3, 4, 0)
    assert 1 <= plan.epochs < 500
    assert plan.affords(plan.epochs * plan.steps_per_epoch)
    assert not plan.affords((plan.epochs + 1) * plan.steps_per_epoch)


@pytest.mark.parametrize(("args", "words"), [
    (["--epsilon", "0"], "--epsilon must be a positive"),
    (["--epsilon", "-1"], "--epsilon must be a positive"),
    (["--epsilon", "1", "--delta", "0.01"], "below 1/number of users"),
    (["--epsilon", "0.5", "--noise-multiplier", "0.3"], "too small a budget for one epoch"),
    (["--epsilon", "0.05"], "too small a budget for the preprocessing"),
])
def test_bad_budgets_fail_in_one_line_before_anything_is_written(
        args: list[str], words: str, sample_path: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model"
    assert main(["fit", str(sample_path), "--out", str(out), "-q", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_mechanism_helpers_are_sensible() -> None:
    rng = np.random.default_rng(0)
    import scipy.sparse as sp
    m = sp.csr_matrix(np.ones((3, 10)))
    assert (np.diff(mech.capped_rows(m, 4, rng).indptr) == 4).all()
    hist = mech.histogram(np.array([1.0, 2.0, 2.0, 5.0]), mech.ACTIVITY_EDGES)
    marg = mech.marginal_from_histogram(hist, mech.ACTIVITY_EDGES)
    assert marg.knots[0] == pytest.approx(0.5) and 5.0 < marg.knots[-1] <= 6.5
    gram = mech.noisy_gram(sp.csr_matrix(np.eye(4)), 0.1, rng)
    assert np.allclose(gram, gram.T)


@pytest.fixture(scope="module")
def dp_model(sample_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dp") / "model"
    config = ModelConfig(epsilon=8.0, epochs=3, **SMALL)
    fit_model(str(sample_path), str(out), config)
    return out


def test_dp_model_records_its_guarantee_and_epsilon_per_epoch(dp_model: Path) -> None:
    manifest = json.loads((dp_model / "manifest.json").read_text())
    priv = manifest["privacy"]
    assert {"epsilon", "delta", "mechanism", "accountant"} <= set(priv)
    assert 0 < priv["epsilon"] <= 8.0 and priv["delta"] < 1 / 300
    assert priv["epsilon"] == pytest.approx(epsilon_of(priv["history"],
                                                       priv["delta_split"]["rdp"]), abs=1e-3)
    history = [json.loads(x) for x in (dp_model / "training.jsonl").read_text().splitlines()]
    eps = [h["epsilon"] for h in history]
    assert [h["epoch"] for h in history] == [0, 1, 2, 3]
    assert eps == sorted(eps) and eps[-1] == pytest.approx(priv["epsilon"], abs=1e-3)
    assert "rows" not in manifest  # exact counts of the real log are not recorded
    assert set(manifest["inputs"][0]) == {"path"}  # no size or hash of the data
    assert all("loss_d" not in h for h in history)  # the critic's real-data loss is not DP


def test_dp_model_samples_and_evaluate_prints_the_guarantee(
        dp_model: Path, split_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    syn = tmp_path / "syn.parquet"
    assert main(["sample", str(dp_model), "--users", "50", "--out", str(syn), "-q"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--train", str(split_dir / "train.parquet"),
                 "--holdout", str(split_dir / "holdout.parquet"),
                 "--synthetic", str(syn), "--recommenders", "pop", "--k", "10",
                 "--model", str(dp_model), "--json", "-q"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["privacy"]["guarantee"]["epsilon"] <= 8.0


def test_training_stops_when_the_budget_is_spent(sample_path: Path, tmp_path: Path) -> None:
    config = ModelConfig(epsilon=4.0, epochs=400, noise_multiplier=1.5, **SMALL)
    fit_model(str(sample_path), str(tmp_path / "m"), config)
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["stopped"] == "privacy budget"
    assert manifest["best_epoch"] < 400 and manifest["privacy"]["epsilon"] <= 4.0


def test_non_private_options_are_refused_with_epsilon(sample_path: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--resume"):
        fit_model(str(sample_path), str(tmp_path / "m"), ModelConfig(epsilon=1.0), resume=True)


def test_the_seed_does_not_fix_the_mechanisms_noise(sample_path: Path, dp_model: Path,
                                                     tmp_path: Path) -> None:
    """The seed is saved with the model: if it fixed the noise, refitting with and without
    one user would tell whether that user was in the data."""
    again = tmp_path / "again"
    fit_model(str(sample_path), str(again), ModelConfig(epsilon=8.0, epochs=3, **SMALL))
    assert (again / "weights.pt").read_bytes() != (dp_model / "weights.pt").read_bytes()
    manifest = json.loads((again / "manifest.json").read_text())
    assert manifest["privacy"]["delta"] == pytest.approx(1e-6)  # public, not 0.1 / n


def test_dp_model_with_narrow_unsigned_keys_samples(sample_frame, tmp_path: Path) -> None:
    import polars as pl

    data = tmp_path / "u32.parquet"
    users = sample_frame["user_id"].unique().sort()
    remap = dict(zip(users.to_list(), range(len(users)), strict=True))
    sample_frame.with_columns(pl.col("user_id").replace_strict(remap).cast(pl.UInt32)) \
        .write_parquet(data)
    out = tmp_path / "m"
    fit_model(str(data), str(out), ModelConfig(epsilon=8.0, epochs=1, **SMALL))
    syn = tmp_path / "syn.parquet"
    assert main(["sample", str(out), "--users", "20", "--out", str(syn), "-q"]) == 0
    keys = pl.read_parquet(syn)["user_id"]
    assert keys.dtype == pl.UInt32 and keys.n_unique() == 20 and keys.min() > len(users)


def test_dp_string_keys_take_a_random_prefix_no_real_key_is_likely_to_share(
        sample_frame, tmp_path: Path) -> None:
    import polars as pl

    data = tmp_path / "str.parquet"
    # real keys that the old fixed 'syn-' prefix would have reproduced
    sample_frame.with_columns(pl.format("syn-{}", pl.col("user_id").cast(pl.String)
                                        .str.zfill(9)).alias("user_id")).write_parquet(data)
    out = tmp_path / "m"
    fit_model(str(data), str(out), ModelConfig(epsilon=8.0, epochs=1, **SMALL))
    syn = tmp_path / "syn.parquet"
    assert main(["sample", str(out), "--users", "20", "--out", str(syn), "-q"]) == 0
    keys = pl.read_parquet(syn)["user_id"]
    real = set(pl.read_parquet(data)["user_id"].to_list())
    assert keys.n_unique() == 20 and not real & set(keys.to_list())
    assert keys.str.contains(r"^syn-[0-9a-f]{8}-\d{9}$").all()
