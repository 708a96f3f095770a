"""`fit --epsilon`: every fitted component from DP releases or public choices.

What each non-private component becomes:

- catalog / head items → items whose noisy user count clears a threshold (or, with
  `--public-catalog`, the log's items above the noise floor); the top `dp_max_items`.
- item counts (calibration target) → the same noisy counts, per channel.
- activity / liked-share copula → noisy histograms on public bins (released items only).
- SVD item factors → eigenvectors of a noisy Gram matrix (Analyze Gauss).
- Gaussian mixture over codes → one Gaussian: moments from the noisy Gram and row sum.
- WGAN-GP PacGAN critic → DP-SGD critic (Opacus), pac 1, weight clipping.
- held-out check, temperature search → none: last epoch within budget, fixed temperature.
- row model → fitted on a surrogate log of released items with ratings from a noisy
  histogram of rating values; every other column comes out null.
- conditions (--where) → not fitted.

Every noisy release is a Gaussian mechanism with noise multiplier σ₀/√w (see WEIGHTS) on a
per-user term of L2 norm ≤ 1; the DP-SGD steps add to the same Opacus RDP history.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsynth.config import DEFAULT_TEMPERATURE, ModelConfig, auto_rank
from recsynth.decode import calibrate_item_bias
from recsynth.dp import mechanisms as mech
from recsynth.dp.budget import ACCOUNTANT, MECHANISM, THRESHOLD_DELTA_SHARE, noise_seed, plan_budget
from recsynth.dp.train import WEIGHT_CLIP, train_dp_gan
from recsynth.encode import BATCH_ROWS, EncodedUsers, encode_users
from recsynth.errors import UsageError
from recsynth.itemspace import ItemSpace
from recsynth.latent import ClosedForm, row_normalised
from recsynth.model import PacCritic, ResidualGenerator
from recsynth.rowmodel import RowModel
from recsynth.schema import Schema
from recsynth.train import EpochCallback, TrainResult, sample_codes, whiten

# RDP weight of each release: block k gets noise σ₀/√w_k, and all of them together cost as
# much as Σw releases at σ₀ (one Opacus history entry). Item counts and the Gram carry
# most of the utility, so they get most of the preprocessing budget.
WEIGHTS = {"counts": 3, "activity": 1, "liked_share": 1, "gram": 3, "row_sum": 1,
           "rating_values": 1}
VALUE_CAP = 8  # distinct rating values one user contributes to the value histogram
SURROGATE_ROWS = 20  # rows per released item in the row model's surrogate log
def _key_half(dtype: pl.DataType) -> int:
    """Half the range of an integer key dtype: a public offset, whatever the real keys."""
    return int(np.iinfo(pl.Series([], dtype=dtype).to_numpy().dtype).max) // 2


def dp_user_key_info(users: pl.Series) -> dict[str, Any]:
    """Synthetic user keys from the upper half of the key dtype, or strings behind a random
    prefix: the real keys are not read, so nothing about them is released, and a real key
    matches a 'syn-<8 random hex digits>-' prefix only by a 1 in 4 billion chance (a fixed
    'syn-' would collide with any real key 'syn-000000001')."""
    dtype = str(users.dtype)
    if users.dtype.is_integer():
        return {"dtype": dtype, "first_new": _key_half(users.dtype) + 1}
    return {"dtype": dtype, "prefix": f"syn-{secrets.token_hex(4)}-"}


def fit_private(frame: pl.DataFrame, schema: Schema, catalog: pl.Series, config: ModelConfig,
                on_stage: Callable[[str], None], on_epoch: EpochCallback,
                time_budget: float | None) -> dict[str, Any]:
    """Fit every part under the (ε, δ) budget; a dict of the model's parts and records."""
    assert config.epsilon is not None
    rated = schema.rating_col is not None
    if rated and config.like_threshold is None:
        raise UsageError("--epsilon with a rating column needs --like-threshold (the "
                         "default reads the real mean rating)")
    n_users = frame.get_column(schema.user_col).n_unique()
    used = [k for k in WEIGHTS if rated or k not in ("liked_share", "rating_values")]
    blocks = sum(WEIGHTS[k] for k in used)
    plan = plan_budget(config.epsilon, config.delta, n_users, config.dp_batch_size,
                       config.epochs, config.noise_multiplier, config.dp_preprocess_share,
                       blocks, rated + (not config.dp_public_catalog))
    # the mechanisms' noise must be unknown to an attacker: never from --seed, which is
    # saved in the model (a seeded refit with and without one user would expose them)
    rng = np.random.default_rng(noise_seed())
    sigma = {k: plan.pre_sigma / np.sqrt(WEIGHTS[k]) for k in used}
    delta_thr = THRESHOLD_DELTA_SHARE * plan.delta
    on_stage(f"DP preprocessing: {len(used)} Gaussian releases at noise multipliers "
             f"{', '.join(f'{v:.3g}' for v in sigma.values())}; "
             f"DP-SGD noise multiplier {plan.sgd_sigma:.3g}, sample rate "
             f"{plan.sample_rate:.3g}, {plan.epochs} epochs")
    users = frame.get_column(schema.user_col).unique().sort()
    enc, _ = encode_users(frame.iter_slices(BATCH_ROWS), schema, users, catalog,
                          config.like_threshold, "data")
    n_ch = len(enc.channels)
    n_cat = len(catalog)

    # item vocabulary and per-channel counts: ≤ cap (channel, item) pairs per user
    cap = config.dp_count_cap
    pairs = mech.capped_rows(enc.stacked(), cap, rng)
    counts = mech.noisy_sum(pairs / np.sqrt(cap), sigma["counts"], rng) * np.sqrt(cap)
    per_item = counts.reshape(n_ch, n_cat).sum(axis=0)
    sd_item = sigma["counts"] * np.sqrt(cap * n_ch)
    # public catalog: keep the items above the noise floor (post-processing); else a
    # threshold that a key held by one user clears with probability ≤ its δ share
    tau = 2.0 * sd_item if config.dp_public_catalog else \
        mech.release_threshold(sd_item, 1.0, delta_thr, cap)
    released = np.flatnonzero(per_item >= tau)
    released = np.sort(released[np.argsort(-per_item[released], kind="stable")
                                 [:config.dp_max_items]])
    if len(released) < 2:
        raise UsageError(f"--epsilon {config.epsilon:g}: no more than {len(released)} items "
                         f"clear the noisy-count threshold ({tau:.0f} users); raise --epsilon")

    enc = _restricted(enc, released)  # activity and shares count released items only
    # copula marginals from noisy histograms on public bins
    act_hist = mech.histogram(enc.activity.astype(np.float64), mech.ACTIVITY_EDGES)
    act_hist = mech.denoised(act_hist + rng.normal(0.0, sigma["activity"], act_hist.shape),
                             sigma["activity"])
    n_hat = max(2.0, float(act_hist.sum()))
    activity = mech.marginal_from_histogram(act_hist, np.log(mech.ACTIVITY_EDGES))
    share_m = None
    if enc.liked_share is not None:
        share_hist = mech.histogram(enc.liked_share, mech.SHARE_EDGES)
        share_m = mech.marginal_from_histogram(
            mech.denoised(share_hist + rng.normal(0.0, sigma["liked_share"], share_hist.shape),
                          sigma["liked_share"]), mech.SHARE_EDGES)

    # item factors and the code distribution: noisy Gram + noisy row sum of unit rows
    on_stage(f"{len(released)} items released (threshold {tau:.1f}); item factors from a "
             "noisy Gram matrix")
    x = row_normalised(enc.stacked().astype(np.float64))
    gram = mech.noisy_gram(x, sigma["gram"], rng)
    row_sum = mech.noisy_sum(x, sigma["row_sum"], rng)
    max_rank = config.rank if config.rank is not None else auto_rank(int(n_hat))
    eigvals, v = mech.top_factors(gram, sigma["gram"], max(1, min(max_rank, x.shape[1] - 1)))
    form = replace(_code_gaussian(v, eigvals, row_sum, n_hat, activity, share_m, n_ch),
                   other_softness=config.other_softness)
    codes = np.column_stack([np.asarray(x @ v), *_copula_scores(enc, form)])

    on_stage(f"training the DP critic on about {int(n_hat)} users (noisy count; "
             f"rank {v.shape[1]})")
    result: TrainResult = train_dp_gan(whiten(codes, form), form, config, plan, on_epoch,
                                       time_budget)
    generator = ResidualGenerator(form.dim, config.hidden, 1)
    generator.load_state_dict(result.generator_state)
    critic = PacCritic(form.dim, config.hidden, 1)
    critic.load_state_dict(result.critic_state)

    on_stage("calibrating item frequencies to the noisy counts; row model from a surrogate")
    total_hat = float((act_hist * np.exp(_centres(np.log(mech.ACTIVITY_EDGES)))).sum())
    target = counts.reshape(n_ch, n_cat)[:, released]
    scale = max(1.0, total_hat / max(float(target.sum()), 1.0))  # capped heavy users
    target = np.clip(target * scale, 0.0, None).ravel()
    temperature = config.temperature or DEFAULT_TEMPERATURE
    form = calibrate_item_bias(form, lambda n, g: sample_codes(generator, form, n, g), target,
                               int(n_hat), temperature, len(released), config.seed + 1,
                               config.calibration_steps)
    dp_catalog = catalog.gather(released)
    surrogate = _surrogate_log(frame, schema, dp_catalog, config,
                               sigma.get("rating_values", 0.0), delta_thr, rng)
    rowmodel = RowModel.fit(surrogate, schema, dp_catalog, config.like_threshold)
    steps = plan.steps_per_epoch * result.best_epoch
    spent = plan.spent(steps)
    config = replace(config, rank=v.shape[1], temperature=temperature, n_components=1, pac=1,
                     holdout_frac=0.0, delta=plan.delta)
    privacy = {"epsilon": round(spent, 4), "delta": plan.delta,
               "epsilon_target": config.epsilon, "mechanism": MECHANISM,
               "accountant": ACCOUNTANT, "unit": "user (all of one user's rows)",
               "delta_split": {"rdp": plan.delta_rdp, "thresholds": plan.delta - plan.delta_rdp},
               "preprocessing": {"noise_multipliers": sigma, "rdp_weights": blocks,
                                 "share_of_epsilon": config.dp_preprocess_share,
                                 "count_cap": cap, "item_threshold": round(tau, 3)},
               "dp_sgd": {"noise_multiplier": plan.sgd_sigma, "sample_rate": plan.sample_rate,
                          "max_grad_norm": config.max_grad_norm, "steps": steps,
                          "epochs": result.best_epoch, "critic": f"pac 1, weight clip "
                                                                f"{WEIGHT_CLIP}"},
               "history": plan.history(steps)}
    return {"config": config, "form": form, "generator": generator.eval(),
            "critic": critic.eval(), "catalog": dp_catalog, "rowmodel": rowmodel,
            "space": ItemSpace.identity(len(released)), "result": result,
            "user_key": dp_user_key_info(enc.users), "privacy": privacy,
            "users": round(n_hat), "items": len(released)}


