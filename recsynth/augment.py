"""`recsynth augment`: the real log plus targeted synthetic users, in one Parquet file.

Untargeted fake users tend to hurt a recommender (more popularity-like users), so each
strategy says whom to add:

- `match`: users drawn like the real ones (plain upsampling);
- `sparse-users`: users with at most as many items as the least active SPARSE_QUANTILE of
  the real users (their taste drawn jointly with that activity);
- `long-tail`: of TAIL_OVERSAMPLE candidates per user, those whose histories hold the
  largest share of tail items (outside the head of items that covers HEAD_SHARE of the
  real interactions);
- `balance:COLUMN`: users of the under-represented values of a user attribute, allotted by
  water-filling so the groups' user counts come as close to equal as the budget allows
  (values the model cannot generate aside, never past the largest group).

Synthetic user keys never collide with the real ones (integers above the real maximum,
or a string prefix no real key starts with); rows keep the real columns and dtypes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from recsynth import io
from recsynth.checkpoint import Model
from recsynth.conditions import MIN_GROUP_USERS, Request
from recsynth.errors import DataError, UsageError
from recsynth.filtering import candidates
from recsynth.inputs import check_keys, fresh_prefix
from recsynth.sampling import Shaping, generate_batch, make_shaping
from recsynth.side_tables import join_side_tables

SUMMARY_SCHEMA_VERSION = 1
MARK_COL = "is_synthetic"
SPARSE_QUANTILE = 0.2
HEAD_SHARE = 0.8
TAIL_OVERSAMPLE = 4
FIXED = ("match", "sparse-users", "long-tail")


@dataclass(frozen=True)
class Group:
    label: str
    n_users: int
    shaping: Shaping


def parse_strategy(text: str) -> tuple[str, str | None]:
    if text in FIXED:
        return text, None
    kind, _, column = text.partition(":")
    if kind == "balance" and column:
        return kind, column
    raise UsageError(f"--strategy {text!r}: use match, sparse-users, long-tail or "
                     "balance:COLUMN")


def parity_allocation(counts: dict[str, int], n: int) -> dict[str, int]:
    """Split n new users among groups so the smallest groups grow first (water-filling)."""
    labels = sorted(counts)
    c = np.array([counts[v] for v in labels], dtype=np.float64)
    lo, hi = c.min(), c.max() + n
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if np.maximum(mid - c, 0).sum() > n else (mid, hi)
    raw = np.maximum(lo - c, 0.0)
    base = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - base), kind="stable")
    base[order[: n - int(base.sum())]] += 1
    return dict(zip(labels, base.tolist(), strict=True))


def balance_allocation(before: dict[str, int], eligible: set[str], n: int) -> dict[str, int]:
    """Water-fill n users over the values the model can generate (`eligible`). With some
    values left out, no group is filled past the largest group's size: growing it further
    would only widen the gap to the groups that cannot be generated, so fewer than n users
    may be allotted."""
    counts = {v: c for v, c in before.items() if v in eligible}
    if set(before) - eligible:
        room = sum(max(before.values()) - c for c in counts.values())
        n = min(n, room)
    return parity_allocation(counts, n) if counts else {}


def _user_values(frame: pl.DataFrame, user: str, column: str, source: str) -> pl.Series:
    """One value per real user; a column that varies within a user is not an attribute."""
    per_user = frame.group_by(user).agg(pl.col(column).n_unique().alias("n"),
                                        pl.col(column).first().cast(pl.String))
    if per_user.get_column("n").max() > 1:
        raise DataError(f"{source}: column {column!r} varies within a user, so it is not a "
                        "user attribute to balance")
    return per_user.get_column(column)


def plan_groups(strategy: str, column: str | None, model: Model, frame: pl.DataFrame,
                n_new: int, filter_quantile: float, source: str,
                on_stage: Callable[[str], None] = lambda _: None
                ) -> tuple[list[Group], dict[str, Any]]:
    user, item = model.schema.user_col, model.schema.item_col
    extra: dict[str, Any] = {}
    if strategy == "match":
        return [Group("all", n_new, make_shaping(model, Request(), filter_quantile))], extra
    if strategy == "sparse-users":
        activity = frame.group_by(user).agg(pl.col(item).n_unique()).get_column(item)
        cap = max(1, int(np.floor(np.quantile(activity.to_numpy(), SPARSE_QUANTILE))))
        extra["max_items"] = cap
        shaping = make_shaping(model, Request(max_items=cap), filter_quantile)
        return [Group(f"items<={cap}", n_new, shaping)], extra
    if strategy == "long-tail":
        is_tail = tail_items(frame, user, item, model.catalog)
        extra["tail_items"] = int(is_tail.sum())
        shaping = dataclasses.replace(make_shaping(model, Request(), filter_quantile,
                                                   tail=is_tail),
                                      tail_oversample=TAIL_OVERSAMPLE)
        return [Group("tail", n_new, shaping)], extra
    assert column is not None
    if column not in frame.columns:
        raise DataError(f"{source}: strategy balance:{column} needs column {column!r}, which "
                        f"the data lacks (columns: {', '.join(frame.columns)})")
    stats = None if model.conditions is None else model.conditions.columns.get(column)
    if stats is None:
        raise DataError(f"balance:{column}: the model learned no condition on {column!r} "
                        "(it must be a user-level attribute of the log it was fitted on)")
    values = _user_values(frame, user, column, source)
    before = {str(k): int(v) for k, v in values.value_counts().rows() if k is not None}
    learned = {v for v, n in zip(stats.values, stats.users, strict=True) if n >= MIN_GROUP_USERS}
    eligible = {v for v in before if v in learned}
    skipped = sorted(set(before) - eligible)
    if not eligible:
        raise DataError(f"balance:{column}: none of the data's values can be generated")
    added = balance_allocation(before, eligible, n_new)
    n_added = sum(added.values())
    if not n_added:
        raise DataError(f"balance:{column}: only {', '.join(sorted(eligible))} can be generated "
                        f"(the model saw fewer than {MIN_GROUP_USERS} fitting users of "
                        f"{len(skipped)} other values), and adding to the largest group would "
                        "widen the imbalance; nothing to add")
    if n_added < n_new:
        on_stage(f"balance:{column}: adding {n_added} users, not {n_new}: the "
                 f"{len(skipped)} values with fewer than {MIN_GROUP_USERS} fitting users cannot "
                 "be generated, and no group is grown past the largest one")
    groups = [Group(f"{column}={v}", k, make_shaping(model, Request(where=((column, v),)),
                                                    filter_quantile))
              for v, k in added.items() if k > 0]
    extra["balance"] = {"column": column, "before": before, "added": added,
                        "after": {v: before[v] + added.get(v, 0) for v in before},
                        "skipped": skipped}
    return groups, extra


def tail_items(frame: pl.DataFrame, user: str, item: str, catalog: pl.Series) -> np.ndarray:
    """Per catalog item: True unless it is among the most popular items that together hold
    HEAD_SHARE of the (user, item) pairs."""
    pop = frame.group_by(item).agg(pl.col(user).n_unique().alias("n"))
    counts = (pl.DataFrame({item: catalog}).join(pop, on=item, how="left")
              .get_column("n").fill_null(0).to_numpy().astype(np.float64))
    order = np.lexsort((np.arange(len(counts)), -counts))
    covered = np.cumsum(counts[order]) / max(counts.sum(), 1.0)
    n_head = int(np.searchsorted(covered, HEAD_SHARE) + 1)
    is_tail = np.ones(len(counts), dtype=bool)
    is_tail[order[:n_head]] = False
    return is_tail


def new_key_info(users: pl.Series, model: Model) -> dict[str, Any]:
    """Keys for synthetic users that collide neither with the data nor the model's users."""
    if users.dtype.is_integer():
        # a round start two digits above the largest key: held-out users of the same id
        # space (an 80/20 split's other side) cannot collide, and synthetic ids stand out
        top = max(int(users.max()), int(model.user_key.get("first_new", 1)) - 1, 0)
        first = 10 ** (len(str(top)) + 1)
        if first > np.iinfo(users.to_numpy().dtype).max // 2:
            first = top + 1
        return {"dtype": str(users.dtype), "first_new": first}
    return {"dtype": "String", "prefix": fresh_prefix(users)}


