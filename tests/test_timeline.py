"""Synthetic timelines: per-user spans follow the real users', not only the pooled gaps."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest
from scipy.stats import ks_2samp

from recsynth import timeline as timeline_module
from recsynth.timeline import Timeline

HOUR = 3600 * 10**6  # the physical unit of a microsecond datetime


def _log(n_users: int = 200, seed: int = 0) -> pl.DataFrame:
    """Half the users binge (everything within minutes), half come back over weeks."""
    rng = np.random.default_rng(seed)
    start = datetime(2024, 1, 1)
    users, times = [], []
    for u in range(n_users):
        n = int(rng.integers(5, 40))
        unit = timedelta(minutes=1) if u % 2 else timedelta(days=1)
        t = start + timedelta(days=float(rng.uniform(0, 300)))
        for _ in range(n):
            users.append(u)
            times.append(t)
            t += unit * float(rng.exponential(3.0))
    return pl.DataFrame({"u": users, "t": times})


def _first(frame: pl.DataFrame) -> np.ndarray:
    u = frame.sort("u", "t").get_column("u").to_numpy()
    first = np.ones(u.size, dtype=bool)
    first[1:] = u[1:] != u[:-1]
    return first


def _spans(times: np.ndarray, first: np.ndarray) -> np.ndarray:
    heads = np.flatnonzero(first)
    ends = np.append(heads[1:] - 1, first.size - 1)
    return times[ends] - times[heads]


@pytest.mark.parametrize("score_rows", [None, 3000])
def test_spans_follow_the_real_users_not_the_pooled_gaps(score_rows: int | None,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Also when only a sample of whole users scores the candidates (large logs)."""
    if score_rows is not None:
        monkeypatch.setattr(timeline_module, "SCORE_ROWS", score_rows)
    frame = _log()
    first = _first(frame)
    real = _spans(frame.sort("u", "t").get_column("t").to_physical().to_numpy(), first)
    timeline = Timeline.fit(frame, "u", "t")
    assert timeline is not None and timeline.sessions is not None
    times, _ = timeline.draw(first, np.random.default_rng(1))
    drawn = _spans(times, first)
    short = 3 * HOUR
    # pooled gaps gave every user some day-long gaps: none spanned under 3 h
    assert np.mean(drawn < short) == pytest.approx(np.mean(real < short), abs=0.1)
    assert ks_2samp(drawn, real).statistic < 0.2
    gaps = np.diff(times)[~first[1:]]
    real_gaps = np.diff(frame.sort("u", "t").get_column("t").to_physical().to_numpy())[~first[1:]]
    assert ks_2samp(gaps, real_gaps).statistic < 0.1


def test_sessions_survive_a_save_and_old_timelines_load_without() -> None:
    frame = _log(120, seed=3)
    first = _first(frame)
    timeline = Timeline.fit(frame, "u", "t")
    assert timeline is not None and timeline.sessions is not None
    restored = Timeline.restore(timeline.meta())
    a, _ = timeline.draw(first, np.random.default_rng(7))
    b, _ = restored.draw(first, np.random.default_rng(7))
    assert np.array_equal(a, b)
    old = {k: v for k, v in timeline.meta().items() if k != "sessions"}
    assert Timeline.restore(old).sessions is None  # a model saved before sessions
    bad = {**timeline.meta(), "sessions": {**timeline.meta()["sessions"], "share_knots": [[0.5]]}}
    with pytest.raises(ValueError, match="timeline: sessions"):
        Timeline.restore(bad)


def test_activity_bins_hold_enough_users_despite_ties() -> None:
    from recsynth.timeline import MIN_BIN_USERS, _bin_edges

    log_n = np.log(np.array([2] * 49 + [3] * 2 + [10] * 149, dtype=np.float64))
    edges = _bin_edges(log_n)
    counts = np.bincount(np.searchsorted(edges, log_n, side="right"), minlength=edges.size + 1)
    assert counts.sum() == 200 and counts.min() >= MIN_BIN_USERS  # was [49, 2, 0, 149]


