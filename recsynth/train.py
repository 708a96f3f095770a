"""The adversarial loop: WGAN-GP with PacGAN on whitened user codes, early stopping on a
held-out utility check, and a time budget.

The check scores what the product promises: EASE trained on decoded synthetic users, tested
on held-out real users (NDCG@10). Epoch 0 is the closed form, and the generator kept is the
best checked state, so training can only keep what beats the starting point.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from recsynth.conditions import Conditions, width
from recsynth.condsampler import Conditioning, ConditionSampler
from recsynth.config import ModelConfig
from recsynth.decode import decode_chunked
from recsynth.distributed import SINGLE, World
from recsynth.errors import UsageError
from recsynth.latent import CODE_CHUNK, ClosedForm
from recsynth.metrics.privacy import closer_share, nearest_jaccard
from recsynth.metrics.ranking import accuracy_per_user, top_k
from recsynth.model import PacCritic, ResidualGenerator, gradient_penalty
from recsynth.protocol import fold_in_split
from recsynth.recommenders.ease import EASE

CHECK_LAMBDA = 500.0
SCORE_CHUNK = 2048  # held-out users scored at once by the check
CHECK_MAX_GENERATED = 16_384  # generated users the check trains EASE on (decoded in chunks)
# The check's EASE models the items most drawn for the generated users, at most this many
# (evaluate's keeps 10,000): its eigendecomposition costs min(users, items)³. A log of
# 2,000 users and 200,000 items (7,200 generated check users) took 625 s / 2.7 GB to fit
# with 10,000 and 207 s / 1.9 GB with 4,096, with the same choices (benchmarks/RESULTS.md,
# "A wide catalog"). MovieLens-100K (1,672 items) and online-retail (3,630) keep every item.
CHECK_MAX_ITEMS = 4096
EpochCallback = Callable[[dict[str, Any]], None]


def generate(generator: ResidualGenerator, form: ClosedForm, n: int,
             gen: torch.Generator, cond: Conditioning | None = None) -> torch.Tensor:
    """n augmented codes, differentiable: component k ~ weights, then μ_k + L_k·G(ε, k, c).

    With per-user component weights and shifts in `cond` (training-by-sampling), k is drawn
    from each user's row and the shift added. Randomness is drawn on the CPU and moved to
    the generator's device, so a seed gives the same noise on every device.
    """
    device = next(generator.parameters()).device
    if cond is not None and cond.weights is not None:
        component = torch.multinomial(cond.weights, 1, generator=gen).squeeze(1).to(device)
    else:
        weights = torch.from_numpy(form.weights).float()
        component = torch.multinomial(weights, n, replacement=True, generator=gen).to(device)
    noise = torch.randn(n, form.dim, generator=gen).to(device)
    vector = None if cond is None else cond.rows(n).to(device)
    white = generator(noise, component, vector).float()
    means = torch.from_numpy(form.means).float().to(device)
    chols = torch.from_numpy(form.chols).float().to(device)
    # one matmul per component: gathering a Cholesky factor per user would copy
    # users x dim x dim floats (330 MB for 2,048 users at rank 200)
    parts, order = [], []
    for k in range(form.n_components):
        idx = torch.nonzero(component == k).squeeze(1)
        parts.append(means[k] + white[idx] @ chols[k].T)
        order.append(idx)
    # undo the grouping by component: an inverse permutation, no sort needed
    where = torch.empty(n, dtype=torch.long, device=device)
    where[torch.cat(order)] = torch.arange(n, device=device)
    codes = torch.cat(parts)[where]
    return codes if cond is None or cond.shift is None else codes + cond.shift.to(device)


def sample_codes(generator: ResidualGenerator, form: ClosedForm, n: int,
                 gen: torch.Generator, cond: Conditioning | None = None) -> torch.Tensor:
    with torch.no_grad():
        return generate(generator, form, n, gen, cond)


def whiten(codes: np.ndarray, form: ClosedForm, chunk: int = CODE_CHUNK) -> np.ndarray:
    """Float32 whitened codes, a chunk of users at a time (no users x dim float64 copy)."""
    out = np.empty(codes.shape, dtype=np.float32)
    for lo in range(0, len(codes), chunk):
        out[lo:lo + chunk] = np.linalg.solve(form.chol, (codes[lo:lo + chunk] - form.mean).T).T
    return out


class Whitener(torch.nn.Module):
    """Codes → the common whitened space the critic sees (global mean and covariance)."""

    def __init__(self, form: ClosedForm) -> None:
        super().__init__()
        self.register_buffer("mean", torch.from_numpy(form.mean).float())
        self.register_buffer("inv", torch.from_numpy(np.linalg.inv(form.chol)).float())

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return (codes - self.mean) @ self.inv.T


@dataclass
class UtilityCheck:
    """NDCG@10 of EASE trained on generated users, on held-out real users' first channel."""

    form: ClosedForm
    temperature: float
    n_items: int
    n_generated: int
    foldin: sp.csr_matrix
    test: sp.csr_matrix
    seed: int

    @classmethod
    def build(cls, form: ClosedForm, temperature: float, n_items: int, n_generated: int,
              validation: sp.csr_matrix, seed: int) -> UtilityCheck | None:
        foldin, test = fold_in_split(validation, 0.2, np.random.default_rng([seed, 7]))
        keep = np.flatnonzero(test.getnnz(axis=1) > 0)
        if len(keep) == 0:
            return None
        return cls(form, temperature, n_items, min(n_generated, CHECK_MAX_GENERATED), foldin[keep],
                   test[keep], seed)

    def generated(self, generator: ResidualGenerator, first_channel: bool) -> sp.csr_matrix:
        """Generated users x items (first channel only, or every item), same noise each time."""
        gen = torch.Generator().manual_seed(self.seed + 17)
        x = sample_codes(generator, self.form, self.n_generated, gen).cpu()
        d = decode_chunked(x, self.form, self.temperature, self.n_items, gen)
        rows = np.ones(len(d.item_index), dtype=bool)
        if first_channel and d.liked is not None:
            rows = d.liked
        return sp.csr_matrix((np.ones(int(rows.sum()), dtype=np.float32),
                              (d.user_index[rows], d.item_index[rows])),
                             shape=(d.n_users, self.n_items))

    def __call__(self, generator: ResidualGenerator) -> float:
        return float(self.per_user(generator).mean())

    def per_user(self, generator: ResidualGenerator) -> np.ndarray:
        """NDCG@10 of every held-out user (for paired comparisons between settings)."""
        syn = self.generated(generator, first_channel=True)
        model = EASE(lambdas=CHECK_LAMBDA, max_items=CHECK_MAX_ITEMS, dense=False).fit(
            syn, np.random.default_rng(0))
        scores = []
        for lo in range(0, self.foldin.shape[0], SCORE_CHUNK):  # users x items doubles
            foldin = self.foldin[lo:lo + SCORE_CHUNK]
            top = top_k(model.score(foldin), foldin, 10)
            scores.append(accuracy_per_user(top, self.test[lo:lo + SCORE_CHUNK], [10])
                          ["ndcg@10"])
        return np.concatenate(scores)


