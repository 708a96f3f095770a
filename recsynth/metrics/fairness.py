"""Utility per user group and the gap between groups (Li et al., WWW 2021).

Groups are formed on the evaluated held-out users: by activity (top 5 % vs the rest, and
the bottom 20 %) and by every user attribute. Numeric attributes with many values are
cut into quartiles of the held-out users.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

MAX_LEVELS = 10  # numeric attributes with more distinct values are binned into quartiles
MIN_GROUP = 10  # smaller groups are reported but too noisy to define the gap


def activity_groups(activity: np.ndarray) -> dict[str, np.ndarray]:
    """Masks for the top 5 % most active users, the rest, and the bottom 20 %.

    Users are ranked by activity with the array position (sorted user key) breaking ties,
    so membership does not depend on row order.
    """
    n = len(activity)
    order = np.lexsort((np.arange(n), -activity))  # most active first
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    n_top = max(1, int(np.ceil(0.05 * n)))
    n_bottom = max(1, int(np.ceil(0.20 * n)))
    top = rank < n_top
    return {"top5": top, "rest": ~top, "bottom20": rank >= n - n_bottom}


def attribute_groups(values: pl.Series) -> dict[str, np.ndarray]:
    """Masks per attribute value (nulls in their own group); quartiles for wide numerics."""
    if values.dtype.is_numeric() and values.drop_nulls().n_unique() > MAX_LEVELS:
        arr = values.cast(pl.Float64).to_numpy()
        finite = arr[~np.isnan(arr)]
        edges = np.quantile(finite, [0.25, 0.5, 0.75]) if len(finite) else np.array([])
        groups: dict[str, np.ndarray] = {}
        bins = np.searchsorted(edges, arr, side="right")
        for q in range(4):
            lo = "min" if q == 0 else f"{edges[q - 1]:g}"
            hi = "max" if q == 3 else f"{edges[q]:g}"
            mask = (bins == q) & ~np.isnan(arr)
            if mask.any():
                groups[f"q{q + 1} ({lo}..{hi})"] = mask
        if np.isnan(arr).any():
            groups["null"] = np.isnan(arr)
        return groups
    labels = values.cast(pl.String).fill_null("null")
    return {str(v): (labels == v).to_numpy() for v in labels.unique().sort()}


def _mean(values: np.ndarray, mask: np.ndarray) -> float | None:
    return float(values[mask].mean()) if mask.any() else None


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den == 0:
        return None
    return num / den


def fairness_metrics(
    groupings: dict[str, dict[str, np.ndarray]],
    per_user: dict[str, dict[str, dict[str, np.ndarray]]],
) -> dict[str, Any]:
    """`per_user[recommender][side][metric]` holds one value per evaluated held-out user.

    For each grouping: the mean of every metric per group and side, the ratio, and the gap
    (for activity: top5 − rest; otherwise the largest minus the smallest group mean).
    """
    out: dict[str, Any] = {}
    for grouping, masks in groupings.items():
        groups: dict[str, Any] = {}
        for label, mask in masks.items():
            entry: dict[str, Any] = {"n_users": int(mask.sum())}
            for rec, sides in per_user.items():
                real = {m: _mean(v, mask) for m, v in sides["real"].items()}
                syn = {m: _mean(v, mask) for m, v in sides["synthetic"].items()}
                entry[rec] = {"real": real, "synthetic": syn,
                              "ratio": {m: _ratio(syn[m], real[m]) for m in real}}
            groups[label] = entry
        out[grouping] = {"groups": groups, "gap": _gaps(grouping, groups, per_user)}
    return out


def _gaps(grouping: str, groups: dict[str, Any],
          per_user: dict[str, dict[str, dict[str, np.ndarray]]]) -> dict[str, Any]:
    gaps: dict[str, Any] = {}
    for rec, sides in per_user.items():
        gaps[rec] = {}
        for side in ("real", "synthetic"):
            gaps[rec][side] = {}
            for metric in sides[side]:
                if grouping == "activity":
                    a = groups["top5"][rec][side][metric]
                    b = groups["rest"][rec][side][metric]
                    gap = None if a is None or b is None else a - b
                else:
                    vals = [g[rec][side][metric] for g in groups.values()
                            if g[rec][side][metric] is not None and g["n_users"] >= MIN_GROUP]
                    gap = max(vals) - min(vals) if len(vals) >= 2 else None
                gaps[rec][side][metric] = gap
    return gaps
