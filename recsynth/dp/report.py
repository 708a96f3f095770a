"""A DP model's guarantee, read from its manifest, for `evaluate --model` to print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

KEYS = ("epsilon", "delta", "mechanism", "accountant", "unit")


def dp_guarantee(model: str | None) -> dict[str, Any] | None:
    """(ε, δ, mechanism, accountant) of a `fit --epsilon` model; None for any other path."""
    if model is None:
        return None
    path = Path(model) / "manifest.json"
    try:
        privacy = json.loads(path.read_text()).get("privacy")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(privacy, dict):
        return None
    return {k: privacy.get(k) for k in KEYS}


def guarantee_line(g: dict[str, Any]) -> str:
    return (f"Differential privacy of the model: ε = {g['epsilon']}, δ = {g['delta']:.3g} "
            f"per {g['unit']}; accountant {g['accountant']}")
