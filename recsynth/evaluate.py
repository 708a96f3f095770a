"""The evaluation protocol (GUIDE §3): utility, fidelity, privacy and fairness in one result.

Pure orchestration over validated inputs; the result is a JSON-ready dict with stable keys
(`schema_version` 1). `evaluate_with_details` also hands back the raw distributions the
HTML report plots, which stay out of the JSON. Nothing here prints: stages are reported
through `on_stage`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl

from recsynth import __version__
from recsynth.augmented_eval import augmented_metrics
from recsynth.config import EvalConfig
from recsynth.errors import DataError
from recsynth.inputs import EvalInputs, Log
from recsynth.metrics.fairness import activity_groups, attribute_groups, fairness_metrics
from recsynth.metrics.fidelity import FidelityDistributions, fidelity_metrics_with_distributions
from recsynth.metrics.privacy import PrivacyDistances, privacy_metrics_with_distances
from recsynth.metrics.utility import utility_metrics
from recsynth.protocol import fold_in_split

RESULT_SCHEMA_VERSION = 1
MAX_ATTRIBUTE_GROUPS = 50  # an attribute with more values (a zip code) is not a fairness group

Stage = Callable[[str], None]


def _log_summary(log: Log) -> dict[str, Any]:
    return {"path": log.source, "rows": log.frame.height, "users": log.all_items.n_users,
            "items": int((log.all_items.matrix.getnnz(axis=0) > 0).sum()),
            "positive_interactions": int(log.positives.matrix.nnz)}


@dataclass(frozen=True)
class EvalDetails:
    """Per-user and per-item arrays behind the summary figures (for plots, not JSON)."""

    privacy: PrivacyDistances
    fidelity: FidelityDistributions


def evaluate(inputs: EvalInputs, config: EvalConfig, on_stage: Stage = lambda _: None
             ) -> dict[str, Any]:
    """The JSON-ready result of the whole protocol."""
    return evaluate_with_details(inputs, config, on_stage)[0]


def evaluate_with_details(inputs: EvalInputs, config: EvalConfig,
                          on_stage: Stage = lambda _: None
                          ) -> tuple[dict[str, Any], EvalDetails | None]:
    """The JSON-ready result and the raw distributions behind the synthetic log's figures
    (None without a synthetic log)."""
    on_stage("splitting held-out users into fold-in and hidden items")
    held = inputs.holdout.positives
    foldin, test = fold_in_split(held.matrix, config.test_frac,
                                 np.random.default_rng([config.seed, 1]))
    evaluated = np.flatnonzero(test.getnnz(axis=1) > 0)
    if len(evaluated) == 0:
        raise DataError(f"{inputs.holdout.source}: no held-out user has 2 or more positive "
                        "interactions to fold in and score")
    foldin, test = foldin[evaluated], test[evaluated]
    groupings = _groupings(inputs, held.users.gather(evaluated))
    result: dict[str, Any] = _header(inputs, config, len(evaluated))
    details = None
    if inputs.synthetic is not None:
        sections, details = _synthetic_sections(inputs, config, foldin, test, groupings,
                                                on_stage)
        result.update(sections)
    if inputs.augmented is not None:
        result["augmented"] = augmented_metrics(inputs.train, inputs.augmented, foldin, test,
                                                groupings, config, on_stage)
    return jsonable(result), details


def _header(inputs: EvalInputs, config: EvalConfig, n_evaluated: int) -> dict[str, Any]:
    schema = inputs.schema
    data = {"train": _log_summary(inputs.train), "holdout": _log_summary(inputs.holdout)}
    if inputs.synthetic is not None:
        data["synthetic"] = _log_summary(inputs.synthetic)
    data.update({"catalog_items": len(inputs.catalog), "evaluated_users": n_evaluated,
                 "user_col": schema.user_col, "item_col": schema.item_col})
    return {"schema_version": RESULT_SCHEMA_VERSION, "recsynth_version": __version__,
            "config": {**asdict(config), "ks": list(config.ks),
                       "recommenders": list(config.recommenders)},
            "data": data}


def _synthetic_sections(inputs: EvalInputs, config: EvalConfig, foldin, test, groupings,
                        on_stage: Stage) -> tuple[dict[str, Any], EvalDetails]:
    """Utility, fidelity, privacy and fairness of the synthetic log."""
    schema = inputs.schema
    assert inputs.synthetic is not None
    utility, per_user = utility_metrics(
        inputs.train.positives.matrix, inputs.synthetic.positives.matrix, foldin, test,
        ks=config.ks, recommenders=config.recommenders, seed=config.seed,
        repeats=config.repeats, on_stage=on_stage)

    on_stage("fairness across user groups")
    fairness = fairness_metrics(groupings, per_user)

    on_stage("privacy: distances between synthetic and real users")
    privacy, distances = privacy_metrics_with_distances(
        inputs.synthetic.all_items.matrix, inputs.train.all_items.matrix,
        inputs.holdout.all_items.matrix, np.random.default_rng([config.seed, 2]))

    on_stage("fidelity: marginals, activity, popularity, co-occurrence")
    kinds = {"rating": "numeric", "numeric": "numeric", "categorical": "categorical"}
    columns = {c.name: kinds[c.role] for c in schema.value_columns()
               if c.role in kinds and c.name in inputs.synthetic.frame.columns}
    time_col = schema.time_col if schema.time_col in inputs.synthetic.frame.columns else None
    if time_col is not None:
        columns[time_col] = "time"
    fidelity, distributions = fidelity_metrics_with_distributions(
        inputs.train.frame, inputs.synthetic.frame, inputs.train.all_items,
        inputs.synthetic.all_items, user_col=schema.user_col, time_col=time_col,
        columns=columns, user_level={c.name for c in schema.user_attributes()})

    sections = {"utility": utility, "fidelity": fidelity, "privacy": privacy,
                "fairness": fairness}
    return sections, EvalDetails(distances, distributions)


def _groupings(inputs: EvalInputs, users: pl.Series) -> dict[str, dict[str, np.ndarray]]:
    """Activity groups plus one grouping per user attribute, aligned with `users`."""
    all_items = inputs.holdout.all_items
    pos = pl.DataFrame({"u": all_items.users, "i": np.arange(all_items.n_users)})
    idx = pl.DataFrame({"u": users}).join(pos, on="u", how="left").get_column("i").to_numpy()
    activity = np.asarray(all_items.matrix.getnnz(axis=1))[idx]
    groupings = {"activity": activity_groups(activity)}
    attrs = inputs.user_attributes
    if attrs is not None:
        user = inputs.schema.user_col
        aligned = pl.DataFrame({user: users}).join(attrs, on=user, how="left")
        for col in aligned.columns:
            if col == user:
                continue
            groups = attribute_groups(aligned.get_column(col))
            if 2 <= len(groups) <= MAX_ATTRIBUTE_GROUPS:
                groupings[col] = groups
    return groupings


def jsonable(value: Any) -> Any:
    """Plain JSON types; NaN and infinities become null so any JSON parser reads the result."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    return value
