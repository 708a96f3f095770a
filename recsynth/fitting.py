"""`recsynth fit` end to end: read → schema → encode → closed form → GAN → calibrate → save."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recsynth import io
from recsynth.checkpoint import Model, fingerprint, save_model, versions
from recsynth.conditions import Conditions, conditionable_columns, fit_conditions, width
from recsynth.config import (
    DEFAULT_TEMPERATURE,
    TEMPERATURE_GRID,
    ModelConfig,
    auto_holdout,
    auto_rank,
    validate_config,
)
from recsynth.decode import calibrate_item_bias, calibrate_scores
from recsynth.distributed import SINGLE, World
from recsynth.encode import EncodedUsers
from recsynth.errors import UsageError
from recsynth.inputs import check_item_key_dtype, check_keys, check_user_key_dtype, fresh_prefix
from recsynth.itemspace import ItemSpace
from recsynth.latent import ClosedForm, fit_closed_form
from recsynth.logcache import EncodedLog
from recsynth.matrix import build_catalog
from recsynth.model import PacCritic, ResidualGenerator
from recsynth.resume import (
    checkpoint_path,
    load_checkpoint,
    remove_checkpoint,
    require_checkpoint,
    resume_key,
    save_checkpoint,
)
from recsynth.rowmodel import RowModel
from recsynth.rowparts import Nulls
from recsynth.schema import Schema, resolve_schema, schema_to_dict
from recsynth.side_tables import join_side_tables
from recsynth.split import holdout_users
from recsynth.streaming import (
    encode_log,
    first_per_key,
    require_learnable,
    rows_of,
    sample_users,
)
from recsynth.train import EpochCallback, UtilityCheck, dcr_share, sample_codes, train_gan

MIN_CHECK_USERS = 20  # fewer held-out users make the early-stopping check pure noise
MAX_CHECK_USERS = 10_000


def _user_key_info(users: pl.Series) -> dict[str, Any]:
    """How to mint synthetic user keys that never collide with real ones."""
    if users.dtype.is_integer():
        return {"dtype": str(users.dtype), "first_new": int(users.max()) + 1}
    return {"dtype": str(users.dtype), "prefix": fresh_prefix(users)}


def _split_users(enc: EncodedUsers, config: ModelConfig
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows of the fitting users and of the held-out users the check scores.

    At most MAX_CHECK_USERS are held out (the check's EASE scores are users x items
    doubles, and more users only narrow an already narrow error bar); the rest of
    `holdout_frac` goes back to fitting.
    """
    everyone = np.arange(enc.n_users)
    n_val = round(config.holdout_frac * enc.n_users)
    if config.holdout_frac == 0 or n_val < MIN_CHECK_USERS or enc.n_users - n_val < 2:
        return everyone, None
    held = holdout_users(enc.users, config.holdout_frac, config.seed)
    checked = np.flatnonzero(enc.users.is_in(held.implode()).to_numpy())
    if len(checked) > MAX_CHECK_USERS:
        rng = np.random.default_rng([config.seed, 43])
        checked = np.sort(rng.choice(checked, MAX_CHECK_USERS, replace=False))
    return np.setdiff1d(everyone, checked), checked


def scan_log(data: str, schema_file: str | None, user_col: str | None, item_col: str | None,
             time_col: str | None, users_table: str | None = None,
             items_table: str | None = None) -> tuple[pl.LazyFrame, Schema]:
    """The log (lazy) with its side tables joined, and the schema of the joined columns.

    Keys come from the log alone; the schema is then inferred again on the joined frame so
    side-table columns get their roles and levels like any column of the log.
    """
    lf = io.scan(data)
    schema = resolve_schema(lf, str(data), schema_file, user_col, item_col, time_col)
    if users_table is not None or items_table is not None:
        lf = join_side_tables(lf, str(data), schema.user_col, schema.item_col, users_table,
                              items_table)
        schema = resolve_schema(lf, str(data), schema_file, schema.user_col,
                                schema.item_col, schema.time_col)
    return lf.select(_in_log_order(lf, schema)), schema


def _in_log_order(lf: pl.LazyFrame, schema: Schema) -> list[str]:
    """The schema's columns in the log's own order, which synthetic logs keep."""
    named = set(schema.names)
    return [n for n in lf.collect_schema().names() if n in named]


