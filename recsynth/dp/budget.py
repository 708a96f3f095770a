"""The (ε, δ) budget: how it is split, and Opacus's RDP accountant over every mechanism.

Every release that reads real data is a Gaussian mechanism on a per-user quantity of L2
norm ≤ 1 (after clipping): the preprocessing blocks are full-batch Gaussian mechanisms
(sample rate 1) and the critic's DP-SGD steps are subsampled ones (Poisson rate q). All of
them are entries (noise multiplier, sample rate, steps) of one Opacus `RDPAccountant`
history, so ε is computed by Opacus for their composition: no hand-written accounting.
Releasing items and rating values only when their noisy count clears a threshold costs a
δ share of its own (`THRESHOLD_DELTA_SHARE` each), outside the RDP part.
"""

from __future__ import annotations

import math
import secrets
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from opacus.accountants import RDPAccountant
from opacus.accountants.analysis import rdp as rdp_analysis

from recsynth.errors import UsageError

ACCOUNTANT = "rdp (opacus.accountants.RDPAccountant)"
MECHANISM = ("Gaussian mechanisms on clipped per-user statistics + DP-SGD (Opacus, Poisson "
             "sampling of users, per-user clipping) for the critic")
THRESHOLD_DELTA_SHARE = 0.25  # of δ, per thresholded release (item vocabulary, values)
MAX_NOISE = 200.0  # beyond this noise multiplier the critic's gradients are pure noise
History = list[tuple[float, float, int]]


ORDERS = tuple(RDPAccountant.DEFAULT_ALPHAS)


@lru_cache(maxsize=1024)
def _rdp_per_step(sigma: float, q: float) -> np.ndarray:
    """Opacus's RDP of one step at every order; RDP adds up over steps, so one slow
    evaluation (fractional orders) serves every step count of this (σ, q)."""
    return np.asarray(rdp_analysis.compute_rdp(q=q, noise_multiplier=sigma, steps=1,
                                               orders=list(ORDERS)))


def epsilon_of(history: History, delta: float) -> float:
    """ε of the composition of `history` at `delta`: what Opacus's `RDPAccountant` with
    this history returns (the same compute_rdp sum and get_privacy_spent conversion)."""
    if not any(steps for _, _, steps in history):
        return 0.0
    rdp = sum(_rdp_per_step(sigma, q) * steps for sigma, q, steps in history)
    with warnings.catch_warnings():  # "optimal order is the largest alpha": still a bound
        warnings.simplefilter("ignore", UserWarning)
        eps, _ = rdp_analysis.get_privacy_spent(orders=list(ORDERS), rdp=rdp, delta=delta)
    return float(eps)


def _bisect_sigma(spent, target: float, hi: float = 1e4) -> float:
    """Smallest noise multiplier σ ≥ 0.3 (to 1 %) with spent(σ) ≤ target; inf if none ≤
    hi. (Below 0.3 the RDP bound is loose and the noise useless as protection.)"""
    if spent(hi) > target:
        return math.inf
    lo = 0.3
    if spent(lo) <= target:
        return lo
    while hi / lo > 1.01:
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if spent(mid) <= target else (mid, hi)
    return hi


@dataclass(frozen=True)
class BudgetPlan:
    """How (ε, δ) is spent: preprocessing noise, DP-SGD noise, sampling rate and steps."""

    epsilon: float
    delta: float
    delta_rdp: float  # δ left for the RDP → (ε, δ) conversion
    pre_sigma: float  # noise multiplier of every preprocessing block (sensitivity 1)
    pre_blocks: int
    sgd_sigma: float
    sample_rate: float
    steps_per_epoch: int
    epochs: int  # epochs affordable within the budget (≤ the configured epochs)

    def history(self, steps: int) -> History:
        pre: History = [(self.pre_sigma, 1.0, self.pre_blocks)] if self.pre_blocks else []
        return pre + ([(self.sgd_sigma, self.sample_rate, steps)] if steps else [])

    def spent(self, steps: int) -> float:
        """ε after the preprocessing and `steps` DP-SGD steps."""
        return epsilon_of(self.history(steps), self.delta_rdp)

    def affords(self, steps: int) -> bool:
        return self.spent(steps) <= self.epsilon * (1 + 1e-9)