@dataclass
class TrainResult:
    generator_state: dict[str, torch.Tensor]
    critic_state: dict[str, torch.Tensor]  # the last critic, whatever generator is kept
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    stopped: str = "epochs"


def train_gan(codes: np.ndarray, form: ClosedForm, config: ModelConfig,
              check: UtilityCheck | None, on_epoch: EpochCallback = lambda _: None,
              time_budget: float | None = None,
              clock: Callable[[], float] = time.monotonic, *,
              resume: dict[str, Any] | None = None,
              on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
              world: World = SINGLE, device: str = "cpu",
              conditions: Conditions | None = None,
              labels: np.ndarray | None = None,
              keep_epoch: int | None = None) -> TrainResult:
    """Train the residual generator against the critic; return the best checked state.

    `on_checkpoint` receives the whole loop state after every epoch; passing it back as
    `resume` continues exactly where it left off (same weights as an uninterrupted run).
    Under torchrun each rank trains on its share of the users with its share of the batch,
    and DistributedDataParallel averages the gradients (the global batch stays the same).
    With `conditions` (and each fitting user's value `labels`, see fit_conditions) the
    generator and critic take condition vectors, trained by sampling (condsampler.py).
    Without a check, `keep_epoch` keeps the generator of that epoch (the one a check chose
    on a held-out split) while the critic trains on to the last.
    """
    gen = torch.Generator().manual_seed(world.seed(config.seed))
    dim = form.dim
    with torch.random.fork_rng(devices=[]):  # seeded init, caller's global RNG untouched
        torch.manual_seed(config.seed)
        generator = ResidualGenerator(dim, config.hidden, form.n_components, width(conditions))
        critic = PacCritic(dim, config.hidden, config.pac, width(conditions))
    dev = torch.device(device)
    generator.to(dev)
    critic.to(dev)
    betas = (config.beta1, config.beta2)
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=betas)
    opt_d = torch.optim.Adam(critic.parameters(), lr=config.lr, betas=betas)
    real = torch.from_numpy(whiten(codes, form)).to(dev)
    shard = _shard(len(real), world, config) if world.active else None
    if shard is not None:
        real = real[shard]
    sampler = None if labels is None else ConditionSampler.build(
        conditions, labels, form, None if shard is None else shard.numpy())
    # whole packs, and never more users per step than there are (small logs still train)
    per_rank = config.batch_size // world.size
    batch = max(config.pac, min(per_rank, len(real)) // config.pac * config.pac)
    game = _Game(generator, critic, _parallel(generator, world, dev),
                 _parallel(critic, world, dev), opt_g, opt_d, Whitener(form).to(dev), form,
                 config.gp_lambda, batch,
                 # bf16 autocast for the networks' forward passes; losses, codes stay float32
                 torch.autocast(dev.type, dtype=torch.bfloat16,
                                enabled=config.precision == "bf16"))
    start = clock()
    if resume is not None:
        generator.load_state_dict(resume["generator"])
        critic.load_state_dict(resume["critic"])
        opt_g.load_state_dict(resume["opt_g"])
        opt_d.load_state_dict(resume["opt_d"])
        gen.set_state(resume["rng_ranks"][world.rank])
        result = TrainResult(resume["best_generator"], resume["critic"],
                             list(resume["history"]), resume["best_epoch"])
        best, stale, step, first = (resume["best"], resume["stale"], resume["step"],
                                    resume["epoch"] + 1)
    else:
        result = TrainResult(copy.deepcopy(generator.state_dict()),
                             copy.deepcopy(critic.state_dict()))
        best = check(generator) if check is not None else None
        record = {"epoch": 0, "check_ndcg10": best, "seconds": 0.0}
        result.history.append(record)
        on_epoch(record)
        stale = step = 0
        first = 1
    if check is not None and stale >= config.patience:  # resumed after the last check
        result.stopped = "early stopping"
        first = config.epochs + 1
    per_pass = len(real) // batch
    passes = max(1, -(-config.min_epoch_steps // per_pass)) if per_pass else 1
    for epoch in range(first, config.epochs + 1):
        d_losses, g_losses = [], []
        for lo in (lo for _ in range(passes) for lo in range(0, per_pass * batch, batch)):
            rows, cond, vector = _draw(sampler, batch, gen, dev)
            if rows is None:
                if lo == 0:  # a new pass over the users
                    perm = torch.randperm(len(real), generator=gen)
                rows = perm[lo:lo + batch]
            d_losses.append(game.critic_step(real[rows.to(dev)], cond, vector, gen))
            step += 1
            if step % config.n_critic == 0:
                _, cond, vector = _draw(sampler, batch, gen, dev)
                g_losses.append(game.generator_step(cond, vector, gen))
        record = {"epoch": epoch, "loss_d": _mean(d_losses), "loss_g": _mean(g_losses),
                  "seconds": round(clock() - start, 3)}
        if check is not None and (epoch % config.check_every == 0 or epoch == config.epochs):
            score = check(generator)
            record["check_ndcg10"] = score
            if best is None or score > best:
                best, stale, result.best_epoch = score, 0, epoch
                result.generator_state = copy.deepcopy(generator.state_dict())
            else:
                stale += 1
        elif check is None and (keep_epoch is None or epoch <= keep_epoch):
            result.generator_state = copy.deepcopy(generator.state_dict())
            result.best_epoch = epoch
        result.history.append(record)
        on_epoch(record)
        rngs = world.gather(gen.get_state())  # every rank takes part
        if on_checkpoint is not None:
            on_checkpoint({"epoch": epoch, "rng_ranks": rngs, "step": step, "stale": stale,
                           "best": best, "best_epoch": result.best_epoch, "history": result.history,
                           "generator": generator.state_dict(), "critic": critic.state_dict(),
                           "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
                           "best_generator": result.generator_state})
        if check is not None and stale >= config.patience:
            result.stopped = "early stopping"
            break
        if world.any(time_budget is not None and clock() - start >= time_budget):
            result.stopped = "time budget"
            break
    # the most trained judge, whatever generator state was kept: --filter-quantile uses it
    result.critic_state = copy.deepcopy(critic.state_dict())
    return result


def _shard(n_users: int, world: World, config: ModelConfig) -> torch.Tensor:
    """This rank's users: equal shards of one seeded permutation (the same on every rank),
    so every rank takes the same number of steps (one collective more on one rank would
    hang the others)."""
    order = torch.randperm(n_users, generator=torch.Generator().manual_seed(config.seed))
    n = n_users // world.size
    if n < config.pac:
        raise UsageError(f"{n_users} fitting users are too few for {world.size} "
                         f"processes (each needs at least {config.pac})")
    return order[world.rank * n:(world.rank + 1) * n]


def _draw(sampler: ConditionSampler | None, batch: int, gen: torch.Generator,
          dev: torch.device) -> tuple[torch.Tensor | None, Conditioning | None,
                                      torch.Tensor | None]:
    """Training-by-sampling: rows of real users holding the drawn conditions, the
    conditioning for the generator and its vector for the critic (all None without)."""
    if sampler is None:
        return None, None, None
    rows, cond = sampler.draw(batch, gen)
    return rows, cond, cond.vector.to(dev)


@dataclass
class _Game:
    """The two players and their optimizers; a method call is one update of one player.

    `g_net`/`d_net` are the DDP wrappers under torchrun (the modules themselves otherwise):
    the updates go through them so gradients are averaged, while the critic's fakes and
    the gradient penalty use the plain modules.
    """

    generator: ResidualGenerator
    critic: PacCritic
    g_net: torch.nn.Module
    d_net: torch.nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    white: Whitener
    form: ClosedForm
    gp_lambda: float
    batch: int
    autocast: torch.autocast

    def critic_step(self, real: torch.Tensor, cond: Conditioning | None,
                    vector: torch.Tensor | None, gen: torch.Generator) -> float:
        with self.autocast:
            fake = self.white(sample_codes(self.generator, self.form, self.batch, gen, cond))
            gp = gradient_penalty(self.critic, real, fake, gen, vector)
            # one critic forward per backward, as DDP expects; fake packs first
            both = None if vector is None else torch.cat([vector, vector])
            scores = self.d_net(torch.cat([fake, real]), both).float()
        half = len(scores) // 2
        loss = scores[:half].mean() - scores[half:].mean() + self.gp_lambda * gp
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        return loss.item()

    def generator_step(self, cond: Conditioning | None, vector: torch.Tensor | None,
                       gen: torch.Generator) -> float:
        with self.autocast:
            fake = self.white(generate(self.g_net, self.form, self.batch, gen, cond))
            loss = -self.d_net(fake, vector).float().mean()
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        return loss.item()


def _parallel(module: torch.nn.Module, world: World, dev: torch.device) -> torch.nn.Module:
    if not world.active:
        return module
    ids = [torch.cuda.current_device()] if dev.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)


def resolve_device(requested: str) -> str:
    """auto → cuda when a GPU is visible, else cpu; cuda without one is a usage error."""
    if requested not in ("auto", "cpu", "cuda"):
        raise UsageError(f"--device {requested!r}: use auto, cpu or cuda")
    available = torch.cuda.is_available()
    if requested == "cuda" and not available:
        raise UsageError("--device cuda: no CUDA device is visible "
                         "(torch.cuda.is_available() is False)")
    return "cuda" if requested == "auto" and available else requested.replace("auto", "cpu")


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def dcr_share(generated: sp.csr_matrix, fit_users: sp.csr_matrix, held_out: sp.csr_matrix,
              seed: int) -> float:
    """Share of generated users closer to a fitting user than to a held-out one (ties ½).

    Equal-size references (fitting users subsampled to the held-out count), so 0.5 means
    the generator sits no closer to the users it learned from than to unseen ones.
    """
    rng = np.random.default_rng([seed, 23])
    n = held_out.shape[0]
    ref = fit_users[np.sort(rng.choice(fit_users.shape[0], size=n, replace=False))]
    return closer_share(nearest_jaccard(generated, ref).first,
                        nearest_jaccard(generated, held_out).first)