def fit_model(data: str, out: str, config: ModelConfig, *, schema_file: str | None = None,
              user_col: str | None = None, item_col: str | None = None,
              time_col: str | None = None, users_table: str | None = None,
              items_table: str | None = None, time_budget: float | None = None,
              overwrite: bool = False, resume: bool = False,
              on_stage: Callable[[str], None] = lambda _: None,
              on_epoch: EpochCallback = lambda _: None, world: World = SINGLE,
              device: str = "cpu", cache_dir: str | None = None) -> Path:
    """Fit and write the model directory; under torchrun every rank trains, rank 0 writes."""
    validate_config(config)
    io.check_writable(out, overwrite)
    ckpt = checkpoint_path(out)
    if resume and config.epsilon is not None:
        raise UsageError("--resume is not available with --epsilon (the budget is spent once)")
    if world.active and config.epsilon is not None:
        raise UsageError("--epsilon under torchrun is not supported: fit a DP model in one "
                         "process")
    if resume:
        require_checkpoint(ckpt)
    elif ckpt.is_file():
        on_stage(f"{ckpt} is left from an interrupted fit; starting afresh "
                 "(--resume continues it)")
    started = time.time()
    timings: dict[str, float] = {}
    tick = time.monotonic()
    begun = tick

    def budget_left() -> float | None:
        """What is left of --time-budget, which counts from the start of `fit`."""
        return None if time_budget is None else max(0.0, time_budget - (time.monotonic() - begun))

    on_stage("reading logs and inferring the schema")
    log_files = io.resolve_parquet_paths(data)
    files = log_files + [p for t in (users_table, items_table) if t
                         for p in io.resolve_parquet_paths(t)]
    lf, schema = scan_log(data, schema_file, user_col, item_col, time_col, users_table,
                          items_table)
    dtypes = lf.collect_schema()
    check_user_key_dtype(dtypes[schema.user_col], str(data), schema.user_col)
    check_item_key_dtype(dtypes[schema.item_col], str(data), schema.item_col)
    inputs = fingerprint(files)
    if config.epsilon is not None:
        if schema_file is None:
            on_stage("warning: the schema was inferred from the data (column levels, "
                     "categorical vs identifier, time unit), which DP does not cover; pass "
                     "--schema with a schema you chose to make it public")
        if cache_dir is not None or config.row_model_rows != ModelConfig.row_model_rows:
            on_stage("warning: --cache-dir and --row-model-rows do not apply to --epsilon "
                     "(the DP fit reads the log into memory)")
        frame = io.collect(lf, data)  # DP clips per user in memory
        check_keys(frame, str(data), [schema.user_col, schema.item_col])
        catalog = build_catalog(schema.item_col, frame)
        require_learnable(frame.get_column(schema.user_col).n_unique(), len(catalog),
                          str(data))
        return _save_private(frame, schema, catalog, config, inputs, started, out, overwrite,
                             on_stage, on_epoch, budget_left())
    key = resume_key(inputs, {**asdict(config), "schema": schema_to_dict(schema),
                              "processes": world.size})
    state = load_checkpoint(ckpt, key) if resume else None
    timings["read"] = time.monotonic() - tick

    on_stage("encoding users (streaming passes over the log) and fitting the closed-form "
             "sampler")
    tick = time.monotonic()
    log = _encoded_log(lf, log_files, schema, config, str(data), cache_dir,
                       inputs[:len(log_files)], world, on_stage)
    catalog, threshold, n_rows = log.catalog, log.like_threshold, log.rows
    all_users = log.enc.users
    config = replace(config, like_threshold=threshold)
    timings["encode"] = time.monotonic() - tick
    tick = time.monotonic()
    space = ItemSpace.build(log.enc.item_sets(), config.max_items)
    enc = replace(log.enc, channels=tuple(space.to_model(c) for c in log.enc.channels))
    if space.capped:
        on_stage(f"modelling the {len(space.head)} most popular of {len(catalog)} items; "
                 f"the other {len(space.tail)} share {space.n_slots} tail slots")
    if config.holdout_frac is None:
        config = replace(config, holdout_frac=auto_holdout(enc.n_users, config.refit))
    fit_rows, check_rows = _split_users(enc, config)
    fit_users = enc if check_rows is None else enc.subset(fit_rows)
    val_users = None if check_rows is None else enc.subset(check_rows)
    fit_rows_per_user = log.rows_per_user[fit_rows]
    # a check capped at MAX_CHECK_USERS is under 10 % of the users: refitting would double
    # the GAN's time and hold the pair matrix twice (the 50 M-row memory bound) for little
    refit = config.refit and check_rows is not None and len(check_rows) < MAX_CHECK_USERS
    everyone = (enc, log.rows_per_user) if refit else None
    del log, enc  # the subsets are copies: without a refit keep one pair matrix, not three
    final_users = fit_users.n_users if everyone is None else everyone[0].n_users
    rank = config.rank if config.rank is not None else auto_rank(final_users)  # of the model kept
    rank = max(1, min(rank, fit_users.n_users - 1,
                      space.n_model_items * len(fit_users.channels) - 1))
    n_items = space.n_model_items

    form, codes = _closed_form(fit_users, rank, space, config)
    identity = ResidualGenerator(form.dim, config.hidden, form.n_components)  # the mixture

    def codes_from(generator: ResidualGenerator):
        return lambda n, gen: sample_codes(generator, form, n, gen)

    search: dict[str, dict[str, float]] = {}
    if config.temperature is not None:
        temperature = config.temperature
    elif val_users is None:
        temperature = DEFAULT_TEMPERATURE
    else:
        on_stage(f"choosing the decoder temperature by the held-out check {TEMPERATURE_GRID}")
        search.update(_search_temperatures(form, identity, fit_users, val_users, n_items,
                                           config, on_stage))
        temperature = pick_temperature(search, config.max_dcr_share, config.check_slack_se) \
            if search else DEFAULT_TEMPERATURE
    config = replace(config, rank=rank, temperature=temperature,
                     n_components=form.n_components)
    form = _calibrated(form, identity, fit_users, n_items, temperature, config)

    def check_for(base: ClosedForm, temperature: float) -> UtilityCheck | None:
        return None if val_users is None else \
            _check(base, temperature, n_items, fit_users, val_users, config)

    timings["closed_form"] = time.monotonic() - tick

    held = "no held-out check" if val_users is None else \
        f"{val_users.n_users} held out for the check"
    resumed = "" if state is None else f", resuming after epoch {state['epoch']}"
    on_stage(f"training the GAN on {fit_users.n_users} users at temperature {temperature:g} "
             f"({held}{resumed}); checkpoint: {ckpt}")
    tick = time.monotonic()
    attributes = _user_attributes(lf, schema, str(data))
    conditions, labels = _conditions(attributes, schema, codes, form, fit_users)
    result = train_gan(codes, form, config, check_for(form, temperature), on_epoch,
                       None if time_budget is None else budget_left() * (0.5 if refit else 1.0),
                       resume=state, world=world, device=device,
                       on_checkpoint=(lambda st: save_checkpoint(ckpt, key, st))
                       if world.is_main else None, conditions=conditions, labels=labels)
    refitted = None
    if everyone is not None:
        selection, epochs_run = result, result.history[-1]["epoch"]
        fit_users, fit_rows_per_user = everyone
        del everyone
        on_stage(f"refitting on all {fit_users.n_users} users with the chosen temperature "
                 f"{temperature:g}, training {epochs_run} epochs and keeping epoch "
                 f"{selection.best_epoch}'s generator")
        form, codes = _closed_form(fit_users, rank, space, config)
        form = _calibrated(form, identity, fit_users, n_items, temperature, config)
        conditions, labels = _conditions(attributes, schema, codes, form, fit_users)
        left = budget_left()

        def on_refit_epoch(record: dict[str, Any]) -> None:
            on_epoch({**record, "pass": "refit", "of": epochs_run})

        result = train_gan(codes, form, replace(config, epochs=epochs_run), None,
                           on_refit_epoch, left, world=world, device=device,
                           conditions=conditions, labels=labels,
                           keep_epoch=selection.best_epoch)
        refitted = {"users": fit_users.n_users, "epochs": epochs_run,
                    "kept_epoch": result.best_epoch}
        result = replace(result, best_epoch=selection.best_epoch, stopped=selection.stopped,
                         history=selection.history
                         + [{**r, "pass": "refit"} for r in result.history])
    world.barrier()  # every rank has finished training before rank 0 writes
    if not world.is_main:
        return Path(out)
    n_cond = width(conditions)
    generator = ResidualGenerator(form.dim, config.hidden, form.n_components, n_cond)
    generator.load_state_dict(result.generator_state)
    critic = PacCritic(form.dim, config.hidden, config.pac, n_cond)
    critic.load_state_dict(result.critic_state)
    timings["train"] = time.monotonic() - tick

    on_stage("calibrating item frequencies and fitting the per-row model")
    tick = time.monotonic()
    form = calibrate_scores(form, codes_from(generator), config.seed)
    form = _calibrated(form, generator, fit_users, n_items, temperature, config, config.seed + 1)
    rowmodel = _fit_rows(lf, schema, catalog, threshold, fit_users, fit_rows_per_user, config,
                         str(data), on_stage)
    timings["calibrate_rowmodel"] = time.monotonic() - tick

    model = Model(config, schema, threshold, catalog, form, generator.eval(), critic.eval(),
                  rowmodel, _user_key_info(all_users), space, conditions)
    manifest = {"inputs": inputs, "versions": versions(), "seed": config.seed,
                "device": device, "precision": config.precision, "processes": world.size,
                "started_unix": round(started, 3),
                "timings_s": {k: round(v, 3) for k, v in timings.items()},
                "users": {"fit": fit_users.n_users, "check": len(check_rows)
                          if check_rows is not None else 0},
                "refit": refitted,
                "items": len(catalog), "modelled_items": n_items, "rows": n_rows,
                "best_epoch": result.best_epoch,
                "stopped": result.stopped,
                "resumed_after_epoch": None if state is None else state["epoch"],
                "temperature_search": _search_summary(search, config.max_dcr_share),
                "config": asdict(config)}
    on_stage("writing the model directory")
    with io.atomic_path(out, overwrite) as tmp:
        save_model(model, tmp, result.history, manifest)
    remove_checkpoint(ckpt)
    return Path(out)


