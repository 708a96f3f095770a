"""Typed settings, saved beside every result so a figure can be reproduced."""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass
from typing import Any

from recsynth.errors import UsageError
from recsynth.itemspace import MAX_SLOTS

DEFAULT_KS = (5, 10, 20, 50)
DEFAULT_RECOMMENDERS = ("pop", "itemknn", "ease", "bpr", "apr")


@dataclass(frozen=True)
class EvalConfig:
    ks: tuple[int, ...] = DEFAULT_KS
    recommenders: tuple[str, ...] = DEFAULT_RECOMMENDERS
    min_rating: float | None = None  # rows rated below this are not positives for utility
    test_frac: float = 0.2  # share of each held-out user's items hidden for scoring
    seed: int = 0
    repeats: int = 1  # fits averaged per recommender fitted from random draws (EASE, BPR, APR)


OTHER_SOFTNESS = 2.0
"""The other channel (rated under the like threshold) is decoded this many times softer
than the liked one. Its items are not positives, so a recommender of what users like learns
nothing from how sharply they are drawn, while the privacy distances count every item a
user has. MovieLens-100K defaults, 5 fits x 2 samples at 4x (benchmarks/RESULTS.md, "A
softer other channel"): softness 1 / 2 / 4 gave the same TSTR (0.911) at membership AUC
0.554 / 0.542 / 0.537; a recommender trained on every interaction, ratings ignored, pays
for it (TSTR about 0.88 at 1, 0.03 less at 2, 0.05 less at 4)."""


@dataclass(frozen=True)
class ModelConfig:
    """Every hyper-parameter of `recsynth fit`; saved as config.json beside the weights."""

    rank: int | None = None  # SVD factors per user code; None: clip(users / 15, 2, 200)
    temperature: float | None = None  # decoder sharpness; None: picked by the held-out check
    n_components: int | None = None  # Gaussian-mixture components; None: see auto_components
    other_softness: float = OTHER_SOFTNESS  # the other channel's temperature / the liked
    # channel's (1: one temperature for both)
    max_dcr_share: float = 0.55  # privacy guard of the temperature search (0.5: no closer
    # to the fitting users than to held-out ones; evaluate measures ~0.04 above this)
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
    min_epoch_steps: int = 25  # critic steps per epoch at least: small logs take several
    # passes over their users per epoch (ML-100K: 2 steps a pass), else the GAN barely trains
    check_every: int = 5  # epochs between held-out utility checks
    patience: int = 3  # checks without improvement before stopping early
    holdout_frac: float | None = None  # users kept out of fitting for the held-out check;
    # None: auto_holdout
    refit: bool = True  # after the held-out check chose the temperature and the epoch, fit
    # again on every user (the check's too) with those choices
    check_ratio: float = 4.0  # generated users per fitting user in the held-out check: the
    # size README recommends sampling (a recommender learns more from more synthetic users)
    check_slack_se: float = 1.0  # the temperature search takes the softest temperature whose
    # check trails the best by at most this many standard errors (0: the best check)
    calibration_steps: int = 10  # item-frequency calibration steps after training
    precision: str = "fp32"  # fp32, or bf16 autocast for the networks while training
    max_items: int = 20_000  # modelled item columns; rarer items share ordinal tail slots
    row_model_rows: int = 2_000_000  # per-row model: whole users up to this many log rows
    seed: int = 0
    # differential privacy (`fit --epsilon`, recsynth/dp): None = a non-private model
    epsilon: float | None = None
    delta: float | None = None  # None: dp.budget.DEFAULT_DELTA (1e-6)
    max_grad_norm: float = 1.0  # DP-SGD per-user gradient clipping bound
    noise_multiplier: float | None = None  # DP-SGD noise; None: the least that fits the budget
    dp_batch_size: int = 64  # expected users per DP-SGD step (Poisson rate = this / users)
    dp_max_items: int = 1000  # items released (by noisy count) and modelled in DP mode
    dp_count_cap: int = 16  # (channel, item) pairs one user adds to the noisy item counts
    dp_public_catalog: bool = False  # item keys are public: no noisy threshold on them
    dp_preprocess_share: float = 0.5  # share of ε (alone) for the preprocessing releases


