"""Training-by-sampling (CTGAN): the condition each user of a GAN training step carries.

A COND_SHARE of every batch is conditional. Each such user gets one attribute value: a
column uniformly, then a value by log frequency (rare groups are seen far more often than
their share of users, which is what lets the GAN learn them), then a real user holding it;
the fake user of that value is drawn from the closed-form start for it (components by
p(k | v), offset δ_v, see conditions.py) through the generator with the value's one-hot.
The rest of the batch is unconditional (zero vector, real users uniformly, fakes from the
mixture), so plain sampling stays what the GAN was trained for. The critic sees every
user with its condition vector.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recsynth.conditions import MIN_GROUP_USERS, Conditions, offsets, width
from recsynth.latent import ClosedForm

COND_SHARE = 0.5


@dataclass(frozen=True)
class Conditioning:
    """What the generator is given beside noise, for n users (or one vector for all)."""

    vector: torch.Tensor  # (n, C) or (C,): one-hot attribute values, zeros = unconditional
    weights: torch.Tensor | None = None  # (n, K) per-user component probabilities
    shift: torch.Tensor | None = None  # (n, dim) per-user code offsets

    def rows(self, n: int) -> torch.Tensor:
        return self.vector.expand(n, -1) if self.vector.dim() == 1 else self.vector


@dataclass(frozen=True)
class ConditionSampler:
    """Every (column, value) held by at least MIN_GROUP_USERS fitting users is a slot."""

    n_users: int
    width: int
    position: np.ndarray  # (S,) index of the slot's value in the condition vector
    probs: np.ndarray  # (S,) probability of drawing the slot for a conditional user
    starts: np.ndarray  # (S,) where the slot's users begin in `members`
    counts: np.ndarray  # (S,) users holding the slot's value
    members: np.ndarray  # user rows, grouped by slot
    weights: np.ndarray  # (S + 1, K) p(k | value); the last row is the mixture's own
    shifts: np.ndarray  # (S + 1, dim) δ_value; the last row zeros

    @classmethod
    def build(cls, conditions: Conditions | None, labels: np.ndarray, form: ClosedForm,
              shard: np.ndarray | None = None) -> ConditionSampler | None:
        """None when no attribute has a learnable value (nothing to condition on).

        `shard`: the rows of `labels` this process trains on (torchrun). Which values are
        learnable, and how often each is drawn, follow the counts over all fitting users
        (the ones `--where` checks), so every rank conditions on the same values.
        """
        if conditions is None:
            return None
        local = labels if shard is None else labels[shard]
        starts_of = offsets(conditions)
        slots: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, float]] = []
        for c, (col, stats) in enumerate(conditions.columns.items()):
            learnable = np.flatnonzero(stats.users >= MIN_GROUP_USERS)
            if len(learnable) == 0:
                continue
            freq = np.log1p(stats.users[learnable].astype(np.float64))
            for j, f in zip(learnable, freq / freq.sum(), strict=True):
                rows = np.flatnonzero(local[:, c] == j)
                if len(rows):  # a shard may hold no user of a small value
                    slots.append((starts_of[col] + int(j), rows, stats.weights[j],
                                  stats.shift[j], float(f)))
        if not slots:
            return None
        probs = np.array([s[4] for s in slots])  # column uniformly, value by log frequency
        members = np.concatenate([s[1] for s in slots])
        counts = np.array([len(s[1]) for s in slots])
        return cls(len(local), width(conditions), np.array([s[0] for s in slots]),
                   probs / probs.sum(),
                   np.concatenate([[0], np.cumsum(counts)[:-1]]), counts, members,
                   np.vstack([np.stack([s[2] for s in slots]), form.weights]),
                   np.vstack([np.stack([s[3] for s in slots]), np.zeros(form.dim)]))

    def draw(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, Conditioning]:
        """Rows of n real users and the conditioning of n fake users, slot by slot alike."""
        conditional = torch.rand(n, generator=gen) < COND_SHARE
        slot = torch.multinomial(torch.from_numpy(self.probs), n, replacement=True,
                                 generator=gen).numpy()
        slot = np.where(conditional.numpy(), slot, len(self.probs))  # last row: none
        u = torch.rand(n, generator=gen, dtype=torch.float64).numpy()
        cond = slot < len(self.probs)
        rows = np.floor(u * self.n_users).astype(np.int64)
        pick = self.starts[slot[cond]] + np.floor(u[cond] * self.counts[slot[cond]]).astype(
            np.int64)
        rows[cond] = self.members[pick]
        vector = torch.zeros(n, self.width)
        vector[torch.from_numpy(np.flatnonzero(cond)),
               torch.from_numpy(self.position[slot[cond]])] = 1.0
        return torch.from_numpy(rows), Conditioning(
            vector, torch.from_numpy(self.weights[slot]).float(),
            torch.from_numpy(self.shifts[slot]).float())
