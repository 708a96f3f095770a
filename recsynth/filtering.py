"""Critic filtering: drop the generated users the trained critic finds least realistic.

The PacGAN critic judges packs of `pac` users, not single users. A user's score is the
mean critic value of the packs it sits in over SCORE_ROUNDS random packings of the
batch (each pack: the user and pac - 1 other generated users): the user's contribution to
how real a random pack looks. Higher is more realistic (WGAN critic: real scores high).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from recsynth.condsampler import Conditioning
from recsynth.errors import UsageError
from recsynth.latent import ClosedForm
from recsynth.model import PacCritic
from recsynth.train import Whitener

SCORE_ROUNDS = 8


def check_quantile(q: float) -> float:
    if not 0.0 <= q < 1.0:
        raise UsageError(f"--filter-quantile must be in [0, 1) (got {q})")
    return q


def candidates(n: int, q: float) -> int:
    """How many users to generate so that dropping the q share leaves n."""
    return n if q == 0 else max(n, math.ceil(n / (1.0 - q) - 1e-9))


def critic_scores(critic: PacCritic, form: ClosedForm, codes: torch.Tensor,
                  gen: torch.Generator, conditioning: Conditioning | None = None
                  ) -> np.ndarray:
    """One realism score per code (see the module docstring); `conditioning` is what the
    codes were drawn under (None: unconditional)."""
    n, pac = len(codes), critic.pac
    white = Whitener(form)(codes.float())
    cond = None if conditioning is None else conditioning.rows(n)
    total = torch.zeros(n, dtype=torch.float64)
    seen = torch.zeros(n, dtype=torch.float64)
    n_packs = math.ceil(n / pac)
    with torch.no_grad():
        for _ in range(SCORE_ROUNDS):
            perm = torch.randperm(n, generator=gen)
            idx = torch.cat([perm, perm[torch.randint(n, (n_packs * pac - n,), generator=gen)]])
            score = critic(white[idx], None if cond is None else cond[idx]).squeeze(1).double()
            total.index_add_(0, idx, score.repeat_interleave(pac))
            seen.index_add_(0, idx, torch.ones(len(idx), dtype=torch.float64))
    return (total / seen).numpy()


def keep_best(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices (ascending) of the n highest scores; ties keep the earlier user."""
    order = np.lexsort((np.arange(len(scores)), -scores))
    return np.sort(order[:n])