TEMPERATURE_GRID = (0.003, 0.005, 0.01, 0.015, 0.02)
DEFAULT_TEMPERATURE = 0.01  # used when there is no held-out check to choose by


CHECK_USERS_WANTED = 200  # held-out users the check needs to resolve the temperature


def auto_holdout(n_users: int, refit: bool) -> float:
    """10 % of the users; with the refit (which gives them back to the model) up to 25 % on
    small logs, so the check has about 200 users: 75 MovieLens-100K users could not tell the
    temperatures apart (benchmarks/RESULTS.md)."""
    return min(0.25, max(0.1, CHECK_USERS_WANTED / n_users)) if refit else 0.1


def auto_rank(n_users: int) -> int:
    """About one factor per 15 users, so small logs are not memorised, at most 200."""
    return int(min(200, max(2, n_users // 15)))


def validate_config(config: ModelConfig) -> None:
    """Refuse settings no fit can use, in one line naming the setting (exit 2)."""
    if config.rank is not None and config.rank < 1:
        raise UsageError(f"--rank must be at least 1 (got {config.rank})")
    if config.epochs < 0:
        raise UsageError(f"--epochs must be at least 0 (got {config.epochs})")
    if min(config.hidden, config.pac, config.min_epoch_steps) < 1:
        raise UsageError(f"hidden, pac and min_epoch_steps must be at least 1 (got "
                         f"{config.hidden}, {config.pac}, {config.min_epoch_steps})")
    if config.precision not in ("fp32", "bf16"):
        raise UsageError(f"--precision {config.precision!r}: use fp32 or bf16")
    if config.row_model_rows < 1:
        raise UsageError(f"--row-model-rows must be positive (got {config.row_model_rows})")
    if config.max_items < 4 * MAX_SLOTS:
        raise UsageError(f"--max-items must be at least {4 * MAX_SLOTS} "
                         f"(got {config.max_items})")
    if config.like_threshold is not None and not math.isfinite(config.like_threshold):
        raise UsageError(f"--like-threshold must be a finite number (got "
                         f"{config.like_threshold})")
    if config.temperature is not None and not config.temperature > 0:
        raise UsageError(f"--temperature must be positive (got {config.temperature})")
    if not config.other_softness > 0:
        raise UsageError(f"--other-softness must be positive (got {config.other_softness})")
    if not 0.5 <= config.max_dcr_share <= 1.0:
        raise UsageError(f"--max-dcr-share must be in [0.5, 1] (got {config.max_dcr_share})")
    if config.holdout_frac is not None and not 0.0 <= config.holdout_frac < 1.0:
        raise UsageError(f"--holdout-frac must be in [0, 1) (got {config.holdout_frac})")
    if config.epsilon is not None:
        from recsynth.dp.budget import validate_epsilon

        validate_epsilon(config.epsilon, config.delta)
        if config.max_grad_norm <= 0:
            raise UsageError(f"--max-grad-norm must be positive (got {config.max_grad_norm})")


def config_from_dict(raw: Any, absent: dict[str, Any] | None = None) -> ModelConfig:
    """A saved config (config.json's "model"), every field of its declared type: a model
    directory edited by hand fails here, in one line, not deep inside sampling. `absent`:
    values for settings older models lack, where today's default would change them."""
    if not isinstance(raw, dict):
        raise ValueError("'model' is not a JSON object")
    raw = {**(absent or {}), **raw}
    hints = typing.get_type_hints(ModelConfig)
    for name, value in raw.items():
        if name not in hints:
            raise ValueError(f"unknown setting {name!r}")
        if not _of_type(value, hints[name]):
            raise ValueError(f"setting {name!r} is {value!r}, expected {hints[name]}")
    return ModelConfig(**raw)


def _of_type(value: Any, hint: Any) -> bool:
    if isinstance(hint, types.UnionType):
        return any(_of_type(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:  # JSON writes 2.0 as 2.0, but a hand-edited 2 is fine
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)
