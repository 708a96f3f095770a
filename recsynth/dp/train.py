"""The critic trained with DP-SGD (Opacus); the generator learns only through it.

User-level privacy: one example is one user's whole code (PacGAN packs are off: pac = 1,
so clipping an example clips exactly one user). Opacus draws batches by Poisson sampling
of users, clips each user's gradient to `max_grad_norm` and adds Gaussian noise; its RDP
accountant counts every step, on top of the preprocessing entries put in its history.

The gradient-penalty pitfall: WGAN-GP needs the gradient of a gradient (double backward),
which Opacus's per-sample hooks do not support. The DP critic is kept Lipschitz by weight
clipping instead (the original WGAN), which is a post-processing of the privatised
update, so it costs nothing and needs no second backward pass. Generated users go through
the same per-sample clipping (a fixed, data-independent number per step), which bounds
the real users' influence just the same.

The generator's steps read only the critic (hooks disabled, no real data): post-
processing. Training stops before an epoch that would overspend ε, and the last state
within budget is kept (there is no held-out check: it would read real users).
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from opacus import PrivacyEngine
from torch.utils.data import DataLoader, TensorDataset

from recsynth.config import ModelConfig
from recsynth.dp.budget import BudgetPlan, epsilon_of, noise_seed
from recsynth.latent import ClosedForm
from recsynth.model import PacCritic, ResidualGenerator
from recsynth.train import EpochCallback, TrainResult, Whitener, generate

WEIGHT_CLIP = 0.05  # critic weights in [-c, c]: its Lipschitz bound (instead of a GP)


def train_dp_gan(real_white: np.ndarray, form: ClosedForm, config: ModelConfig,
                 plan: BudgetPlan, on_epoch: EpochCallback = lambda _: None,
                 time_budget: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> TrainResult:
    """DP-SGD critic vs generator; every record carries the ε spent so far."""
    gen = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        generator = ResidualGenerator(form.dim, config.hidden, form.n_components)
        critic = PacCritic(form.dim, config.hidden, 1)
    white = Whitener(form)
    betas = (config.beta1, config.beta2)
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=betas)
    opt_d = torch.optim.Adam(critic.parameters(), lr=config.lr, betas=betas)
    data = TensorDataset(torch.from_numpy(real_white).float())
    batch = config.dp_batch_size  # Opacus samples each user with rate 1 / len(loader)
    # user sampling and gradient noise from fresh OS randomness, never from --seed
    loader = DataLoader(data, batch_size=batch,
                        generator=torch.Generator().manual_seed(noise_seed()))
    warnings.filterwarnings("ignore", message="Secure RNG turned off")
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    engine = PrivacyEngine(accountant="rdp")
    engine.accountant.history = plan.history(0)  # the preprocessing, composed with SGD
    critic, opt_d, loader = engine.make_private(
        module=critic, optimizer=opt_d, data_loader=loader,
        noise_multiplier=plan.sgd_sigma, max_grad_norm=config.max_grad_norm,
        poisson_sampling=True, noise_generator=torch.Generator().manual_seed(noise_seed()))
    if loader.sample_rate != plan.sample_rate:  # the budget was planned for another rate
        raise RuntimeError(f"Opacus samples at {loader.sample_rate}, planned {plan.sample_rate}")
    result = TrainResult(copy.deepcopy(generator.state_dict()),
                         copy.deepcopy(critic._module.state_dict()))
    record = {"epoch": 0, "epsilon": round(plan.spent(0), 4), "seconds": 0.0}
    result.history.append(record)
    on_epoch(record)
    start, steps = clock(), 0
    for epoch in range(1, config.epochs + 1):
        if not plan.affords(steps + len(loader)):
            result.stopped = "privacy budget"
            break
        g_losses = []  # the critic's loss on real users is not privatised: never logged
        for (real_b,) in loader:
            fake = white(generate(generator, form, batch, gen)).detach()
            x = torch.cat([real_b, fake])
            sign = torch.cat([-torch.ones(len(real_b)), torch.ones(len(fake))])
            loss_d = (sign * critic(x).squeeze(1)).mean()  # per user: ∓D(x), clipped
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            steps += 1
            with torch.no_grad():
                for p in critic.parameters():
                    p.clamp_(-WEIGHT_CLIP, WEIGHT_CLIP)
            critic.disable_hooks()  # the generator step reads no real data
            loss_g = -critic(white(generate(generator, form, batch, gen))).mean()
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            critic.enable_hooks()
            opt_d.zero_grad(set_to_none=True)
            g_losses.append(loss_g.item())
        spent = epsilon_of(engine.accountant.history, plan.delta_rdp)
        record = {"epoch": epoch, "loss_g": float(np.mean(g_losses)), "epsilon": round(spent, 4),
                  "seconds": round(clock() - start, 3)}
        result.generator_state = copy.deepcopy(generator.state_dict())
        result.critic_state = copy.deepcopy(critic._module.state_dict())
        result.best_epoch = epoch
        result.history.append(record)
        on_epoch(record)
        if time_budget is not None and clock() - start >= time_budget:
            result.stopped = "time budget"
            break
    return result