def augment(data: str, model: Model, out: str, strategy_text: str, *, ratio: float,
            seed: int, mark: bool = False, filter_quantile: float = 0.0,
            batch_users: int = 2048, overwrite: bool = False,
            users_table: str | None = None, items_table: str | None = None,
            on_stage: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Write real + synthetic rows to `out`; return the JSON summary of what was added.

    With side tables (as given to `fit --users/--items`) they are joined onto the log
    first, so the output is the joined log the model was fitted on, real and synthetic."""
    strategy, column = parse_strategy(strategy_text)
    if not ratio > 0:
        raise UsageError(f"--ratio must be positive (got {ratio})")
    if batch_users < 1:
        raise UsageError(f"--batch-users must be at least 1 (got {batch_users})")
    io.check_writable(out, overwrite)
    on_stage(f"reading {data}")
    lf = join_side_tables(io.scan(data), data, model.schema.user_col, model.schema.item_col,
                          users_table, items_table)
    frame = io.collect(lf, data)
    expected = model.rowmodel.template.columns
    missing = [c for c in expected if c not in frame.columns]
    surplus = [c for c in frame.columns if c not in expected]
    if missing or surplus:
        what = (f"lacks column {missing[0]!r}" if missing
                else f"has column {surplus[0]!r}")
        hint = "" if users_table or items_table else \
            "; a model fitted with --users/--items needs the same side tables here"
        raise DataError(f"{data}: {what} unlike the log the model was fitted on "
                        f"(columns: {', '.join(expected)}){hint}")
    fitted = model.rowmodel.template.schema
    for c in expected:
        if frame.schema[c] != fitted[c]:
            raise DataError(f"{data}: column {c!r} is {frame.schema[c]} here but {fitted[c]} in "
                            "the log the model was fitted on; cast it")
    check_keys(frame, data, [model.schema.user_col, model.schema.item_col])
    if mark and MARK_COL in frame.columns:
        raise DataError(f"{data}: already has a column {MARK_COL!r}; drop --mark-synthetic")
    user = model.schema.user_col
    real_users = frame.get_column(user).unique()
    n_new = max(1, round(ratio * len(real_users)))
    groups, extra = plan_groups(strategy, column, model, frame, n_new, filter_quantile, data,
                                on_stage)
    model = dataclasses.replace(model, user_key=new_key_info(real_users, model))

    real = frame.with_columns(pl.lit(False).alias(MARK_COL)) if mark else frame
    target = real.to_arrow().schema
    summary_groups, rows, generated, start, b = [], 0, 0, 0, 0
    with io.atomic_path(out, overwrite) as tmp:
        writer = pq.ParquetWriter(str(tmp), target)
        try:
            writer.write_table(real.to_arrow())
            for group in groups:
                on_stage(f"generating {group.n_users} synthetic users ({group.label})")
                g_rows = 0
                for lo in range(0, group.n_users, batch_users):
                    n = min(batch_users, group.n_users - lo)
                    syn = generate_batch(model, seed, b, start, n, group.shaping)
                    syn = syn.select(frame.columns).cast(dict(frame.schema))
                    if mark:
                        syn = syn.with_columns(pl.lit(True).alias(MARK_COL))
                    writer.write_table(syn.to_arrow().cast(target))
                    m = n * (group.shaping.tail_oversample if group.shaping.tail is not None
                             else 1)
                    generated += candidates(m, group.shaping.filter_quantile)
                    g_rows += syn.height
                    start += n
                    b += 1
                summary_groups.append({"label": group.label, "users": group.n_users,
                                       "rows": g_rows,
                                       "condition": {} if group.shaping.plan is None
                                       else group.shaping.plan.describe})
                rows += g_rows
        finally:
            writer.close()
    return {"schema_version": SUMMARY_SCHEMA_VERSION, "strategy": strategy_text,
            "ratio": ratio, "seed": seed, "filter_quantile": filter_quantile, "data": data,
            "out": out, "real": {"users": len(real_users), "rows": frame.height},
            "synthetic": {"users": start, "rows": rows, "generated_candidates": generated,
                          "user_keys": model.user_key},
            "mark_column": MARK_COL if mark else None, "groups": summary_groups, **extra}