def _closed_form(users: EncodedUsers, rank: int, space: ItemSpace, config: ModelConfig
                 ) -> tuple[ClosedForm, np.ndarray]:
    """The closed-form sampler and the users' codes; seeded the same for the selection fit
    and the refit on every user."""
    rng = np.random.default_rng([config.seed, 3])
    form, codes = fit_closed_form(users, rank, rng, config.n_components)
    form = replace(form, other_softness=config.other_softness)
    return (replace(form, n_head=len(space.head)) if space.capped else form), codes


def _encoded_log(lf: pl.LazyFrame, files: list[Path], schema: Schema, config: ModelConfig,
                 source: str, cache_dir: str | None, inputs: list[dict[str, Any]],
                 world: World, on_stage: Callable[[str], None]) -> EncodedLog:
    """Under torchrun with a cache, rank 0 encodes and the other ranks read its cache."""
    def encode() -> EncodedLog:
        return encode_log(lf, files, schema, config.like_threshold, source,
                          cache_dir=cache_dir, inputs=inputs, write_cache=world.is_main,
                          on_stage=on_stage)

    if world.active and cache_dir is not None and not world.is_main:
        world.barrier()
        return encode()
    log = encode()
    if world.active and cache_dir is not None:
        world.barrier()
    return log


def _fit_rows(lf: pl.LazyFrame, schema: Schema, catalog: pl.Series,
              like_threshold: float | None, fit_users: EncodedUsers,
              rows_per_user: np.ndarray, config: ModelConfig, source: str,
              on_stage: Callable[[str], None]) -> RowModel:
    """The per-row model on a bounded sample of whole fitting users; item-level values from
    a streaming pass over every row."""
    chosen = sample_users(fit_users.users, rows_per_user, config.row_model_rows, config.seed)
    if len(chosen) < fit_users.n_users:
        on_stage(f"per-row model from {len(chosen)} of {fit_users.n_users} fitting users "
                 f"(whole users, about {config.row_model_rows:,} rows)")
    rows = rows_of(lf, schema.user_col, chosen, source)
    item_cols = [c.name for c in schema.item_attributes()]
    items = first_per_key(lf, schema.item_col, item_cols, source) if item_cols else None
    model = RowModel.fit(rows, schema, catalog, like_threshold, item_values=items)
    for part in model.parts:  # say which real values will not come back
        if isinstance(part, Nulls) and rows.get_column(part.name).null_count() < rows.height:
            on_stage(f"warning: column {part.name!r} ({part.dtype}) is not modelled; "
                     "synthetic rows get nulls there")
    return model


