"""Quality gates (`--fail-under tstr=0.9`, `--fail-over privacy.mia_auc=0.6`) over a result dict."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from recsynth.errors import UsageError

ALIASES: dict[str, str] = {
    "tstr": "utility.ease.ratio.ndcg@10",
    "mia_auc": "privacy.mia_auc",
    "exact_copy_share": "privacy.exact_copy_share",
    "dcr_share": "privacy.dcr_share",
    "nndr": "privacy.nndr",
    "activity_ks": "fidelity.activity_ks",
    "item_popularity_tvd": "fidelity.item_popularity_tvd",
}


@dataclass(frozen=True)
class Gate:
    metric: str
    op: str  # "under" fails when value < threshold, "over" when value > threshold
    threshold: float

    @property
    def path(self) -> str:
        return ALIASES.get(self.metric, self.metric)


def parse_gates(under: list[str], over: list[str]) -> list[Gate]:
    gates = []
    for op, specs in (("under", under), ("over", over)):
        for spec in specs:
            metric, sep, value = spec.partition("=")
            try:
                threshold = float(value)
            except ValueError:
                threshold = float("nan")
            if not sep or not metric or math.isnan(threshold):
                raise UsageError(f"--fail-{op} {spec!r}: expected METRIC=NUMBER, e.g. tstr=0.9")
            gates.append(Gate(metric.strip(), op, threshold))
    return gates


def lookup(result: dict[str, Any], path: str) -> Any:
    node: Any = result
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise UsageError(f"unknown metric {path!r} for a gate (e.g. tstr, privacy.mia_auc, "
                             "utility.ease.ratio.ndcg@10)")
        node = node[part]
    return node


def check_paths(gates: list[Gate], result: dict[str, Any]) -> None:
    for g in gates:
        lookup(result, g.path)


def apply_gates(gates: list[Gate], result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each gate with its value and verdict; a missing (None) figure fails its gate."""
    out = []
    for g in gates:
        value = lookup(result, g.path)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            passed = False
            value = None
        else:
            passed = value >= g.threshold if g.op == "under" else value <= g.threshold
        out.append({"metric": g.metric, "path": g.path, "fail": g.op, "threshold": g.threshold,
                    "value": value, "passed": passed})
    return out