def _centres(edges: np.ndarray) -> np.ndarray:
    return (edges[1:] + edges[:-1]) / 2


def _code_gaussian(v: np.ndarray, eigvals: np.ndarray, row_sum: np.ndarray, n_hat: float,
                   activity, share_m, n_ch: int) -> ClosedForm:
    """One Gaussian over (taste code, copula scores): taste mean Vᵀ(Σx)/n and second
    moment diag(λ)/n from the releases; copula scores standard normal, independent
    (the critic learns what this misses)."""
    mean_z = v.T @ row_sum / n_hat
    cov_z = np.diag(np.clip(eigvals, 0.0, None) / n_hat) - np.outer(mean_z, mean_z)
    w, q = np.linalg.eigh(cov_z)
    cov_z = (q * np.clip(w, 1e-4 * max(w.max(), 1e-6), None)) @ q.T  # PSD after noise
    n_extra = 1 + (share_m is not None)
    dim = v.shape[1] + n_extra
    cov = np.eye(dim)
    cov[:v.shape[1], :v.shape[1]] = cov_z
    mean = np.concatenate([mean_z, np.zeros(n_extra)])
    chol = np.linalg.cholesky(cov + 1e-9 * np.eye(dim))
    return ClosedForm(v, np.zeros(v.shape[0]), mean, chol, np.ones(1), mean[None], chol[None],
                      activity, share_m, n_ch)


