"""Augmented user codes → item sets: Gumbel top-k per channel, disjoint across channels.

A code's reconstruction z·Vᵀ, scaled by 1/temperature (and by the user's activity, see
`latent.ACTIVITY_POWER`), is the log-propensity of each item;
adding Gumbel noise and keeping the top n draws n distinct items with those propensities
(sampling without replacement). The liked channel is drawn first and its items are masked
out of the other channel, so a user never rates one item twice. The other channel is
decoded `form.other_softness` times softer (see `config.OTHER_SOFTNESS`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from recsynth.encode import Marginal
from recsynth.latent import ClosedForm


@dataclass(frozen=True)
class DecodedUsers:
    """Rows grouped by user: `user_index` non-decreasing, items distinct within a user."""

    user_index: np.ndarray
    item_index: np.ndarray
    liked: np.ndarray | None  # per row, when the model has a liked channel
    n_users: int


def counts_from_codes(x: torch.Tensor, form: ClosedForm, n_items: int
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(items per user, liked items per user) from the copula coordinates of the code."""
    r = form.rank
    log_act = form.log_activity(x[:, r].double().numpy())
    act = np.clip(np.rint(np.exp(log_act)), 1, n_items).astype(np.int64)
    if form.liked_share is None:
        return torch.from_numpy(act), None
    share = np.clip(form.liked_of(x[:, r + 1].double().numpy()), 0.0, 1.0)
    return torch.from_numpy(act), torch.from_numpy(np.rint(act * share).astype(np.int64))


def _gumbel_top(logits: torch.Tensor, counts: torch.Tensor, gen: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, item) of each row's top-`counts[row]` after Gumbel perturbation."""
    k = int(counts.max()) if len(counts) else 0
    if k == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty
    # the users x items uniforms from numpy's PCG64 (seeded from `gen`): half the time of
    # torch's generator, and this draw is the largest single cost of sampling
    noise = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=gen)))
    u = torch.from_numpy(noise.random(tuple(logits.shape), dtype=np.float32)) \
        .to(logits.dtype).clamp_(1e-12, 1 - 1e-7)
    keys = torch.sub(logits, u.log_().neg_().log_(), out=u)  # in place: no fresh pages
    # users grouped by count rounded up to a power of two, each group with its own k:
    # a few heavy users must not make every row pay for a top-k over most of the catalog
    bucket = torch.ceil(torch.log2(counts.clamp_min(1).double())).long()
    out_rows, out_items = [], []
    for b in torch.unique(bucket).tolist():
        rows = torch.nonzero((bucket == b) & (counts > 0)).squeeze(1)
        if len(rows) == 0:
            continue
        kb = min(int(counts[rows].max()), keys.shape[1])
        block = keys if len(rows) == len(keys) else keys[rows]
        top = torch.topk(block, kb, dim=1, sorted=True).indices.numpy()
        c = counts[rows].numpy()
        # each row's first c entries; numpy's boolean indexing (torch's is several x slower)
        out_rows.append(np.repeat(rows.numpy(), np.minimum(c, kb)))
        out_items.append(top[np.arange(kb)[None, :] < c[:, None]])
    return torch.from_numpy(np.concatenate(out_rows)), torch.from_numpy(np.concatenate(out_items))


def _pair_order(rows: torch.Tensor, items: torch.Tensor, n_items: int) -> np.ndarray:
    """Order by (user, item), ties in input order: a liked and an other tail slot of one
    user can share a key, so the sort must be stable for the output to be fixed. numpy's
    is used because torch's parallel argsort ran ~15x slower on 2 busy cores."""
    return np.argsort((rows * n_items + items).numpy(), kind="stable")


def decode(x: torch.Tensor, form: ClosedForm, temperature: float, n_items: int,
           gen: torch.Generator) -> DecodedUsers:
    """Item sets for a batch of augmented codes (float32 tensor, one row per user)."""
    z = x[:, :form.rank].float()
    factors = torch.from_numpy(form.item_factors).float()
    bias = torch.from_numpy(form.item_bias).float()
    total, liked_n = counts_from_codes(x, form, n_items)
    scale = torch.from_numpy(form.logit_scale(total.numpy()) / temperature).float()[:, None]
    z = z * scale  # per-user scale on the rank-r code, not on the users x items logits
    if liked_n is None:
        logits = torch.addmm(bias, z, factors.T)  # one pass over users x items
        rows, items = _gumbel_top(logits, total, gen)
        order = torch.from_numpy(_pair_order(rows, items, n_items))
        return DecodedUsers(rows[order].numpy(), items[order].numpy(), None, len(x))
    liked_logits = torch.addmm(bias[:n_items], z, factors[:n_items].T)
    lrows, litems = _gumbel_top(liked_logits, liked_n, gen)
    other_logits = torch.addmm(bias[n_items:], z / form.other_softness, factors[n_items:].T)
    # a liked item is not drawn again as 'other'; tail slots are ordinal per channel, so
    # liked slot j (one tail item) leaves other slot j (another) free
    head = litems < (n_items if form.n_head is None else form.n_head)
    other_logits[lrows[head], litems[head]] = float("-inf")
    orows, oitems = _gumbel_top(other_logits, total - liked_n, gen)
    rows = torch.cat([lrows, orows])
    items = torch.cat([litems, oitems])
    liked = torch.cat([torch.ones(len(lrows), dtype=torch.bool),
                       torch.zeros(len(orows), dtype=torch.bool)])
    order = torch.from_numpy(_pair_order(rows, items, n_items))
    return DecodedUsers(rows[order].numpy(), items[order].numpy(), liked[order].numpy(), len(x))


