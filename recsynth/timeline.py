"""Timestamps of synthetic rows: a start per user, within-user gaps (pooled, or in
sessions whose breaks follow real users of like activity), calibrated."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import polars as pl

from recsynth.rowvalues import GLOBAL_GRID, GLOBAL_KNOTS, ks_statistic

SESSION_QUANTILES = (0.1, 0.5, 0.9, 0.95, 0.97)  # break thresholds tried, of positive gaps
MAX_ACTIVITY_BINS = 4
INT_SAFE = 2.0**62  # most a user's summed gaps may reach in int64 (see `_int_safe`)
MAX_LOG_TEMPO = 50.0  # a saved tempo beyond e^±50 is damage, not a fit (exp overflows near 709)
MIN_BIN_USERS = 50  # users (with two rows or more) behind each activity bin's knots
# whole users, about this many rows, score the candidate timelines: scoring all of a 2 M-row
# sample took 23 s (2.5 s with the pooled gaps alone); the knots still come from every row
SCORE_ROWS = 250_000
# simulations each candidate is scored on, up to CHECK_DRAWS or CHECK_ROWS rows in all: on
# 300 users one draw's timestamp KS was up to 0.03 off its mean over ten, enough to pick a
# candidate by its luck; on thousands of users one draw is steady, and the KS statistics
# are most of the cost (online-retail: 13 s with four draws)
CHECK_DRAWS = 4
CHECK_ROWS = 400_000
# spans are traded only among fits whose max(timestamp KS, gap KS) is within the check's
# noise of the best (SPAN_SLACK / sqrt(users scored): a KS statistic's spread over that
# many independent timelines) or within the fidelity bar TIME_KS_BAR. Scoring the max of
# all three let a 240-user log buy 0.013 of span KS with 0.06 of timestamp KS.
SPAN_SLACK = 0.25
TIME_KS_BAR = 0.05


@dataclass(frozen=True, eq=False)
class Sessions:
    """Gaps longer than `gap` break a user's history into sessions.

    Real users differ in how often they break: most MovieLens users rate everything in one
    evening, a few over months. Gaps pooled over all users give every synthetic user some
    of the long ones (median span 4.8 days against 0.03 real), so each synthetic user
    draws its share of breaks, and with `tempo_knots` a tempo τ scaling its break gaps,
    from the quantiles of real users in its activity bin (`edges`: inner bin edges of
    log row count). Break gaps come from `between_knots` (divided by their user's τ when
    fitted with tempo); gaps within sessions from the timeline's own zero mass and knots.
    """

    gap: float
    edges: np.ndarray
    share_knots: np.ndarray  # (bins, GLOBAL_KNOTS)
    between_knots: np.ndarray  # (GLOBAL_KNOTS,)
    tempo_knots: np.ndarray | None = None  # (bins, GLOBAL_KNOTS) of log τ

    @classmethod
    def fit(cls, first: np.ndarray, gaps: np.ndarray, gap: float, tempo: bool) -> Sessions:
        """From real rows grouped by user in time order (`first` per row) and the gaps
        between consecutive rows of a user (`gaps`, one per non-first row)."""
        row_owner = np.cumsum(first) - 1
        owner = row_owner[1:][~first[1:]]  # the user of each gap
        n = np.bincount(row_owner)
        breaks = gaps > gap
        multi = n >= 2
        log_n = np.log(n[multi])
        edges = _bin_edges(log_n)
        bins = edges.size + 1
        which = np.searchsorted(edges, np.log(np.maximum(n, 1)), side="right")
        share = np.bincount(owner, weights=breaks.astype(np.float64), minlength=n.size) \
            / np.maximum(n - 1, 1)
        share_knots = _knots_by_bin(share, which, multi, bins)
        between = gaps[breaks]
        tempo_knots = None
        if tempo:
            count = np.bincount(owner[breaks], minlength=n.size)
            has = count > 0
            log_tau = np.zeros(n.size)
            log_tau[has] = (np.bincount(owner[breaks], weights=np.log(between),
                                        minlength=n.size)[has] / count[has])
            between = between / np.exp(log_tau[owner[breaks]])
            tempo_knots = _knots_by_bin(log_tau, which, has, bins)
        return cls(gap, edges, share_knots, np.quantile(between, GLOBAL_GRID), tempo_knots)

    def draw(self, first: np.ndarray, rng: np.random.Generator, within_zero: float,
             within_knots: np.ndarray, step: int) -> np.ndarray:
        """Gaps per row (0 at each user's first row), multiples of `step`."""
        m = first.size
        owner = np.cumsum(first) - 1
        n = np.bincount(owner, minlength=int(first.sum()))
        which = np.searchsorted(self.edges, np.log(np.maximum(n, 1)), side="right")
        u_user = rng.random((2, n.size))
        share = _interp_by_bin(u_user[0], which, self.share_knots)
        tau = np.ones(n.size) if self.tempo_knots is None else \
            np.exp(_interp_by_bin(u_user[1], which, self.tempo_knots))
        u = rng.random((3, m))
        breaks = ~first & (u[0] < share[owner])
        within = ~first & ~breaks & (u[1] >= within_zero) & (within_knots.size > 0)
        drawn = np.zeros(m)
        drawn[within] = np.interp(u[2, within], GLOBAL_GRID, within_knots)
        drawn[breaks] = tau[owner[breaks]] * np.interp(u[2, breaks], GLOBAL_GRID,
                                                       self.between_knots)
        gaps = np.zeros(m, dtype=np.int64)
        positive = within | breaks
        gaps[positive] = np.maximum(np.rint(drawn[positive] / step), 1).astype(np.int64) * step
        return gaps

    def meta(self) -> dict[str, Any]:
        return {"gap": self.gap, "edges": self.edges.tolist(),
                "share_knots": self.share_knots.tolist(),
                "between_knots": self.between_knots.tolist(),
                "tempo_knots": None if self.tempo_knots is None else self.tempo_knots.tolist()}

    @classmethod
    def restore(cls, meta: dict) -> Sessions:
        edges = np.asarray(meta["edges"], dtype=np.float64).reshape(-1)
        bins = edges.size + 1
        share = np.asarray(meta["share_knots"], dtype=np.float64)
        between = np.asarray(meta["between_knots"], dtype=np.float64)
        tempo = None if meta.get("tempo_knots") is None else \
            np.asarray(meta["tempo_knots"], dtype=np.float64)
        knots = [share, between] + ([] if tempo is None else [tempo])
        if (share.shape != (bins, GLOBAL_KNOTS) or between.shape != (GLOBAL_KNOTS,)
                or (tempo is not None and tempo.shape != (bins, GLOBAL_KNOTS))
                or not all(np.isfinite(a).all() for a in [edges, *knots])
                or np.any(np.diff(edges) < 0)
                or any(np.any(np.diff(k, axis=-1) < 0) for k in knots)):
            raise ValueError(f"timeline: sessions need {bins} x {GLOBAL_KNOTS} share (and "
                             f"tempo) knots and {GLOBAL_KNOTS} break-gap knots, finite and "
                             "non-decreasing, and sorted edges")
        if (share.min() < 0 or share.max() > 1 or between.min() < 0
                or (tempo is not None and np.abs(tempo).max() > MAX_LOG_TEMPO)):
            raise ValueError("timeline: session shares must lie in [0, 1], break gaps be "
                             f"non-negative and log tempos within ±{MAX_LOG_TEMPO}")
        return cls(float(meta["gap"]), edges, share, between, tempo)


def _int_safe(gaps: np.ndarray, owner: np.ndarray, n_users: int, step: int) -> np.ndarray:
    """Gaps of users whose sum would pass INT_SAFE scaled down in proportion (in floats),
    so their int64 running totals cannot wrap: a long tempo times many breaks, or pooled
    gaps near a 30-year window, pass 2^63 in a nanosecond column. `_raw` compresses every
    timeline longer than the window anyway; others are left exactly as drawn."""
    total = np.bincount(owner, weights=gaps.astype(np.float64), minlength=n_users)
    over = total > INT_SAFE
    if not over.any():
        return gaps
    rows = over[owner]
    out = gaps.copy()
    scaled = gaps[rows] * (INT_SAFE / total[owner[rows]])
    out[rows] = np.floor(scaled / step).astype(np.int64) * step
    return out


def _bin_edges(log_n: np.ndarray) -> np.ndarray:
    """Inner edges of up to MAX_ACTIVITY_BINS quantile bins of log row count, each holding
    at least MIN_BIN_USERS users: ties at a quantile (many users of 2 rows) would leave
    a bin of a few users, so such a bin is merged into its neighbour. An edge sits at
    log(k - 0.5) for the least count k above it, not at log k, so no machine's rounding of
    a log moves a user of k rows across it."""
    if log_n.size == 0:
        return np.empty(0)
    bins = max(1, min(MAX_ACTIVITY_BINS, log_n.size // MIN_BIN_USERS))
    quantiles = np.quantile(log_n, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    edges = np.unique(np.log(np.ceil(np.exp(quantiles) - 1e-9) - 0.5))
    while edges.size:
        counts = np.bincount(np.searchsorted(edges, log_n, side="right"),
                             minlength=edges.size + 1)
        small = np.flatnonzero(counts < MIN_BIN_USERS)
        if small.size == 0:
            break
        edges = np.delete(edges, max(int(small[0]) - 1, 0))  # merge with the bin below
    return edges


def _whole_users(first: np.ndarray, t: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Random whole users (rows grouped by user) up to about `rows` rows, in their order."""
    if first.size <= rows:
        return first, t
    owner = np.cumsum(first) - 1
    n = np.bincount(owner)
    order = np.random.default_rng(0).permutation(n.size)
    keep = np.zeros(n.size, dtype=bool)
    keep[order[:int(np.searchsorted(np.cumsum(n[order]), rows)) + 1]] = True
    return first[keep[owner]], t[keep[owner]]


def _knots_by_bin(values: np.ndarray, which: np.ndarray, keep: np.ndarray, bins: int
                  ) -> np.ndarray:
    """GLOBAL_KNOTS quantiles of `values[keep]` within each bin; all bins pooled where a
    bin keeps fewer than MIN_BIN_USERS users (a tempo of users with breaks, say), so no
    bin's knots are a handful of users' own values."""
    pooled = np.quantile(values[keep], GLOBAL_GRID) if keep.any() else np.zeros(GLOBAL_KNOTS)
    return np.stack([np.quantile(values[keep & (which == b)], GLOBAL_GRID)
                     if (keep & (which == b)).sum() >= MIN_BIN_USERS else pooled
                     for b in range(bins)])


def _interp_by_bin(u: np.ndarray, which: np.ndarray, knots: np.ndarray) -> np.ndarray:
    out = np.empty(u.size)
    for b in range(len(knots)):
        sel = which == b
        out[sel] = np.interp(u[sel], GLOBAL_GRID, knots[b])
    return out


@dataclass(frozen=True, eq=False)
class Timeline:
    """Per-user start times and within-user gaps, in the column's physical integer unit.

    Times come out on the real grid `tmin + k * step` (step: the gcd of real offsets, e.g.
    one minute for online-retail), so no sub-second noise appears in minute-level logs.

    Start + pooled gaps alone misplace rows in time (heavy users' timelines stretch, and
    real activity is not uniform over the window), so a calibration maps the drawn times
    towards the real marginal: `mode` "warp" sends every time through the monotone map
    from the quantiles of drawn times (`map_from`) to the real ones (`map_to`), which keeps
    per-user order and zero gaps; "shift" moves each user's whole timeline by that map's
    displacement at its middle row, which keeps every gap exactly; "none" leaves it.

    Gaps are pooled over all users, or drawn in `sessions` (see `Sessions`; then
    `gap_zero` and `gap_knots` describe the gaps within a session). Fit simulates each
    candidate (pooled, and sessions at each threshold of SESSION_QUANTILES with and without
    a tempo) with each mode on the real users' row counts and keeps, on 1 to CHECK_DRAWS
    further simulations, the best mean per-user span KS among those whose mean max(timestamp KS,
    gap KS) is near the best (SPAN_SLACK, TIME_KS_BAR).
    """

    start_knots: np.ndarray
    gap_zero: float
    gap_knots: np.ndarray
    tmin: int
    tmax: int
    step: int
    mode: str = "none"
    map_from: np.ndarray | None = None
    map_to: np.ndarray | None = None
    sessions: Sessions | None = None

    MODES: ClassVar[tuple[str, ...]] = ("none", "shift", "warp")

    @classmethod
    def fit(cls, frame: pl.DataFrame, user: str, time: str) -> Timeline | None:
        df = (frame.select(pl.col(user).alias("u"),
                           pl.col(time).to_physical().cast(pl.Int64).alias("t"))
              .drop_nulls("t").sort("u", "t"))
        if df.height == 0:
            return None
        t = df.get_column("t").to_numpy()
        first = df.select((pl.col("u") != pl.col("u").shift()).fill_null(True)).to_series()
        first = first.to_numpy()
        gaps = np.diff(t)[~first[1:]].astype(np.float64)
        positive = gaps[gaps > 0]
        tmin = int(t.min())
        step = int(np.gcd.reduce(t - tmin)) or 1
        pooled = cls(np.quantile(t[first].astype(np.float64), GLOBAL_GRID),
                     float(np.mean(gaps == 0)) if gaps.size else 1.0,
                     np.quantile(positive, GLOBAL_GRID) if positive.size else np.empty(0),
                     tmin, int(t.max()), step)
        thresholds = np.quantile(positive, SESSION_QUANTILES) if positive.size else []
        candidates = [pooled] + [pooled._in_sessions(first, gaps, float(h), tempo)
                                 for h in thresholds for tempo in (False, True)]
        first_s, t_s = _whole_users(first, t, SCORE_ROWS)
        gaps_s = np.diff(t_s)[~first_s[1:]].astype(np.float64)
        draws = int(np.clip(CHECK_ROWS // max(first_s.size, 1), 1, CHECK_DRAWS))
        options = [o for c in candidates if c is not None
                   for o in c._calibrations(first_s, t_s, gaps_s, draws)]
        slack = SPAN_SLACK / np.sqrt(max(int(first_s.sum()), 1))
        allowed = max(min(o[1] for o in options) + slack, TIME_KS_BAR)
        # ties keep the earlier: pooled before sessions, "none" before "shift" and "warp"
        return min((o for o in options if o[1] <= allowed), key=lambda o: (o[2], o[1]))[0]

    def _in_sessions(self, first: np.ndarray, gaps: np.ndarray, threshold: float, tempo: bool
                     ) -> Timeline | None:
        """This timeline with gaps above `threshold` as session breaks (None where no gap
        is above it)."""
        if not (gaps > threshold).any():
            return None
        within = gaps[gaps <= threshold]
        inner = within[within > 0]
        return replace(self, gap_zero=float(np.mean(within == 0)) if within.size else 1.0,
                       gap_knots=np.quantile(inner, GLOBAL_GRID) if inner.size else np.empty(0),
                       sessions=Sessions.fit(first, gaps, threshold, tempo))

    def _calibrations(self, first: np.ndarray, real: np.ndarray, real_gaps: np.ndarray,
                      draws: int = CHECK_DRAWS) -> list[tuple[Timeline, float, float]]:
        """This timeline in each mode, with max(timestamp KS, gap KS) and span KS against
        the real rows on the real row counts (itself and inf where nothing calibrates)."""
        if real.size < 2 or self.tmax <= self.tmin:
            return [(self, np.inf, np.inf)]
        heads = np.flatnonzero(first)
        ends = np.append(heads[1:] - 1, first.size - 1)
        real_spans = real[ends] - real[heads]
        simulated = self._raw(first, np.random.default_rng(0))
        map_from = np.quantile(simulated.astype(np.float64), GLOBAL_GRID)
        map_to = np.quantile(real.astype(np.float64), GLOBAL_GRID)
        checks = [self._raw(first, np.random.default_rng(1 + k)) for k in range(draws)]
        out = []
        for mode in self.MODES:
            cand = replace(self, mode=mode, map_from=map_from, map_to=map_to)
            scores = []
            for check in checks:
                times = cand._placed(check, first)
                drawn_gaps = np.diff(times)[~first[1:]]
                fit = max(ks_statistic(times, real),
                          ks_statistic(drawn_gaps, real_gaps) if real_gaps.size else 0.0)
                scores.append((fit, ks_statistic(times[ends] - times[heads], real_spans)))
            fit, span = np.mean(scores, axis=0)
            out.append((cand, float(fit), float(span)))
        return out

    def draw(self, first: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Times per row and whether each row is later than the user's previous row."""
        times = self._placed(self._raw(first, rng), first)
        later = np.zeros(first.size, dtype=bool)
        later[1:] = (times[1:] > times[:-1]) & ~first[1:]
        return times, later

    def _raw(self, first: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Start + gaps (pooled or in sessions), before calibration.

        A timeline longer than the real window is compressed into it rather than clipped,
        so heavy users keep distinct sessions instead of piling up at the real maximum.
        """
        m = first.size
        heads = np.flatnonzero(first)
        u_start = rng.random(heads.size)
        if self.sessions is not None:
            gaps = self.sessions.draw(first, rng, self.gap_zero, self.gap_knots, self.step)
        else:
            u_gap = rng.random((2, m))
            positive = ~first & (u_gap[0] >= self.gap_zero) & (self.gap_knots.size > 0)
            gaps = np.zeros(m, dtype=np.int64)
            if positive.any():
                drawn = np.interp(u_gap[1, positive], GLOBAL_GRID, self.gap_knots) / self.step
                gaps[positive] = np.maximum(np.rint(drawn), 1).astype(np.int64) * self.step
        if m == 0:
            return gaps
        owner = np.cumsum(first) - 1
        gaps = _int_safe(gaps, owner, heads.size, self.step)
        running = np.cumsum(gaps)  # wraps across users, not within one: offsets stay exact
        offset = running - running[heads][owner]
        span = offset[np.append(heads[1:] - 1, m - 1)]
        window = self.tmax - self.tmin
        too_long = span > window
        if too_long.any():
            rows = too_long[owner]
            scale = window / span[owner[rows]]
            offset[rows] = np.floor(offset[rows] * scale / self.step).astype(np.int64) * self.step
            span = np.minimum(span, window)
        start = np.interp(u_start, GLOBAL_GRID, self.start_knots) - self.tmin
        start = self.tmin + np.rint(start / self.step).astype(np.int64) * self.step
        start = np.maximum(np.minimum(start, self.tmax - span), self.tmin)
        return np.minimum(start[owner] + offset, self.tmax)

    def _placed(self, times: np.ndarray, first: np.ndarray) -> np.ndarray:
        """Apply the calibration `mode` to raw times (rows grouped by user, in time order)."""
        if self.mode == "none" or times.size == 0 or self.map_from is None:
            return times
        assert self.map_to is not None
        if self.mode == "warp":
            warped = np.interp(times.astype(np.float64), self.map_from, self.map_to)
            return self._snap(warped)
        heads = np.flatnonzero(first)
        ends = np.append(heads[1:] - 1, first.size - 1)
        owner = np.cumsum(first) - 1
        middle = times[(heads + ends) // 2].astype(np.float64)
        shift = np.interp(middle, self.map_from, self.map_to) - middle
        span = times[ends] - times[heads]
        start = self._snap(times[heads] + shift)
        start = np.maximum(np.minimum(start, self.tmax - span), self.tmin)
        return times - times[heads][owner] + start[owner]

    def _snap(self, values: np.ndarray) -> np.ndarray:
        """Nearest point of the real time grid, within [tmin, tmax]."""
        k = np.rint((values - self.tmin) / self.step).astype(np.int64)
        return np.clip(self.tmin + k * self.step, self.tmin, self.tmax)

    def meta(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "start_knots": self.start_knots.tolist(), "gap_zero": self.gap_zero,
            "gap_knots": self.gap_knots.tolist(), "min": self.tmin, "max": self.tmax,
            "step": self.step, "mode": self.mode}
        if self.map_from is not None and self.map_to is not None:
            out["map_from"] = self.map_from.tolist()
            out["map_to"] = self.map_to.tolist()
        if self.sessions is not None:
            out["sessions"] = self.sessions.meta()
        return out

    @classmethod
    def restore(cls, meta: dict) -> Timeline:
        start = np.asarray(meta["start_knots"], dtype=np.float64)
        gaps = np.asarray(meta["gap_knots"], dtype=np.float64)
        if start.size != GLOBAL_KNOTS or gaps.size not in (0, GLOBAL_KNOTS):
            raise ValueError(f"timeline: knots must hold {GLOBAL_KNOTS} numbers")
        step = int(meta["step"])
        if step < 1:
            raise ValueError("timeline: step must be a positive integer")
        mode = meta.get("mode", "none")
        if mode not in cls.MODES:
            raise ValueError(f"timeline: unknown mode {mode!r}")
        maps = [None if meta.get(k) is None else np.asarray(meta[k], dtype=np.float64)
                for k in ("map_from", "map_to")]
        if mode != "none":
            for knots in maps:
                if (knots is None or knots.size != GLOBAL_KNOTS
                        or not np.isfinite(knots).all() or np.any(np.diff(knots) < 0)):
                    raise ValueError(f"timeline: mode {mode!r} needs map_from and map_to "
                                     f"of {GLOBAL_KNOTS} non-decreasing numbers")
        sessions = None if meta.get("sessions") is None else Sessions.restore(meta["sessions"])
        return cls(start, float(meta["gap_zero"]), gaps, int(meta["min"]), int(meta["max"]),
                   step, mode, maps[0], maps[1], sessions)