def _user_attributes(lf: pl.LazyFrame, schema: Schema, source: str) -> pl.DataFrame | None:
    """Every user's conditionable attribute values (one streaming pass over the log, shared
    by the checked run and the refit); None when the log has no such column."""
    cols = conditionable_columns(schema)
    return first_per_key(lf, schema.user_col, cols, source) if cols else None


def _conditions(attributes: pl.DataFrame | None, schema: Schema, codes: np.ndarray,
                form: ClosedForm, fit_users: EncodedUsers
                ) -> tuple[Conditions | None, np.ndarray | None]:
    """Per-value group statistics and each fitting user's values; the GAN trains its
    condition input on them."""
    if attributes is None:
        return None, None
    return fit_conditions(codes, form, attributes, schema, fit_users.users)


def _save_private(frame: pl.DataFrame, schema: Schema, catalog: pl.Series,
                  config: ModelConfig, inputs: list[dict[str, Any]], started: float, out: str,
                  overwrite: bool, on_stage: Callable[[str], None], on_epoch: EpochCallback,
                  time_budget: float | None) -> Path:
    """`fit --epsilon`: the DP pipeline (recsynth/dp/fit.py), saved like any model; the
    manifest records only released counts, input paths and the privacy guarantee."""
    from recsynth.dp.fit import fit_private

    tick = time.monotonic()
    p = fit_private(frame, schema, catalog, config, on_stage, on_epoch, time_budget)
    model = Model(p["config"], schema, p["config"].like_threshold, p["catalog"], p["form"],
                  p["generator"], p["critic"], p["rowmodel"], p["user_key"], p["space"], None)
    # input paths only: a file's size or hash is a function of the data, not DP
    manifest = {"inputs": [{"path": f["path"]} for f in inputs], "versions": versions(),
                "seed": config.seed, "device": "cpu", "started_unix": round(started, 3),
                "timings_s": {"fit": round(time.monotonic() - tick, 3)},
                "users": {"fit_noisy": p["users"], "check": 0}, "items": p["items"],
                "modelled_items": p["items"], "best_epoch": p["result"].best_epoch,
                "stopped": p["result"].stopped, "privacy": p["privacy"],
                "config": asdict(p["config"])}
    on_stage("writing the model directory")
    with io.atomic_path(out, overwrite) as tmp:
        save_model(model, tmp, p["result"].history, manifest)
    return Path(out)