DEFAULT_DELTA = 1e-6  # public: a default computed from n would release n in the manifest


def default_delta(n_users: int) -> float:
    """δ well below 1/n for logs up to 100,000 users; larger ones need --delta."""
    return DEFAULT_DELTA


def noise_seed() -> int:
    """64 bits from the OS for the mechanisms' noise: unknown to anyone, not saved."""
    return secrets.randbits(63)


def validate_epsilon(epsilon: float, delta: float | None) -> None:
    """Checks that need no data (ε > 0 and finite, 0 < δ < 1)."""
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise UsageError(f"--epsilon must be a positive finite number (got {epsilon}); "
                         "leave it out for a non-private model")
    if delta is not None and not 0 < delta < 1:
        raise UsageError(f"--delta must be in (0, 1) (got {delta})")


def plan_budget(epsilon: float, delta: float | None, n_users: int, batch_size: int,
                epochs: int, noise_multiplier: float | None, pre_share: float,
                pre_blocks: int, thresholds: int) -> BudgetPlan:
    """Split (ε, δ) and pick the DP-SGD noise; a clear UsageError when it cannot work.

    `pre_share` of ε (alone) goes to the preprocessing blocks; DP-SGD gets what RDP
    composition leaves (a little more than the rest, since RDP composes sub-additively).
    `noise_multiplier` None: the smallest σ that affords all `epochs`; given: the epochs
    it affords (at least one, else an error).
    """
    validate_epsilon(epsilon, delta)
    delta = default_delta(n_users) if delta is None else delta
    if delta >= 1.0 / n_users:
        raise UsageError(f"--delta {delta:g} must be below 1/number of users "
                         f"(1/{n_users} = {1.0 / n_users:.3g}); the default is "
                         f"{default_delta(n_users):.3g}")
    delta_rdp = delta * (1 - THRESHOLD_DELTA_SHARE * thresholds)
    pre_sigma = _bisect_sigma(lambda s: epsilon_of([(s, 1.0, pre_blocks)], delta_rdp),
                              pre_share * epsilon)
    if not math.isfinite(pre_sigma):
        raise UsageError(f"--epsilon {epsilon:g}: too small a budget for the preprocessing")
    per_epoch = max(1, math.ceil(n_users / batch_size))
    q = 1.0 / per_epoch  # what Opacus's DPDataLoader uses: 1 / batches per epoch
    plan = BudgetPlan(epsilon, delta, delta_rdp, pre_sigma, pre_blocks, math.inf, q,
                      per_epoch, epochs)
    if epochs == 0:
        return plan

    def total(sigma: float, n_epochs: int) -> float:
        return epsilon_of(plan.history(0) + [(sigma, q, n_epochs * per_epoch)], delta_rdp)

    if noise_multiplier is None:
        sigma = _bisect_sigma(lambda s: total(s, epochs), epsilon, hi=MAX_NOISE)
        if not math.isfinite(sigma):
            raise UsageError(f"--epsilon {epsilon:g}: too small a budget to train {epochs} "
                             f"epochs (noise multiplier would exceed {MAX_NOISE:g}); raise "
                             "--epsilon or lower --epochs")
        return BudgetPlan(**{**plan.__dict__, "sgd_sigma": sigma})
    if noise_multiplier <= 0:
        raise UsageError(f"--noise-multiplier must be positive or auto (got {noise_multiplier})")
    plan = BudgetPlan(**{**plan.__dict__, "sgd_sigma": noise_multiplier})
    if not plan.affords(per_epoch):
        raise UsageError(f"--epsilon {epsilon:g}: too small a budget for one epoch at "
                         f"--noise-multiplier {noise_multiplier:g} (one epoch spends "
                         f"ε = {plan.spent(per_epoch):.3g}); raise one of them")
    lo, hi = 1, epochs  # the most epochs it affords (ε grows with steps): bisection
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if plan.affords(mid * per_epoch) else (lo, mid - 1)
    affordable = lo
    return BudgetPlan(**{**plan.__dict__, "epochs": affordable})
