"""Typed settings, saved beside every result so a figure can be reproduced."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_KS = (5, 10, 20, 50)
DEFAULT_RECOMMENDERS = ("pop", "itemknn", "ease", "bpr", "apr")


@dataclass(frozen=True)
class EvalConfig:
    ks: tuple[int, ...] = DEFAULT_KS
    recommenders: tuple[str, ...] = DEFAULT_RECOMMENDERS
    min_rating: float | None = None  # rows rated below this are not positives for utility
    test_frac: float = 0.2  # share of each held-out user's items hidden for scoring
    seed: int = 0


@dataclass(frozen=True)
class ModelConfig:
    """Every hyper-parameter of `recsynth fit`; saved as config.json beside the weights."""

    rank: int = 50  # SVD factors per user code
    temperature: float = 0.015  # decoder sharpness: lower = closer to the dense core
    like_threshold: float | None = None  # None: rounded-up mean rating; no rating: one channel
    hidden: int = 128  # width of the generator's residual MLP and of the critic
    pac: int = 8  # PacGAN: the critic judges packs of this many users
    gp_lambda: float = 10.0  # WGAN-GP penalty weight
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.9
    n_critic: int = 5  # critic steps per generator step
    batch_size: int = 256  # users per critic step (a multiple of pac)
    epochs: int = 40
    check_every: int = 5  # epochs between held-out utility checks
    patience: int = 3  # checks without improvement before stopping early
    holdout_frac: float = 0.1  # users kept out of fitting, for the held-out check
    calibration_steps: int = 10  # item-frequency calibration steps after training
    seed: int = 0