def _restricted(enc: EncodedUsers, released: np.ndarray) -> EncodedUsers:
    """Users over the released items only; activity at least 1 (the public bins' floor)."""
    channels = tuple(c[:, released].tocsr() for c in enc.channels)
    n = sum(np.diff(c.indptr) for c in channels)
    share = None if enc.liked_share is None else np.diff(channels[0].indptr) / np.maximum(n, 1)
    return EncodedUsers(enc.users, channels, np.maximum(n, 1).astype(np.int64), share)


def _copula_scores(enc: EncodedUsers, form: ClosedForm) -> list[np.ndarray]:
    """Each user's normal scores under the released marginals (no ranks among users)."""
    out = [mech.scores_from_marginal(np.log(enc.activity.astype(np.float64)), form.activity)]
    if enc.liked_share is not None and form.liked_share is not None:
        out.append(mech.scores_from_marginal(enc.liked_share, form.liked_share))
    return out


def _surrogate_log(frame: pl.DataFrame, schema: Schema, dp_catalog: pl.Series,
                   config: ModelConfig, sigma: float, delta_thr: float,
                   rng: np.random.Generator) -> pl.DataFrame:
    """A stand-in log for `RowModel.fit`: released items, ratings from a noisy histogram
    of rating values (each user counts once per value, ≤ VALUE_CAP values), every other
    non-key column null. Nothing in it is a real row."""
    n_items = len(dp_catalog)
    items = dp_catalog.to_numpy()
    cols: dict[str, pl.Series] = {}
    rating = schema.rating_col
    if rating is not None:
        values, weights = _noisy_values(frame, schema.user_col, rating, sigma, delta_thr, rng,
                                        config.like_threshold)
        per = np.maximum(1, np.round(SURROGATE_ROWS * weights)).astype(np.int64)
        n_rows = n_items * int(per.sum())
        cols[rating] = pl.Series(rating, np.tile(np.repeat(values, per), n_items)).cast(
            frame.schema[rating])
        item_col = np.repeat(items, int(per.sum()))
    else:
        n_rows, item_col = n_items, items
    user_dtype = frame.schema[schema.user_col]
    keys = np.arange(n_rows)
    if user_dtype.is_integer():  # narrow dtypes (Int8, UInt16…) wrap: still a valid key
        keys %= max(1, _key_half(user_dtype))
    user = pl.Series(schema.user_col, keys).cast(pl.String if user_dtype == pl.String
                                                 else user_dtype)
    out = {schema.user_col: user,
           schema.item_col: pl.Series(schema.item_col, item_col).cast(dp_catalog.dtype)}
    for name, dtype in frame.schema.items():
        if name not in out:
            out[name] = cols.get(name, pl.Series(name, [None] * n_rows, dtype=dtype))
    return pl.DataFrame([out[c] for c in frame.columns])