def _calibrated(form: ClosedForm, generator: ResidualGenerator, fit_users: EncodedUsers,
                n_items: int, temperature: float, config: ModelConfig,
                seed: int | None = None) -> ClosedForm:
    """Item biases fitted so the generator's draws at this temperature match the real counts."""
    real_counts = np.concatenate([np.asarray(c.sum(axis=0)).ravel() for c in fit_users.channels])
    return calibrate_item_bias(form, lambda n, gen: sample_codes(generator, form, n, gen),
                               real_counts, fit_users.n_users, temperature, n_items,
                               config.seed if seed is None else seed, config.calibration_steps)


def _check(form: ClosedForm, temperature: float, n_items: int, fit_users: EncodedUsers,
           val_users: EncodedUsers, config: ModelConfig) -> UtilityCheck | None:
    """The held-out check, generating check_ratio users per fitting user."""
    return UtilityCheck.build(form, temperature, n_items,
                              round(config.check_ratio * fit_users.n_users),
                              val_users.channels[0], config.seed)


def _search_temperatures(form: ClosedForm, identity: ResidualGenerator,
                         fit_users: EncodedUsers, val_users: EncodedUsers, n_items: int,
                         config: ModelConfig, on_stage: Callable[[str], None] = lambda _: None
                         ) -> dict[str, dict[str, float]]:
    """Check NDCG@10 (mean, and per held-out user under "per_user") and DCR share of the
    closed form (`identity`: the generator at step 0) at every grid temperature ({} when no
    held-out user can be scored); one log line per temperature (a minute on large logs)."""
    fit_sets, val_sets = fit_users.item_sets(), val_users.item_sets()
    search = {}
    for t in TEMPERATURE_GRID:
        check = _check(_calibrated(form, identity, fit_users, n_items, t, config), t, n_items,
                       fit_users, val_users, config)
        if check is None:
            return {}
        share = dcr_share(check.generated(identity, first_channel=False), fit_sets, val_sets,
                          config.seed)
        per_user = check.per_user(identity)
        search[str(t)] = {"check_ndcg10": float(per_user.mean()), "dcr_share": share,
                          "per_user": per_user}
        on_stage(f"temperature {t:g}: check {per_user.mean():.4f}, held-out DCR share "
                 f"{share:.3f}")
    return search


