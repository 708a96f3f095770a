"""Timestamps of synthetic rows: a start per user, pooled within-user gaps, calibrated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import polars as pl

from recsynth.rowvalues import GLOBAL_GRID, GLOBAL_KNOTS, ks_statistic


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
    displacement at its middle row, which keeps every gap exactly; "none" leaves it. Fit
    simulates the timeline on the real users' row counts and keeps the mode with the best
    max(timestamp KS, gap KS) on a second simulation.
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
        base = cls(np.quantile(t[first].astype(np.float64), GLOBAL_GRID),
                   float(np.mean(gaps == 0)) if gaps.size else 1.0,
                   np.quantile(positive, GLOBAL_GRID) if positive.size else np.empty(0),
                   tmin, int(t.max()), step)
        return base._calibrated(first, t, gaps)

    def _calibrated(self, first: np.ndarray, real: np.ndarray, real_gaps: np.ndarray
                    ) -> Timeline:
        """Pick the mode that best matches the real times and gaps on the real row counts."""
        if real.size < 2 or self.tmax <= self.tmin:
            return self
        simulated = self._raw(first, np.random.default_rng(0))
        map_from = np.quantile(simulated.astype(np.float64), GLOBAL_GRID)
        map_to = np.quantile(real.astype(np.float64), GLOBAL_GRID)
        check = self._raw(first, np.random.default_rng(1))
        best, best_score = self, np.inf
        for mode in self.MODES:
            cand = Timeline(self.start_knots, self.gap_zero, self.gap_knots, self.tmin,
                            self.tmax, self.step, mode, map_from, map_to)
            times = cand._placed(check, first)
            drawn_gaps = np.diff(times)[~first[1:]]
            score = max(ks_statistic(times, real),
                        ks_statistic(drawn_gaps, real_gaps) if real_gaps.size else 0.0)
            if score < best_score - 1e-9:
                best, best_score = cand, score
        return best

    def draw(self, first: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Times per row and whether each row is later than the user's previous row."""
        times = self._placed(self._raw(first, rng), first)
        later = np.zeros(first.size, dtype=bool)
        later[1:] = (times[1:] > times[:-1]) & ~first[1:]
        return times, later

    def _raw(self, first: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Start + pooled gaps, before calibration.

        A timeline longer than the real window is compressed into it rather than clipped,
        so heavy users keep distinct sessions instead of piling up at the real maximum.
        """
        m = first.size
        heads = np.flatnonzero(first)
        u_start = rng.random(heads.size)
        u_gap = rng.random((2, m))
        positive = ~first & (u_gap[0] >= self.gap_zero) & (self.gap_knots.size > 0)
        gaps = np.zeros(m, dtype=np.int64)
        if positive.any():
            drawn = np.interp(u_gap[1, positive], GLOBAL_GRID, self.gap_knots) / self.step
            gaps[positive] = np.maximum(np.rint(drawn), 1).astype(np.int64) * self.step
        if m == 0:
            return gaps
        owner = np.cumsum(first) - 1
        running = np.cumsum(gaps)
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
        return cls(start, float(meta["gap_zero"]), gaps, int(meta["min"]), int(meta["max"]),
                   step, mode, maps[0], maps[1])
