"""Score calibration: generated users' item counts follow the real marginal even when the
generator has moved the activity coordinate away from a standard normal."""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import ks_2samp

from recsynth.decode import calibrate_scores, counts_from_codes
from recsynth.encode import Marginal
from recsynth.latent import ClosedForm


def _form(real_activity: np.ndarray) -> ClosedForm:
    dim = 3  # rank 1 code, activity score, liked-share score
    return ClosedForm(np.zeros((10, 1)), np.zeros(10), np.zeros(dim), np.eye(dim), np.ones(1),
                      np.zeros((1, dim)), np.eye(dim)[None],
                      Marginal.fit(np.log(real_activity)), Marginal.fit(np.full(50, 0.5)), 1)


def _moved_codes(n: int, gen: torch.Generator) -> torch.Tensor:
    """A generator whose activity coordinate drifted: N(0.8, 0.6²) instead of N(0, 1)."""
    x = torch.randn(n, 3, generator=gen)
    x[:, 1] = 0.8 + 0.6 * x[:, 1]
    return x


def test_calibrated_scores_bring_back_the_real_activity_marginal() -> None:
    real = np.random.default_rng(0).geometric(0.05, size=5000).astype(np.float64)
    form = _form(real)
    x = _moved_codes(20_000, torch.Generator().manual_seed(5))
    before = counts_from_codes(x, form, 10_000)[0].numpy()
    calibrated = calibrate_scores(form, _moved_codes, seed=0)
    after = counts_from_codes(x, calibrated, 10_000)[0].numpy()
    assert ks_2samp(before, real).statistic > 0.2  # the drift shows without calibration
    assert ks_2samp(after, real).statistic < 0.03
    # a coordinate that is standard normal is left (almost) as it was
    normal = calibrate_scores(form, lambda n, g: torch.randn(n, 3, generator=g), seed=0)
    plain = counts_from_codes(torch.randn(20_000, 3), normal, 10_000)[0].numpy()
    assert ks_2samp(plain, real).statistic < 0.03
