"""The GAN's modules: a residual generator that starts as the fitted Gaussian, and a critic.

Both work in whitened code space (the Gaussian's mean removed and covariance undone), where
the closed form is simply "noise in, noise out": the generator is identity + a residual MLP
whose last layer starts at zero, so at step 0 it *is* the closed-form sampler and the
adversarial game can only move it where the critic finds the Gaussian wrong.
"""

from __future__ import annotations

import torch
from torch import nn


class ResidualGenerator(nn.Module):
    """noise + MLP(noise, component, condition): identity at initialisation.

    The condition vector (`n_cond` wide, see condsampler.py) holds one-hot values of user
    attributes; all zeros is the unconditional user.
    """

    def __init__(self, dim: int, hidden: int, n_components: int = 1, n_cond: int = 0) -> None:
        super().__init__()
        self.n_components = n_components
        self.n_cond = n_cond
        self.net = nn.Sequential(
            nn.Linear(dim + n_components + n_cond, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, dim),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, noise: torch.Tensor, component: torch.Tensor,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        onehot = nn.functional.one_hot(component, self.n_components).to(noise.dtype)
        parts = [noise, onehot]
        if self.n_cond:
            parts.append(_cond_or_zeros(cond, len(noise), self.n_cond, noise))
        return noise + self.net(torch.cat(parts, dim=1))


class PacCritic(nn.Module):
    """WGAN critic over packs of `pac` users (PacGAN), which penalises mode collapse; each
    user is seen with its condition vector, so the critic judges "a typical F user"."""

    def __init__(self, dim: int, hidden: int, pac: int, n_cond: int = 0) -> None:
        super().__init__()
        self.pac = pac
        self.n_cond = n_cond
        self.net = nn.Sequential(
            nn.Linear((dim + n_cond) * pac, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, 1),
        )

    def forward(self, codes: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if self.n_cond:
            codes = torch.cat([codes, _cond_or_zeros(cond, len(codes), self.n_cond, codes)], 1)
        return self.net(codes.reshape(-1, codes.shape[1] * self.pac))


def _cond_or_zeros(cond: torch.Tensor | None, n: int, width: int,
                   like: torch.Tensor) -> torch.Tensor:
    if cond is None:
        return torch.zeros(n, width, dtype=like.dtype, device=like.device)
    return cond.to(dtype=like.dtype, device=like.device)


def gradient_penalty(critic: PacCritic, real: torch.Tensor, fake: torch.Tensor,
                     gen: torch.Generator, cond: torch.Tensor | None = None) -> torch.Tensor:
    """WGAN-GP: (‖∇D(x̂)‖ − 1)² on random interpolates, one mixing weight per pack."""
    n_packs = real.shape[0] // critic.pac
    alpha = torch.rand(n_packs, 1, generator=gen).to(real.device)
    alpha = alpha.repeat_interleave(critic.pac, dim=0)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    score = critic(mixed, cond)  # real and fake users share their conditions
    (grad,) = torch.autograd.grad(score.sum(), mixed, create_graph=True)
    grad = grad.reshape(n_packs, -1)
    return ((grad.norm(dim=1) - 1.0) ** 2).mean()
