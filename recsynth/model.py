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
    """noise + MLP(noise, component): identity at initialisation, per mixture component."""

    def __init__(self, dim: int, hidden: int, n_components: int = 1) -> None:
        super().__init__()
        self.n_components = n_components
        self.net = nn.Sequential(
            nn.Linear(dim + n_components, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, dim),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, noise: torch.Tensor, component: torch.Tensor) -> torch.Tensor:
        onehot = nn.functional.one_hot(component, self.n_components).to(noise.dtype)
        return noise + self.net(torch.cat([noise, onehot], dim=1))


class PacCritic(nn.Module):
    """WGAN critic over packs of `pac` users (PacGAN), which penalises mode collapse."""

    def __init__(self, dim: int, hidden: int, pac: int) -> None:
        super().__init__()
        self.pac = pac
        self.net = nn.Sequential(
            nn.Linear(dim * pac, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, 1),
        )

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.net(codes.reshape(-1, codes.shape[1] * self.pac))


def gradient_penalty(critic: PacCritic, real: torch.Tensor, fake: torch.Tensor,
                     gen: torch.Generator) -> torch.Tensor:
    """WGAN-GP: (‖∇D(x̂)‖ − 1)² on random interpolates, one mixing weight per pack."""
    n_packs = real.shape[0] // critic.pac
    alpha = torch.rand(n_packs, 1, generator=gen).to(real.device)
    alpha = alpha.repeat_interleave(critic.pac, dim=0)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    score = critic(mixed)
    (grad,) = torch.autograd.grad(score.sum(), mixed, create_graph=True)
    grad = grad.reshape(n_packs, -1)
    return ((grad.norm(dim=1) - 1.0) ** 2).mean()