def decode_chunked(x: torch.Tensor, form: ClosedForm, temperature: float, n_items: int,
                   gen: torch.Generator) -> DecodedUsers:
    """`decode` in chunks of users, so memory is chunk x items however many users."""
    if len(x) <= DECODE_CHUNK:
        return decode(x, form, temperature, n_items, gen)
    parts = [decode(x[lo:lo + DECODE_CHUNK], form, temperature, n_items, gen)
             for lo in range(0, len(x), DECODE_CHUNK)]
    offsets = np.cumsum([0] + [p.n_users for p in parts[:-1]])
    liked = None if parts[0].liked is None else np.concatenate([p.liked for p in parts])
    users = [p.user_index + o for p, o in zip(parts, offsets, strict=True)]
    return DecodedUsers(np.concatenate(users), np.concatenate([p.item_index for p in parts]),
                        liked, len(x))


def subset_users(d: DecodedUsers, keep: np.ndarray) -> DecodedUsers:
    """The users `keep` (ascending indices), renumbered 0..len(keep) - 1."""
    new = np.full(d.n_users, -1, dtype=np.int64)
    new[keep] = np.arange(len(keep))
    rows = new[d.user_index] >= 0
    return DecodedUsers(new[d.user_index[rows]], d.item_index[rows],
                        None if d.liked is None else d.liked[rows], len(keep))


def tail_share(d: DecodedUsers, is_tail: np.ndarray) -> np.ndarray:
    """Share of each decoded user's items that are tail items (`is_tail` per item)."""
    hits = np.bincount(d.user_index, weights=is_tail[d.item_index].astype(np.float64),
                       minlength=d.n_users)
    return hits / np.maximum(np.bincount(d.user_index, minlength=d.n_users), 1)


def channel_counts(d: DecodedUsers, n_items: int, n_channels: int) -> np.ndarray:
    """How often each (channel, item) was drawn, flattened like `ClosedForm.item_bias`."""
    channel = np.zeros(len(d.item_index), dtype=np.int64) if d.liked is None else (~d.liked)
    return np.bincount(channel * n_items + d.item_index, minlength=n_channels * n_items)


CALIBRATION_USERS = 8192  # generated users per calibration step (frequencies, not users)
DECODE_CHUNK = 4096  # users decoded at once: memory is chunk x items, not users x items


SCORE_CALIBRATION_CODES = 65_536  # generated codes whose coordinates set the score maps


def calibrate_scores(form: ClosedForm, sample_codes, seed: int) -> ClosedForm:
    """Read the activity and liked-share coordinates by their generated ranks.

    The decoder turns a coordinate s into a value through the real marginal at Φ(s), exact
    while s is standard normal. The mixture only approximates that, and the GAN's residual
    can move it (one MovieLens fit: KS 0.046 from N(0, 1), activity KS 0.065 against the
    real users). Storing the generated coordinate's quantiles makes generated item counts
    and liked shares follow the real marginals again, as calibrate_item_bias does for
    item frequencies. `sample_codes(n, gen)` returns n augmented codes.
    """
    gen = torch.Generator().manual_seed(seed * 1000 + 999)
    x = sample_codes(SCORE_CALIBRATION_CODES, gen)[:, form.rank:].double().numpy()
    liked = None if form.liked_share is None else Marginal.fit(x[:, 1])
    return replace(form, activity_scores=Marginal.fit(x[:, 0]), liked_scores=liked)


def calibrate_item_bias(form: ClosedForm, sample_codes, real_counts: np.ndarray,
                        n_real_users: int, temperature: float, n_items: int, seed: int,
                        steps: int = 10, rate: float = 0.8) -> ClosedForm:
    """Fit per-(channel, item) biases so drawn item frequencies match the real ones.

    Fixed-point steps b ← b + rate·(log real − log drawn) on a generated batch (a form of
    iterative proportional fitting): the code distribution decides who gets which item,
    the bias only restores each item's overall popularity in its channel.
    `sample_codes(n, gen)` returns n augmented codes.
    """
    target = (real_counts + 0.5) / n_real_users
    bias = form.item_bias.copy()
    n = min(n_real_users, CALIBRATION_USERS)
    for step in range(steps):
        gen = torch.Generator().manual_seed(seed * 1000 + step)
        x = sample_codes(n, gen)
        d = decode_chunked(x, replace(form, item_bias=bias), temperature, n_items, gen)
        counts = channel_counts(d, n_items, form.n_channels)
        drawn = (counts + 0.5 * n / n_real_users) / n
        bias += rate * (np.log(target) - np.log(drawn))
        bias -= bias.max()
    return replace(form, item_bias=bias)
