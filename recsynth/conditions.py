"""Conditional generation: who a synthetic user is (attributes, activity) decides their history.

Learned at fit time from the real users' codes, in closed form (the same code space the
GAN and the Gaussian mixture work in): for every value v of a user-level attribute,

- p(k | v): how the v-users spread over the mixture components (soft assignments,
  smoothed towards the overall weights), and
- δ_v: the v-users' mean offset from their components' means (taste, activity and liked
  share together), shrunk towards 0 for small groups.

A `--where gender=F` user is drawn as μ_k + L_k·G(ε, k, c_F) + δ_F with k ~ p(k | F), where
c_F is the one-hot condition vector of F and G the GAN's residual generator, trained with
training-by-sampling (condsampler.py) against a critic that sees (code, condition): the
closed-form group statistics are the start, and the adversarial game corrects what they
miss within the group. The history is typical of the group, not an attribute stamped on an
unconditional history. Several conditions combine as a product of experts:
p(k | a, b) ∝ p(k | a)·p(k | b) / p(k) and δ = δ_a + δ_b; the generator, trained on one
value at a time, then gets no condition vector (an input it never saw would be a guess).
The attribute values written to the rows are a real attribute tuple drawn among those that
satisfy every condition.

Activity conditions hold exactly: codes are drawn by rejection on the item count they
decode to (so taste stays consistent with activity), and any user still missing after
`REJECTION_ROUNDS` gets an activity coordinate drawn from the admissible grid.

Only aggregates are kept (counts, component shares, one offset per value); values held by
fewer than MIN_GROUP_USERS real users cannot be conditioned on, so no offset is one
user's code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl
import torch
from scipy.linalg import solve_triangular
from scipy.special import logsumexp

from recsynth.decode import counts_from_codes
from recsynth.errors import DataError, UsageError
from recsynth.latent import CODE_CHUNK, ClosedForm
from recsynth.rowmodel import MIN_TUPLE_USERS
from recsynth.schema import Schema

FILE = "conditions.json"
MAX_VALUES = 50  # an attribute with more distinct values (a zip code) is not a condition
MIN_GROUP_USERS = 5  # fewer real users: the group's offset would describe single users
WEIGHT_PRIOR = 1.0  # pseudo-users pulling p(k | v) towards the overall weights
SHIFT_PRIOR = 2.0  # pseudo-users pulling δ_v towards 0
REJECTION_ROUNDS = 8
SCORE_GRID = np.linspace(-6.0, 6.0, 24001)  # activity normal scores tried for the fallback
ACTIVITY_LEVELS = ("low", "mid", "high")  # terciles of the real users' item counts


@dataclass(frozen=True)
class AttributeStats:
    """Per value of one user-level attribute (values as strings, as `--where` gives them)."""

    values: list[str]
    users: np.ndarray  # (V,) real users holding each value
    weights: np.ndarray  # (V, K) p(component | value)
    shift: np.ndarray  # (V, dim) mean code offset of the value's users


@dataclass(frozen=True)
class Conditions:
    columns: dict[str, AttributeStats]

    def save(self, directory: Path) -> None:
        data = {"columns": {c: {"values": s.values, "users": s.users.tolist(),
                                "weights": s.weights.tolist(), "shift": s.shift.tolist()}
                            for c, s in self.columns.items()}}
        (directory / FILE).write_text(json.dumps(data) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> Conditions | None:
        """None for a model directory written before conditional sampling existed."""
        path = directory / FILE
        if not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls({c: AttributeStats(list(map(str, s["values"])),
                                      np.asarray(s["users"], dtype=np.int64),
                                      np.asarray(s["weights"], dtype=np.float64),
                                      np.asarray(s["shift"], dtype=np.float64))
                    for c, s in data["columns"].items()})


def responsibilities(codes: np.ndarray, form: ClosedForm) -> np.ndarray:
    """(users, K) posterior probability of each mixture component for each code."""
    logp = np.empty((len(codes), form.n_components))
    for lo in range(0, len(codes), CODE_CHUNK):  # users x dim temporaries, chunk by chunk
        part = codes[lo:lo + CODE_CHUNK]
        for k in range(form.n_components):
            chol = form.chols[k]
            z = solve_triangular(chol, (part - form.means[k]).T, lower=True)
            logp[lo:lo + len(part), k] = (np.log(max(form.weights[k], 1e-300))
                                          - 0.5 * (z ** 2).sum(axis=0)
                                          - np.log(np.diag(chol)).sum())
    return np.exp(logp - logsumexp(logp, axis=1, keepdims=True))


def conditionable_columns(schema: Schema) -> list[str]:
    return [c.name for c in schema.user_attributes() if c.role in ("categorical", "numeric")]


def fit_conditions(codes: np.ndarray, form: ClosedForm, per_user: pl.DataFrame,
                   schema: Schema, users: pl.Series
                   ) -> tuple[Conditions | None, np.ndarray | None]:
    """Group statistics per attribute value; `codes[i]` belongs to `users[i]`; `per_user`
    has one row per user key with its attribute values.

    Also returns each user's value index per kept column (users x columns, -1 for null),
    which training-by-sampling draws real users of a value from; it is never saved.
    (None, None) when no attribute can be conditioned on.
    """
    cols = [c for c in conditionable_columns(schema) if c in per_user.columns]
    if not cols:
        return None, None
    user = schema.user_col
    aligned = pl.DataFrame({user: users}).join(per_user, on=user, how="left",
                                               maintain_order="left")
    resp = responsibilities(codes, form)
    out: dict[str, AttributeStats] = {}
    labels: list[np.ndarray] = []
    for col in cols:
        names = aligned.get_column(col).cast(pl.String)
        values = names.drop_nulls().unique().sort().to_list()
        if not 1 <= len(values) <= MAX_VALUES:
            continue
        index = names.replace_strict(values, list(range(len(values))), default=-1,
                                     return_dtype=pl.Int32).fill_null(-1).to_numpy()
        counts, weights, shifts = [], [], []
        for j in range(len(values)):
            mask = index == j
            n = int(mask.sum())
            counts.append(n)
            if n < MIN_GROUP_USERS:  # refused at sampling: keep nothing of these users
                weights.append(form.weights.copy())
                shifts.append(np.zeros(codes.shape[1]))
                continue
            weights.append((resp[mask].sum(axis=0) + WEIGHT_PRIOR * form.weights)
                           / (n + WEIGHT_PRIOR))
            # the summed residual codes - resp @ means, without a users x dim residual
            residual = codes[mask].sum(axis=0, dtype=np.float64) \
                - resp[mask].sum(axis=0) @ form.means
            shifts.append(residual / (n + SHIFT_PRIOR))
        out[col] = AttributeStats(values, np.array(counts), np.array(weights), np.array(shifts))
        labels.append(index)
    if not out:
        return None, None
    return Conditions(out), np.stack(labels, axis=1).astype(np.int32)


def offsets(conditions: Conditions) -> dict[str, int]:
    """Where each column's one-hot block starts in the condition vector (columns in order)."""
    starts = np.cumsum([0] + [len(s.values) for s in conditions.columns.values()])
    return dict(zip(conditions.columns, starts[:-1].tolist(), strict=False))


