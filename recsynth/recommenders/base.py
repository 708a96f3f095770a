"""The recommender contract used by the utility evaluation, and a name -> class registry.

Evaluation is strong generalisation: `fit` sees training users only, and `score` ranks
items for unseen users from their fold-in history alone. That is what lets a model trained
on synthetic users be scored on real held-out users (and vice versa).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp

from recsynth.errors import UsageError

RECOMMENDER_NAMES = ("pop", "itemknn", "ease", "bpr", "apr")
# Fitted from random draws: BPR/APR train by SGD, EASE picks λ on a random 10 % of the
# users. On MovieLens-100K one BPR training's NDCG@10 moves by ~2 % overall and ~4 % on a
# 40-user group, so evaluation may average several fits (`evaluate --repeats`).
STOCHASTIC = frozenset({"ease", "bpr", "apr"})

# Lazy imports: torch (bpr/apr) costs a second to import and pop/ease never need it.
_REGISTRY: dict[str, tuple[str, str, dict[str, Any]]] = {
    "pop": ("recsynth.recommenders.pop", "Popularity", {}),
    "itemknn": ("recsynth.recommenders.itemknn", "ItemKNN", {}),
    "ease": ("recsynth.recommenders.ease", "EASE", {}),
    "bpr": ("recsynth.recommenders.bpr", "BPR", {"adversarial": False}),
    "apr": ("recsynth.recommenders.bpr", "BPR", {"adversarial": True}),
}


@runtime_checkable
class Recommender(Protocol):
    """Fit on binary users x items training data; score unseen users from their history."""

    name: str

    def fit(self, train: sp.csr_matrix, rng: np.random.Generator) -> Recommender:
        """Learn from `train` (binary csr); all randomness comes from `rng`. Returns self."""
        ...

    def score(self, history: sp.csr_matrix) -> np.ndarray:
        """float32 (n_history_users, n_items) scores, higher = better, for users not in train."""
        ...


def is_stochastic(name: str) -> bool:
    return name in STOCHASTIC


def make_recommender(name: str, **options: Any) -> Recommender:
    """Build a recommender by registry name; `options` go to its constructor."""
    try:
        module, cls, defaults = _REGISTRY[name]
    except KeyError:
        raise UsageError(
            f"unknown recommender {name!r}; choose from {', '.join(RECOMMENDER_NAMES)}"
        ) from None
    factory = getattr(import_module(module), cls)
    try:
        return factory(**{**defaults, **options})
    except TypeError as exc:
        raise UsageError(f"bad option for recommender {name!r}: {exc}") from None
