"""Train-on-synthetic, test-on-real (TSTR) under strong generalisation.

Every recommender is fitted twice — on the real train users and on the synthetic users —
and both are scored on the same held-out real users: their fold-in items are the history,
the hidden items the targets, all other items candidates. The ratio synthetic/real of each
metric is the TSTR figure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsynth.metrics.ranking import accuracy_per_user, list_metrics, reference_stats, top_k
from recsynth.recommenders.base import RECOMMENDER_NAMES, is_stochastic, make_recommender

CHUNK_USERS = 2048
SIDES = ("real", "synthetic")


def _ratio(syn: float | None, real: float | None) -> float | None:
    if syn is None or real is None or real == 0:
        return None
    return float(syn) / float(real)


def recommend(model, foldin: sp.csr_matrix, k: int) -> np.ndarray:
    """Top-k lists for every held-out user, scored in chunks to bound memory."""
    tops = []
    for start in range(0, foldin.shape[0], CHUNK_USERS):
        hist = foldin[start:start + CHUNK_USERS]
        tops.append(top_k(model.score(hist), hist, k))
    return np.vstack(tops) if tops else np.zeros((0, k), dtype=np.int64)


def utility_metrics(
    train: sp.csr_matrix,
    synthetic: sp.csr_matrix,
    foldin: sp.csr_matrix,
    test: sp.csr_matrix,
    *,
    ks: Sequence[int],
    recommenders: Sequence[str],
    seed: int,
    repeats: int = 1,
    on_stage: Callable[[str], None] = lambda _: None,
) -> tuple[dict[str, Any], dict[str, dict[str, dict[str, np.ndarray]]]]:
    """Figures per recommender and side, plus per-user arrays for the fairness breakdown.

    `foldin`/`test` hold only the evaluated held-out users (each with ≥ 1 hidden item).
    Popularity, novelty and diversity are measured against the real train users, so the
    real and synthetic figures share one yardstick. Recommenders fitted from random draws
    (EASE's λ-validation users, BPR/APR's SGD) are fitted `repeats` times and every
    figure, per user too, is the mean over the fits; `params` are the first fit's.
    """
    k_max = max(ks)
    reference = reference_stats(train)
    result: dict[str, Any] = {}
    per_user: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for name in recommenders:
        result[name] = {}
        per_user[name] = {}
        runs = repeats if is_stochastic(name) else 1
        for side in SIDES:
            on_stage(f"utility: {name} on {side} data")
            data = train if side == "real" else synthetic
            accs, lists = [], []
            for run in range(runs):
                # one seed per (recommender, run) for both sides: identical data gives an
                # identical model (ratio 1.0), whatever else is in the list
                rng = np.random.default_rng([seed, RECOMMENDER_NAMES.index(name), run])
                model = make_recommender(name).fit(data, rng)
                top = recommend(model, foldin, k_max)
                accs.append(accuracy_per_user(top, test, ks))
                lists.append(list_metrics(top, ks, reference))
                if run == 0:
                    params = getattr(model, "params", None)
                    if callable(params):
                        result[name].setdefault("params", {})[side] = params()
            acc = {m: np.mean([a[m] for a in accs], axis=0) for m in accs[0]}
            per_user[name][side] = acc
            figures = {m: float(v.mean()) for m, v in acc.items()}
            figures.update({m: float(np.mean([x[m] for x in lists])) for m in lists[0]})
            result[name][side] = figures
        real, syn = result[name]["real"], result[name]["synthetic"]
        result[name]["ratio"] = {m: _ratio(syn[m], real[m]) for m in real}
        if runs > 1:
            result[name]["trainings"] = runs
    return result, per_user
