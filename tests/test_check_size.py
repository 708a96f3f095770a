"""The held-out check scores EASE trained on as many generated users as README says to sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsynth import fitting, train
from recsynth.config import ModelConfig
from recsynth.train import UtilityCheck


@pytest.mark.parametrize("ratio, cap", [(2.5, None), (2.5, 50)])
def test_check_generates_ratio_times_the_fitting_users_up_to_a_cap(
        tmp_path: Path, sample_path: Path, monkeypatch: pytest.MonkeyPatch, ratio: float,
        cap: int | None) -> None:
    seen: list[tuple[int, int, int]] = []
    real_build = UtilityCheck.build

    def spy(form, temperature, n_items, n_generated, validation, seed):
        check = real_build(form, temperature, n_items, n_generated, validation, seed)
        seen.append((n_generated, validation.shape[0], check.n_generated))
        return check

    monkeypatch.setattr(fitting.UtilityCheck, "build", staticmethod(spy))
    if cap is not None:
        monkeypatch.setattr(train, "CHECK_MAX_GENERATED", cap)
    fitting.fit_model(str(sample_path), str(tmp_path / "model"),
                      ModelConfig(epochs=0, seed=0, check_ratio=ratio))
    n_users = pl.read_parquet(sample_path)["user_id"].n_unique()
    assert seen, "the temperature search builds a check per temperature"
    for asked, n_val, built in seen:
        assert asked == round(ratio * (n_users - n_val))
        assert built == (asked if cap is None else min(asked, cap))


SEARCH = {  # an online-retail search: check NDCG@10 falls and DCR share falls as T grows
    "0.003": {"check_ndcg10": 0.249, "dcr_share": 0.565},
    "0.005": {"check_ndcg10": 0.251, "dcr_share": 0.560},
    "0.01": {"check_ndcg10": 0.245, "dcr_share": 0.552},
    "0.015": {"check_ndcg10": 0.230, "dcr_share": 0.536},
    "0.02": {"check_ndcg10": 0.220, "dcr_share": 0.529},
}


@pytest.mark.parametrize("max_dcr, expected", [
    (0.6, 0.005),   # the best check
    (0.55, 0.015),  # the guard rules out the sharper ones
    (0.5, 0.02),    # nothing inside the guard: the softest
])
def test_pick_temperature_by_mean(max_dcr: float, expected: float) -> None:
    assert fitting.pick_temperature(SEARCH, max_dcr, 1.0) == expected


def test_nothing_inside_the_guard_takes_the_softest_not_the_noisiest_share() -> None:
    # a MovieLens search: every share over 0.55, the smallest estimate (0.5808 at T 0.01)
    # below T 0.02's by less than the guard's own noise
    shares = {"0.003": 0.638, "0.005": 0.629, "0.01": 0.5808, "0.015": 0.589, "0.02": 0.5817}
    search = {t: {"check_ndcg10": 0.30, "dcr_share": d} for t, d in shares.items()}
    assert fitting.pick_temperature(search, 0.55, 1.0) == 0.02


def _per_user(best: np.ndarray, shift: float, noise: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    scores = best - shift + rng.normal(0.0, noise, len(best))
    return {"check_ndcg10": float(scores.mean()), "dcr_share": 0.5, "per_user": scores}


@pytest.mark.parametrize("noise, slack, softer_taken", [
    (0.3, 1.0, True),    # a 0.01 gap on 75 users with noisy differences: within one SE
    (0.01, 1.0, False),  # the same gap, every user a little worse: a real loss
    (0.3, 0.0, False),   # no slack: the best check
])
def test_pick_temperature_spends_an_unresolved_gap_on_privacy(noise: float, slack: float,
                                                               softer_taken: bool) -> None:
    best = np.random.default_rng(0).uniform(0.0, 1.0, 75)
    search = {"0.01": {"check_ndcg10": float(best.mean()), "dcr_share": 0.5, "per_user": best},
              "0.02": _per_user(best, 0.01, noise, 1),
              "0.03": _per_user(best, 0.2, noise, 2)}  # far worse, whatever the noise
    assert search["0.02"]["check_ndcg10"] < search["0.01"]["check_ndcg10"]
    assert fitting.pick_temperature(search, 0.55, slack) == (0.02 if softer_taken else 0.01)


def test_the_checks_ease_models_at_most_the_capped_items(
        tmp_path: Path, sample_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its cost is min(users, items)³ per check, so a wide catalog must not set it."""
    modelled: list[int] = []
    real_fit = train.EASE.fit

    def spy(self, data, rng):
        model = real_fit(self, data, rng)
        modelled.append(len(model.items))
        return model

    monkeypatch.setattr(train, "CHECK_MAX_ITEMS", 40)
    monkeypatch.setattr(train.EASE, "fit", spy)
    fitting.fit_model(str(sample_path), str(tmp_path / "model"), ModelConfig(epochs=0, seed=0))
    n_items = pl.read_parquet(sample_path)["item_id"].n_unique()
    assert modelled and n_items > 40 and max(modelled) == 40
