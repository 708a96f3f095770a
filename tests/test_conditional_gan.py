"""The GAN learns conditions: training-by-sampling draws, and a condition the closed form
does not know is learned by the generator from the critic alone."""

from __future__ import annotations

import numpy as np
import torch

from recsynth.conditions import AttributeStats, Conditions
from recsynth.condsampler import COND_SHARE, Conditioning, ConditionSampler
from recsynth.config import ModelConfig
from recsynth.encode import Marginal
from recsynth.latent import ClosedForm
from recsynth.model import ResidualGenerator
from recsynth.train import sample_codes, train_gan


def _form(codes: np.ndarray) -> ClosedForm:
    """One Gaussian over all codes: it knows nothing of the groups."""
    mean = codes.mean(axis=0).astype(np.float64)
    chol = np.linalg.cholesky(np.cov(codes.T))
    return ClosedForm(np.zeros((4, 1)), np.zeros(4), mean, chol, np.ones(1), mean[None],
                      chol[None], Marginal(np.zeros(3)), None, 1)


def _ignorant(values: list[str], labels: np.ndarray, dim: int) -> Conditions:
    """Group statistics with no information: global weights, zero offsets."""
    counts = np.bincount(labels[labels >= 0], minlength=len(values))
    return Conditions({"segment": AttributeStats(values, counts, np.ones((len(values), 1)),
                                                 np.zeros((len(values), dim)))})


def test_sampler_draws_real_users_of_the_drawn_value_and_favours_rare_values() -> None:
    rng = np.random.default_rng(0)
    labels = rng.choice(3, size=5000, p=[0.9, 0.08, 0.02]).astype(np.int32)
    labels[:40] = -1  # users without a value are drawn only unconditionally
    codes = rng.normal(size=(5000, 2)).astype(np.float32)
    sampler = ConditionSampler.build(_ignorant(["a", "b", "c"], labels, 2), labels[:, None],
                                     _form(codes))
    rows, cond = sampler.draw(20_000, torch.Generator().manual_seed(0))
    vec = cond.vector.numpy()
    conditional = vec.sum(axis=1) == 1
    assert set(np.unique(vec.sum(axis=1))) == {0.0, 1.0}
    assert abs(conditional.mean() - COND_SHARE) < 0.02
    drawn = vec[conditional].argmax(axis=1)
    assert np.array_equal(labels[rows.numpy()[conditional]], drawn)
    # log-frequency: the 2 % value gets far more than 2 % of the conditional draws
    rare_share = (drawn == 2).mean()
    counts = np.bincount(labels[labels >= 0])
    expected = np.log1p(counts[2]) / np.log1p(counts).sum()
    assert abs(rare_share - expected) < 0.02 and rare_share > 0.2
    assert np.all(cond.shift.numpy()[~conditional] == 0)


def test_gan_learns_a_condition_the_closed_form_does_not_know() -> None:
    rng = np.random.default_rng(0)
    n, dim = 2000, 3
    labels = (rng.random(n) < 0.3).astype(np.int32)  # value 'b' for 30 % of users
    codes = (rng.normal(size=(n, dim)) * 0.5).astype(np.float32)
    codes[:, 0] += np.where(labels == 1, -1.5, 1.5)
    form = _form(codes)
    conditions = _ignorant(["a", "b"], labels, dim)
    config = ModelConfig(epochs=20, hidden=64, batch_size=256, lr=1e-3, seed=0)

    def positive_share(generator: ResidualGenerator, value: list[float]) -> float:
        x = sample_codes(generator, form, 4000, torch.Generator().manual_seed(1),
                         Conditioning(torch.tensor(value)))
        return float((x[:, 0] > 0).float().mean())

    start = ResidualGenerator(dim, config.hidden, 1, 2)  # identity: the closed form
    assert abs(positive_share(start, [1, 0]) - positive_share(start, [0, 1])) < 0.05
    result = train_gan(codes, form, config, None, conditions=conditions,
                       labels=labels[:, None])
    trained = ResidualGenerator(dim, config.hidden, 1, 2)
    trained.load_state_dict(result.generator_state)
    # real: P(x0 > 0) is ~1 for 'a' and ~0 for 'b'; the mixture alone gives ~0.6 to both
    assert positive_share(trained, [1, 0]) > 0.9
    assert positive_share(trained, [0, 1]) < 0.1


def test_a_shard_conditions_on_every_value_learnable_overall() -> None:
    # value 'c' has 6 users overall (learnable), only 2 of them in this process's shard
    labels = np.array([0] * 50 + [1] * 50 + [2] * 6, dtype=np.int32)
    codes = np.random.default_rng(0).normal(size=(len(labels), 2)).astype(np.float32)
    conditions = _ignorant(["a", "b", "c"], labels, 2)
    shard = np.concatenate([np.arange(0, 100, 2), [100, 101]])
    sampler = ConditionSampler.build(conditions, labels[:, None], _form(codes), shard)
    assert sampler.n_users == len(shard) and sorted(sampler.position.tolist()) == [0, 1, 2]
    rows, cond = sampler.draw(4000, torch.Generator().manual_seed(0))
    drawn = cond.vector.numpy().argmax(axis=1)[cond.vector.numpy().sum(axis=1) == 1]
    picked = rows.numpy()[cond.vector.numpy().sum(axis=1) == 1]
    assert np.array_equal(labels[shard][picked], drawn)  # rows index the shard
    assert set(picked[drawn == 2].tolist()) == {50, 51}
