"""`evaluate --augmented`: does adding synthetic users to the real training data help?

Every recommender is trained twice — on the real train users alone and on the augmented
log (real + synthetic) — and scored on the same held-out real users. Reported per user
group (activity: top 5 %, rest, bottom 20 %; every user attribute), with the lift
augmented / real − 1 and the change of each fairness gap, because untargeted
augmentation tends to help some groups at others' expense.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsynth.config import EvalConfig
from recsynth.inputs import Log
from recsynth.metrics.fairness import fairness_metrics
from recsynth.metrics.utility import utility_metrics


def _lift(aug: float | None, real: float | None) -> float | None:
    if aug is None or real is None or real == 0:
        return None
    return aug / real - 1.0


def _diff(a: Any, b: Any) -> float | None:
    numbers = (int, float)
    return a - b if isinstance(a, numbers) and isinstance(b, numbers) else None


def _relabel(node: Any) -> Any:
    """Rename the 'synthetic' side to 'augmented'; ratios become lifts, gaps get a change."""
    if not isinstance(node, dict):
        return node
    if "real" in node and "synthetic" in node:
        real, aug = node["real"], node["synthetic"]
        out = {k: _relabel(v) for k, v in node.items()
               if k not in ("real", "synthetic", "ratio")}
        out["real"], out["augmented"] = real, aug
        if "ratio" in node:
            out["lift"] = {m: _lift(aug.get(m), real.get(m)) for m in real}
        else:  # a fairness gap: how much augmentation moved it
            out["change"] = {m: _diff(aug.get(m), real.get(m)) for m in real}
        return out
    return {k: _relabel(v) for k, v in node.items()}


def augmented_metrics(train: Log, augmented: Log, foldin: sp.csr_matrix, test: sp.csr_matrix,
                      groupings: dict[str, dict[str, np.ndarray]], config: EvalConfig,
                      on_stage: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """The `augmented` section of the evaluation result."""
    def stage(text: str) -> None:
        on_stage(text.replace("synthetic data", "augmented data"))

    utility, per_user = utility_metrics(
        train.positives.matrix, augmented.positives.matrix, foldin, test, ks=config.ks,
        recommenders=config.recommenders, seed=config.seed, repeats=config.repeats,
        on_stage=stage)
    fairness = fairness_metrics(groupings, per_user)
    added = augmented.all_items.users.is_in(train.all_items.users.implode()).not_()
    return {
        "data": {"path": augmented.source, "rows": augmented.frame.height,
                 "users": augmented.all_items.n_users, "users_not_in_train": int(added.sum())},
        "utility": _relabel(utility),
        "groups": _relabel(fairness),
    }