def _noisy_values(frame: pl.DataFrame, user: str, col: str, sigma: float, delta_thr: float,
                  rng: np.random.Generator, fallback: float | None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(released values, their shares): users holding each value, ≤ VALUE_CAP values per
    user, noisy, kept above a threshold so a value one user holds is rarely released;
    none kept: the public like threshold alone."""
    pairs = frame.select(user, col).drop_nulls().unique()
    levels = np.sort(pairs.get_column(col).unique().to_numpy())
    if len(levels) == 0:
        raise UsageError(f"--epsilon: the rating column {col!r} has no values")
    users = pairs.get_column(user).rank("dense").to_numpy() - 1
    cols = np.searchsorted(levels, pairs.get_column(col).to_numpy())
    m = sp.csr_matrix((np.ones(len(cols)), (users, cols)),
                      shape=(int(users.max()) + 1, len(levels)))
    m = mech.capped_rows(m, VALUE_CAP, rng) / np.sqrt(VALUE_CAP)
    noisy = mech.noisy_sum(m, sigma, rng) * np.sqrt(VALUE_CAP)
    tau = mech.release_threshold(sigma * np.sqrt(VALUE_CAP), 1.0, delta_thr, VALUE_CAP)
    keep = noisy >= tau
    if not keep.any():
        return np.array([fallback], dtype=np.float64), np.ones(1)
    return levels[keep], noisy[keep] / noisy[keep].sum()