def test_long_tempos_in_nanoseconds_stay_in_the_window_and_in_order() -> None:
    """Many breaks at a long tempo add up past 2^63 ns; the draw must not wrap around."""
    from recsynth.rowvalues import GLOBAL_GRID, GLOBAL_KNOTS
    from recsynth.timeline import Sessions

    window = 30 * 365 * 86400 * 10**9
    k = GLOBAL_KNOTS
    sessions = Sessions(gap=3600e9, edges=np.empty(0), share_knots=np.full((1, k), 0.5),
                        between_knots=np.linspace(1e15, 1e17, k),
                        tempo_knots=np.full((1, k), np.log(50.0)))
    timeline = Timeline(GLOBAL_GRID * window, 0.5, np.linspace(1e9, 1e11, k), 0, window,
                        10**9, sessions=sessions)
    first = np.zeros(200 * 2000, dtype=bool)
    first[::2000] = True
    times, _ = timeline.draw(first, np.random.default_rng(0))
    assert times.min() >= 0 and times.max() <= window
    assert (np.diff(times)[~first[1:]] >= 0).all()


def test_damaged_session_knots_are_refused() -> None:
    timeline = Timeline.fit(_log(120, seed=3), "u", "t")
    assert timeline is not None and timeline.sessions is not None
    meta = timeline.meta()
    shares = np.asarray(meta["sessions"]["share_knots"])
    three = np.concatenate([shares, shares[:1]])  # knots for three bins
    for damage in ({"tempo_knots": np.full_like(shares, 800.0).tolist()},
                   {"share_knots": np.full_like(shares, 2.0).tolist()},
                   {"edges": [3.0, 2.0], "share_knots": three.tolist()}):
        damaged = {**meta, "sessions": {**meta["sessions"], **damage}}
        with pytest.raises(ValueError, match="timeline: session"):
            Timeline.restore(damaged)
    assert Timeline.restore({**meta, "sessions": {**meta["sessions"], "edges": [2.0, 3.0],
                                                  "share_knots": three.tolist()}})


def test_pooled_gaps_near_the_window_in_nanoseconds_do_not_wrap() -> None:
    from recsynth.rowvalues import GLOBAL_GRID

    window = 30 * 365 * 86400 * 10**9
    timeline = Timeline(GLOBAL_GRID * window, 0.0, GLOBAL_GRID * window / 2, 0, window, 10**9)
    first = np.zeros(200 * 60, dtype=bool)
    first[::60] = True
    times, _ = timeline.draw(first, np.random.default_rng(0))
    assert times.min() >= 0 and times.max() <= window  # was -9.2e18: the sums wrapped
    assert (np.diff(times)[~first[1:]] >= 0).all()


def test_breaks_survive_compression_on_a_daily_grid() -> None:
    """A user drawn longer than the window is compressed as a whole, so its breaks stay
    longer than its within-session gaps (scaling each gap first made them all one day)."""
    from recsynth.rowvalues import GLOBAL_GRID, GLOBAL_KNOTS
    from recsynth.timeline import Sessions

    day = 86400
    k = GLOBAL_KNOTS
    sessions = Sessions(gap=2.0 * day, edges=np.empty(0), share_knots=np.full((1, k), 0.2),
                        between_knots=np.full(k, 30.0 * day))
    timeline = Timeline(GLOBAL_GRID * 365 * day, 0.5, np.full(k, 1.0 * day), 0, 365 * day, day,
                        sessions=sessions)
    first = np.zeros(300, dtype=bool)
    first[0] = True
    times, _ = timeline.draw(first, np.random.default_rng(0))
    gaps = np.diff(times)
    assert times.max() - times.min() <= 365 * day
    assert (gaps >= 5 * day).sum() >= 40  # the ~60 breaks, compressed from 30 days
