"""Rich tables for people (stderr); machines read the JSON on stdout instead."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def pick_k(result: dict[str, Any]) -> int:
    """The cut-off the headline figures use: 10 when it was measured, else the smallest."""
    ks = result["config"]["ks"]
    return 10 if 10 in ks else ks[0]


def render_evaluation(result: dict[str, Any], console: Console) -> None:
    k = pick_k(result)
    data = result["data"]
    console.print(
        f"[bold]recsynth evaluate[/]  train {data['train']['users']} users / "
        f"holdout {data['holdout']['users']} users ({data['evaluated_users']} scored) / "
        f"synthetic {data['synthetic']['users']} users; catalog {data['catalog_items']} items")

    util = Table(title=f"Utility @{k}: trained on real vs synthetic, tested on held-out real "
                       "users; ratio columns = synthetic/real (TSTR)")
    util.add_column("model")
    util.add_column("NDCG real", justify="right")
    util.add_column("NDCG syn", justify="right")
    ratio_metrics = {"ndcg": "NDCG", "recall": "recall", "map": "MAP", "hit_rate": "hit",
                     "coverage": "cover"}
    for label in ratio_metrics.values():
        util.add_column(label, justify="right")
    for name, figs in result["utility"].items():
        label = f"{name} ×{figs['trainings']}" if "trainings" in figs else name  # fits averaged
        row = [label, _fmt(figs["real"].get(f"ndcg@{k}")),
               _fmt(figs["synthetic"].get(f"ndcg@{k}"))]
        row += [_fmt(figs["ratio"].get(f"{m}@{k}"), 3) for m in ratio_metrics]
        util.add_row(*row)
    console.print(util)

    priv = result["privacy"]
    ref = priv.get("reference", {})
    ptable = Table(title="Privacy (user level, Jaccard distance on item sets)")
    ptable.add_column("metric")
    ptable.add_column("synthetic", justify="right")
    ptable.add_column("reference", justify="right")
    ptable.add_column("meaning")
    rows = [("exact_copy_share", "share of synthetic users identical to a train user"),
            ("exact_copy_share_5plus", "the same among users with ≥ 5 items (must be 0)"),
            ("dcr_share", "closer to train than to holdout (0.5 ideal)"),
            ("mia_auc", "membership inference AUC (0.5 ideal, ≥ 0.6 leaks)"),
            ("mia_auc_se", "its standard error (DeLong): gaps under 2 SE are noise"),
            ("nndr", "median nearest/second-nearest distance ratio"),
            ("dcr_median", "median distance to the closest train user")]
    for key, meaning in rows:
        ptable.add_row(key, _fmt(priv.get(key)), _fmt(ref.get(key)), meaning)
    console.print(ptable)
    if "guarantee" in priv:
        from recsynth.dp.report import guarantee_line

        console.print(guarantee_line(priv["guarantee"]))

    fid = result["fidelity"]
    ftable = Table(title="Fidelity (synthetic vs real train; 0 = identical)")
    ftable.add_column("statistic")
    ftable.add_column("value", justify="right")
    for key in ("activity_ks", "item_popularity_tvd", "item_popularity_js",
                "item_popularity_gini_real", "item_popularity_gini_synthetic",
                "inter_event_gap_ks", "user_span_ks", "cooccurrence_corr"):
        if key in fid:
            ftable.add_row(key, _fmt(fid[key]))
    for name, col in fid.get("columns", {}).items():
        ftable.add_row(f"{name} ({col['metric']})", _fmt(col["value"]))
    console.print(ftable)

    fair = result["fairness"]
    ntable = Table(title=f"Fairness: NDCG@{k} gap between user groups (real → synthetic)")
    ntable.add_column("grouping")
    recs = list(result["utility"])
    for name in recs:
        ntable.add_column(name, justify="right")
    for grouping, block in fair.items():
        row = [grouping]
        for name in recs:
            gap = block["gap"][name]
            row.append(f"{_fmt(gap['real'].get(f'ndcg@{k}'), 2)}→"
                       f"{_fmt(gap['synthetic'].get(f'ndcg@{k}'), 2)}")
        ntable.add_row(*row)
    console.print(ntable)

    for gate in result.get("gates", []):
        verdict = "[green]pass[/]" if gate["passed"] else "[red]FAIL[/]"
        op = "≥" if gate["fail"] == "under" else "≤"
        console.print(f"gate {gate['metric']} = {_fmt(gate['value'])} (needs {op} "
                      f"{gate['threshold']}): {verdict}")


def augmented_groups(augmented: dict[str, Any]
                     ) -> list[tuple[str | None, str, int | None, dict[str, Any]]]:
    """(grouping, group, users, figures per recommender) of an augmented run: all users
    first (grouping None), then every group of every grouping — for each view of it."""
    rows: list[tuple[str | None, str, int | None, dict[str, Any]]] = [
        (None, "all", None, augmented["utility"])]
    for grouping, block in augmented["groups"].items():
        rows += [(grouping, group, figs["n_users"], figs)
                 for group, figs in block["groups"].items()]
    return rows


def render_augmented(result: dict[str, Any], console: Console) -> None:
    """NDCG@K trained on real vs augmented data, overall and per user group, with lifts."""
    k = pick_k(result)
    metric = f"ndcg@{k}"
    aug = result["augmented"]
    table = Table(title=f"Augmented training ({aug['data']['users_not_in_train']} users added): "
                        f"NDCG@{k} real → augmented (lift)")
    table.add_column("group")
    table.add_column("users", justify="right")
    recs = list(aug["utility"])
    for name in recs:
        table.add_column(name, justify="right")

    def cell(block: dict[str, Any]) -> str:
        lift = block["lift"].get(metric)
        return (f"{_fmt(block['real'].get(metric))}→{_fmt(block['augmented'].get(metric))} "
                f"({'—' if lift is None else f'{lift:+.1%}'})")

    for grouping, label, n_users, figs in augmented_groups(aug):
        if grouping is None:
            table.add_row(label, str(result["data"]["evaluated_users"]),
                          *[cell(figs[r]) for r in recs])
        else:
            table.add_row(f"{grouping}={label}", str(n_users), *[cell(figs[r]) for r in recs])
    console.print(table)