def width(conditions: Conditions | None) -> int:
    """Length of the condition vector the generator and critic take (0: none)."""
    return 0 if conditions is None else sum(len(s.values) for s in conditions.columns.values())


# ------------------------------------------------------------------ requests → plan

@dataclass(frozen=True)
class Request:
    """What every generated user must satisfy."""

    where: tuple[tuple[str, str], ...] = ()
    activity: str | None = None
    min_items: int | None = None
    max_items: int | None = None

    @property
    def empty(self) -> bool:
        return not self.where and self.activity is None and self.min_items is None \
            and self.max_items is None


def parse_where(items: list[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for text in items:
        col, sep, value = text.partition("=")
        if not sep or not col.strip():
            raise UsageError(f"--where {text!r}: expected COLUMN=VALUE (e.g. gender=F)")
        out.append((col.strip(), value.strip()))
    cols = [c for c, _ in out]
    dup = next((c for c in cols if cols.count(c) > 1), None)
    if dup is not None:
        raise UsageError(f"--where: column {dup!r} given twice (one value per column)")
    return tuple(out)


@dataclass(frozen=True)
class Plan:
    """A resolved request: how to draw codes and attribute tuples that satisfy it."""

    weights: np.ndarray | None  # component probabilities (None: the model's own)
    shift: np.ndarray | None  # added to every code
    item_range: tuple[int, int] | None  # inclusive bounds on distinct items per user
    scores: np.ndarray | None  # admissible activity normal scores (the fallback grid)
    score_probs: np.ndarray | None
    tuples: pl.DataFrame | None  # real attribute tuples satisfying `where`, with user counts
    describe: dict
    vector: np.ndarray | None = None  # the generator's condition input (one-hot per value)


def activity_bounds(form: ClosedForm, n_items: int, level: str) -> tuple[int, int]:
    """Item-count range of a tercile of the real users' activity."""
    if level not in ACTIVITY_LEVELS:
        raise UsageError(f"--activity {level!r}: use low, mid or high")
    # exp(log 5) is 4.999…: the epsilon keeps an integer quantile in its own tercile
    cut = [int(np.floor(np.exp(form.activity.quantile(p)) + 1e-9)) for p in (1/3, 2/3)]
    lo = {"low": 1, "mid": cut[0] + 1, "high": cut[1] + 1}[level]
    hi = {"low": cut[0], "mid": cut[1], "high": n_items}[level]
    return lo, hi


def grid_counts(form: ClosedForm, n_items: int) -> np.ndarray:
    """Distinct items decoded from each activity score of SCORE_GRID (see counts_from_codes)."""
    log_act = form.log_activity(SCORE_GRID)
    return np.clip(np.rint(np.exp(log_act)), 1, n_items).astype(np.int64)


def resolve(request: Request, form: ClosedForm, conditions: Conditions | None,
            user_tuples: pl.DataFrame | None, n_items: int) -> Plan:
    """Check a request against the model and turn it into a Plan; errors name the problem.

    Unknown column or value: UsageError (exit 2). A combination the model cannot produce
    (no real user tuple has it, a group too small, an item range outside the real one):
    DataError (exit 3). Nothing has been written when either is raised.
    """
    describe: dict = {}
    weights = shift = tuples = vector = None
    if request.where:
        columns = {} if conditions is None else conditions.columns
        if not columns:
            raise UsageError("--where: this model has no user-level attribute to condition "
                             "on (refit with attribute columns in the log, e.g. gender)")
        log_w = np.log(form.weights)
        total_log = np.zeros_like(log_w)
        shift = np.zeros(form.dim)
        vector = np.zeros(width(conditions), dtype=np.float32)
        starts = offsets(conditions)
        tuples = user_tuples
        for col, value in request.where:
            if col not in columns:
                raise UsageError(f"--where {col}={value}: unknown column {col!r} (conditionable: "
                                 f"{', '.join(sorted(columns))})")
            stats = columns[col]
            if value not in stats.values:
                shown = ", ".join(stats.values[:10]) + (", …" if len(stats.values) > 10 else "")
                raise UsageError(f"--where {col}={value}: unknown value {value!r} of column "
                                 f"{col!r} (values: {shown})")
            j = stats.values.index(value)
            if stats.users[j] < MIN_GROUP_USERS:
                raise DataError(f"--where {col}={value}: only {stats.users[j]} real user(s) hold "
                                f"this value; at least {MIN_GROUP_USERS} are needed to learn it")
            total_log += np.log(stats.weights[j]) - log_w
            shift = shift + stats.shift[j]
            vector[starts[col] + j] = 1.0
            if tuples is not None:
                tuples = tuples.filter(pl.col(col).cast(pl.String) == value)
        if tuples is None or tuples.height == 0:
            text = " and ".join(f"{c}={v}" for c, v in request.where)
            raise DataError(f"--where {text}: no combination of these values is held by the "
                            f"{MIN_TUPLE_USERS} or more real users a synthetic user's "
                            f"attributes must come from")
        combined = log_w + total_log
        weights = np.exp(combined - logsumexp(combined))
        if len(request.where) > 1:  # training-by-sampling shows G one value at a time
            vector = None
        describe["where"] = dict(request.where)
    item_range = _item_range(request, form, n_items)
    scores = probs = None
    if item_range is not None:
        counts = grid_counts(form, n_items)
        ok = (counts >= item_range[0]) & (counts <= item_range[1])
        if not ok.any():
            raise DataError(f"--min-items/--max-items/--activity: no user can have "
                            f"{item_range[0]}..{item_range[1]} items; the model's users have "
                            f"{counts.min()}..{counts.max()}")
        scores = SCORE_GRID[ok]
        density = _score_density(form)[ok]
        if density.sum() <= 0:  # only scores beyond every generated one reach the range
            density = np.ones_like(density)
        probs = density / density.sum()
        describe["items"] = {"min": item_range[0], "max": item_range[1]}
    return Plan(weights, shift, item_range, scores, probs, tuples, describe, vector)


def _score_density(form: ClosedForm) -> np.ndarray:
    """How the generated activity coordinate spreads over SCORE_GRID: the normal density,
    or after score calibration the generated coordinate's own (its CDF's increments)."""
    if form.activity_scores is None:
        return np.exp(-0.5 * SCORE_GRID ** 2)
    return np.diff(form.activity_scores.cdf(SCORE_GRID), prepend=0.0)


def _item_range(request: Request, form: ClosedForm, n_items: int) -> tuple[int, int] | None:
    if request.activity is None and request.min_items is None and request.max_items is None:
        return None
    lo, hi = 1, n_items
    if request.activity is not None:
        lo, hi = activity_bounds(form, n_items, request.activity)
    for name, v in (("--min-items", request.min_items), ("--max-items", request.max_items)):
        if v is not None and v < 1:
            raise UsageError(f"{name} must be at least 1 (got {v})")
    if request.min_items is not None and request.max_items is not None \
            and request.min_items > request.max_items:
        raise UsageError(f"--min-items/--max-items: empty item range "
                         f"{request.min_items}..{request.max_items}")
    allowed = (lo, hi)  # the model's: its catalog, or the --activity tercile
    if request.min_items is not None:
        lo = max(lo, request.min_items)
    if request.max_items is not None:
        hi = min(hi, request.max_items)
    if lo > hi:  # the options agree with each other but not with this model
        raise DataError(f"--min-items/--max-items/--activity: no synthetic user of this model "
                        f"can have {lo}..{hi} items (it allows {allowed[0]}..{allowed[1]})")
    return lo, hi


# ------------------------------------------------------------------ drawing

def draw_codes(plan: Plan, form: ClosedForm, n_items: int, n: int, sample, gen: torch.Generator
               ) -> torch.Tensor:
    """n codes satisfying the plan; `sample(form, m, gen)` draws m unconditional codes."""
    drawing = form if plan.weights is None else replace(form, weights=plan.weights)

    def draw(m: int) -> torch.Tensor:
        x = sample(drawing, m, gen)
        return x if plan.shift is None else x + torch.from_numpy(plan.shift).to(x.dtype)

    if plan.item_range is None:
        return draw(n)
    lo, hi = plan.item_range
    kept: list[torch.Tensor] = []
    have = 0
    last = None
    for _ in range(REJECTION_ROUNDS):
        if have >= n:
            break
        last = draw(max(4 * (n - have), 64))
        total, _ = counts_from_codes(last, form, n_items)
        ok = torch.nonzero((total >= lo) & (total <= hi)).squeeze(1)[: n - have]
        kept.append(last[ok])
        have += len(ok)
    if have < n:  # rare ranges: keep the drawn taste, put the activity inside the range
        fill = draw(n - have).clone()
        pick = torch.multinomial(torch.from_numpy(plan.score_probs), n - have,
                                 replacement=True, generator=gen).numpy()
        fill[:, form.rank] = torch.from_numpy(plan.scores[pick]).to(fill.dtype)
        kept.append(fill)
    return torch.cat(kept)[:n]


def draw_tuples(plan: Plan, rng: np.random.Generator, n: int, count_col: str
                ) -> pl.DataFrame | None:
    """n attribute tuples among the real ones satisfying the plan, by how many users hold each."""
    if plan.tuples is None:
        return None
    weights = plan.tuples.get_column(count_col).to_numpy().astype(np.float64)
    pick = rng.choice(len(weights), size=n, p=weights / weights.sum())
    return plan.tuples.drop(count_col).select(pl.all().gather(pick))
