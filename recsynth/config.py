"""Typed settings, saved beside every result so a figure can be reproduced."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_KS = (5, 10, 20, 50)
DEFAULT_RECOMMENDERS = ("pop", "itemknn", "ease", "bpr", "apr")


@dataclass(frozen=True)
class EvalConfig:
    ks: tuple[int, ...] = DEFAULT_KS
    recommenders: tuple[str, ...] = DEFAULT_RECOMMENDERS
    min_rating: float | None = None  # rows rated below this are not positives for utility
    test_frac: float = 0.2  # share of each held-out user's items hidden for scoring
    seed: int = 0