def _search_summary(search: dict[str, dict], max_dcr_share: float) -> dict[str, dict]:
    """The search for manifest.json: per temperature the check, its DCR share and its gap
    (with standard error) to the best temperature inside the guard."""
    gaps = _guarded_gaps(search, max_dcr_share)
    return {t: {"check_ndcg10": r["check_ndcg10"], "dcr_share": r["dcr_share"],
                **(gaps[t] if gaps else {})} for t, r in search.items()}


def pick_temperature(search: dict[str, dict], max_dcr_share: float, slack_se: float
                     ) -> float:
    """The softest temperature whose check trails the best by at most `slack_se` standard
    errors of the paired per-user difference, among those whose DCR share stays ≤
    max_dcr_share (the one-standard-error rule of model selection).

    Sharper decoding scores better and sits closer to the fitting users: the guard keeps
    the search from buying utility with privacy, and the slack spends a difference the
    held-out users cannot resolve on privacy. With no candidate inside the guard, the
    softest temperature is taken: it is the least leaky by construction, where the
    smallest DCR share among several near 0.58 is picked by the guard's noise (sd
    0.03-0.05 on MovieLens; one fit took T 0.01 for 0.5808 against 0.5817 at T 0.02 and
    scored TSTR 0.907 at membership AUC 0.567, against 0.902 at 0.551 at T 0.02).
    """
    gaps = _guarded_gaps(search, max_dcr_share)
    if gaps is None:
        return max(float(t) for t in search)
    return max(float(t) for t, g in gaps.items() if g["safe"]
               and (g["gap"] <= slack_se * g["gap_se"] or g["gap"] <= 0))


def _guarded_gaps(search: dict[str, dict], max_dcr_share: float
                  ) -> dict[str, dict[str, float]] | None:
    """`check_gaps` to the best temperature inside the DCR guard, each marked `safe` (inside
    it or not); None when no temperature is inside."""
    safe = [t for t, v in search.items() if v["dcr_share"] <= max_dcr_share]
    if not safe:
        return None
    gaps = check_gaps(search, max(safe, key=lambda t: search[t]["check_ndcg10"]))
    return {t: {**g, "safe": t in safe} for t, g in gaps.items()}


def check_gaps(search: dict[str, dict], best: str) -> dict[str, dict[str, float]]:
    """Each temperature's check gap to `best` and the standard error of that gap, from the
    paired per-user scores (0 without them, as in a manifest)."""
    out = {}
    for t, v in search.items():
        se = 0.0
        if "per_user" in v and "per_user" in search[best] and len(v["per_user"]) > 1:
            diff = np.asarray(search[best]["per_user"]) - np.asarray(v["per_user"])
            se = float(diff.std(ddof=1) / np.sqrt(len(diff)))
        out[t] = {"gap": search[best]["check_ndcg10"] - v["check_ndcg10"], "gap_se": se}
    return out


def parse_duration(text: str) -> float:
    """'90', '90s', '10m', '1.5h' → seconds."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    t = text.strip().lower()
    try:
        if t and t[-1] in units:
            value = float(t[:-1]) * units[t[-1]]
        else:
            value = float(t)
    except ValueError:
        raise UsageError(f"--time-budget {text!r}: expected a duration like 90s, 10m "
                         "or 1h") from None
    if value <= 0:
        raise UsageError(f"--time-budget {text!r}: must be positive")
    return value

