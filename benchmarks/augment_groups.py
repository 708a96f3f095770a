"""Targeted augmentation by user group: does `recsynth augment` help the users served worst?

    python benchmarks/augment_groups.py [--datasets ml100k,online_retail]
        [--strategies match,sparse-users,long-tail,balance:gender] [--ratios 0.2]
        [--filter 0.2] [--augment-filters 0.0,0.2] [--augment-seeds 0] [--seed 0]
        [--recommenders ease,bpr] [--repeats 5] [--parts augment,conditional,filter]
        [--fit-args "--temperature 0.003 --components 10"] [--work benchmarks/results/augment]

Needs the 80/20 splits in benchmarks/data (`benchmarks/popularity_tables.sh`) and, for
MovieLens, benchmarks/data/ml100k/users.parquet (`benchmarks/fetch_ml100k.py`). User
attributes are joined into the logs as user-level columns, so the model learns them:
MovieLens gets gender, age and occupation; online-retail's row-level country is replaced
by each customer's most frequent country (as in its users.parquet).

Three parts, one markdown table each on stdout (JSON beside, in --work):
- augment: per strategy, NDCG@10 lift of augmented over real-only training, overall and
  for the bottom-20 %-activity held-out users, and the gender gap (MovieLens);
- conditional: NDCG@10 (EASE) within a rare group (< 2 % of users) of held-out users,
  trained on real users, on unconditional and on conditional synthetic users;
- filter: TSTR, fidelity and privacy of a plain sample vs one with critic filtering.

--fit-args are passed to `recsynth fit` as they are (shell-split); the model directory and
the augment outputs are named after them, so models fitted with other options sit side by
side in one --work.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

import polars as pl

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
RS = [sys.executable, "-m", "recsynth"]
RARE = {"ml100k": [("occupation", "lawyer"), ("occupation", "retired"), ("gender", "F"),
                   ("occupation", "student"), ("occupation", "educator")],
        "online_retail": [("country", "Spain"), ("country", "Germany"), ("country", "France")]}


def run(args: list[str]) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def prepare(name: str, work: Path) -> tuple[Path, Path]:
    """Train/holdout logs with the user attributes as user-level columns."""
    out = work / name
    out.mkdir(parents=True, exist_ok=True)
    paths = (out / "train.parquet", out / "holdout.parquet")
    if all(p.exists() for p in paths):
        return paths
    if name == "ml100k":
        users = pl.read_parquet(DATA / "ml100k" / "users.parquet").select(
            "user_id", "gender", "age", "occupation")
    else:
        users = None
    for side, path in zip(("train", "holdout"), paths, strict=True):
        log = pl.read_parquet(DATA / f"{name}-{side}.parquet")
        if users is None:  # each customer's most frequent country, as in users.parquet
            top = (log.group_by("user_id", "country").len()
                   .sort(["user_id", "len", "country"], descending=[False, True, False])
                   .unique("user_id", keep="first").select("user_id", "country"))
            log = log.drop("country").join(top, on="user_id", how="left")
        else:
            log = log.join(users.with_columns(pl.col("user_id").cast(log.schema["user_id"])),
                           on="user_id", how="left")
        log.write_parquet(path)
    return paths


def fit_tag(fit_args: str) -> str:
    """'--temperature 0.003 --components 10' -> 'temperature-0.003-components-10'."""
    return "-".join(a.lstrip("-") for a in shlex.split(fit_args))


def fit(name: str, train: Path, work: Path, seed: int, fit_args: str = "") -> Path:
    tag = fit_tag(fit_args)
    model = work / name / (f"model-{seed}-{tag}" if tag else f"model-{seed}")
    if not model.exists():
        run([*RS, "fit", str(train), "--out", str(model), "--seed", str(seed), "-q",
             *shlex.split(fit_args)])
    return model


def own(model: Path, args) -> str:
    """Prefix of the files made from a model fitted with --fit-args ('' without)."""
    return f"{model.name}-" if args.fit_args else ""


def evaluate(name: str, train: Path, holdout: Path, flag: str, path: Path, recs: str,
             out: Path, repeats: int = 1) -> dict:
    extra = ["--min-rating", "4"] if name == "ml100k" else []
    run([*RS, "evaluate", "--train", str(train), "--holdout", str(holdout), flag, str(path),
         "--recommenders", recs, "--k", "10", "--out", str(out), "--overwrite", "-q",
         "--repeats", str(repeats), *extra])
    return json.loads(out.read_text())


def augment_part(name, train, holdout, model, args, work) -> list[dict]:
    rows = []
    strategies = [s for s in args.strategies.split(",")
                  if not (s.startswith("balance:") and name != "ml100k")]
    for strategy in strategies:
        for ratio in args.ratios.split(","):
            for q, aseed in ((q, a) for q in map(float, args.augment_filters.split(","))
                             for a in args.augment_seeds.split(",")):
                tag = f"{own(model, args)}{strategy.replace(':', '-')}-{ratio}-q{q}-s{aseed}"
                aug = work / name / f"aug-{tag}.parquet"
                summary = json.loads(run([*RS, "augment", str(train), str(model), "--out",
                                          str(aug), "--strategy", strategy, "--ratio", ratio,
                                          "--filter-quantile", str(q), "--seed", aseed,
                                          "--overwrite", "--json", "-q"]))
                r = evaluate(name, train, holdout, "--augmented", aug, args.recommenders,
                             work / name / f"report-{tag}.json", args.repeats)["augmented"]
                row = {"dataset": name, **({"fit": args.fit_args} if args.fit_args else {}),
                       "strategy": strategy, "ratio": float(ratio),
                       "filter": q, "seed": int(aseed),
                       "added_users": summary["synthetic"]["users"]}
                row.update(lifts(r, args.recommenders))
                print(json.dumps(row), file=sys.stderr, flush=True)
                rows.append(row)
    return rows


def lifts(r: dict, recommenders: str) -> dict:
    """NDCG@10 (real-only, augmented, lift) overall and for the bottom-20 %-activity
    held-out users, and the gender gap where there is one, from `evaluate --augmented`."""
    row = {}
    for rec in recommenders.split(","):
        u = r["utility"][rec]
        row[f"{rec}_all"] = (u["real"]["ndcg@10"], u["augmented"]["ndcg@10"],
                             u["lift"]["ndcg@10"])
        b = r["groups"]["activity"]["groups"]["bottom20"][rec]
        row[f"{rec}_bottom20"] = (b["real"]["ndcg@10"], b["augmented"]["ndcg@10"],
                                  b["lift"]["ndcg@10"])
        if "gender" in r["groups"]:
            g = r["groups"]["gender"]["gap"][rec]
            row[f"{rec}_gender_gap"] = (g["real"]["ndcg@10"], g["augmented"]["ndcg@10"])
    return row


def item_tvd(a: pl.DataFrame, b: pl.DataFrame) -> float:
    """Total variation distance between the item distributions of two logs' (user, item)
    pairs: how far a synthetic group's tastes are from the real group's."""
    def dist(frame: pl.DataFrame) -> pl.DataFrame:
        pairs = frame.select("user_id", "item_id").unique()
        return pairs.group_by("item_id").len().with_columns(pl.col("len") / pairs.height)

    both = dist(a).join(dist(b), on="item_id", how="full", coalesce=True).fill_null(0.0)
    return float(0.5 * (both.get_column("len") - both.get_column("len_right")).abs().sum())


def conditional_part(name, train, holdout, model, args, work) -> list[dict]:
    """Per group: NDCG@10 of its held-out users, EASE trained on real train users vs on as
    many unconditional vs conditional (--where) synthetic users; and the item-distribution
    TVD of each synthetic sample to the group's real train users (lower: the group's
    tastes were learned)."""
    n_train = pl.scan_parquet(train).select(pl.col("user_id").n_unique()).collect().item()
    per_user = pl.scan_parquet(train).group_by("user_id").agg(pl.all().first()).collect()
    pre = own(model, args)
    uncond = work / name / f"{pre}syn-unconditional.parquet"
    run([*RS, "sample", str(model), "--users", str(n_train), "--out", str(uncond), "--seed",
         str(args.seed), "--overwrite", "-q"])
    base = evaluate(name, train, holdout, "--synthetic", uncond, "ease",
                    work / name / f"{pre}report-unconditional.json", args.repeats)
    rows = []
    real_log, uncond_log = pl.read_parquet(train), pl.read_parquet(uncond)
    for col, value in RARE[name]:
        syn = work / name / f"{pre}syn-{col}-{value}.parquet"
        run([*RS, "sample", str(model), "--users", str(n_train), "--out", str(syn), "--seed",
             str(args.seed), "--overwrite", "-q", "--where", f"{col}={value}"])
        syn_log = pl.read_parquet(syn)
        ok = (syn_log.get_column(col).cast(pl.String) == value).all()
        group = real_log.filter(pl.col(col).cast(pl.String) == value)
        r = evaluate(name, train, holdout, "--synthetic", syn, "ease",
                     work / name / f"{pre}report-{col}-{value}.json", args.repeats)
        g = r["fairness"][col]["groups"][value]["ease"]
        b = base["fairness"][col]["groups"][value]["ease"]
        rows.append({"dataset": name, "group": f"{col}={value}",
                     "train_users": int((per_user.get_column(col).cast(pl.String)
                                         == value).sum()),
                     "heldout_users": r["fairness"][col]["groups"][value]["n_users"],
                     "all_satisfy": bool(ok), "real": g["real"]["ndcg@10"],
                     "unconditional": b["synthetic"]["ndcg@10"],
                     "conditional": g["synthetic"]["ndcg@10"],
                     "tstr_in_group": g["ratio"]["ndcg@10"],
                     "item_tvd_unconditional": item_tvd(uncond_log, group),
                     "item_tvd_conditional": item_tvd(syn_log, group)})
    return rows


def filter_part(name, train, holdout, model, args, work) -> list[dict]:
    n_train = pl.scan_parquet(train).select(pl.col("user_id").n_unique()).collect().item()
    rows = []
    for q in (0.0, args.filter):
        syn = work / name / f"{own(model, args)}syn-filter-q{q}.parquet"
        run([*RS, "sample", str(model), "--users", str(n_train), "--out", str(syn),
             "--filter-quantile", str(q), "--seed", str(args.seed), "--overwrite", "-q"])
        r = evaluate(name, train, holdout, "--synthetic", syn, "ease",
                     work / name / f"{own(model, args)}report-filter-q{q}.json", args.repeats)
        rows.append({"dataset": name, "filter": q,
                     "tstr": r["utility"]["ease"]["ratio"]["ndcg@10"],
                     "activity_ks": r["fidelity"]["activity_ks"],
                     "popularity_tvd": r["fidelity"]["item_popularity_tvd"],
                     "cooccurrence_corr": r["fidelity"].get("cooccurrence_corr"),
                     "mia_auc": r["privacy"]["mia_auc"], "dcr_share": r["privacy"]["dcr_share"]})
    return rows


def fmt(cell) -> str:
    if isinstance(cell, (tuple, list)):
        if len(cell) == 3:
            return f"{cell[0]:.4f} → {cell[1]:.4f} ({cell[2]:+.1%})"
        return f"{cell[0]:.4f} → {cell[1]:.4f}"
    if isinstance(cell, float):
        return f"{cell:.3f}"
    return str(cell)


def table(rows: list[dict]) -> str:
    if not rows:
        return ""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--datasets", default="ml100k,online_retail")
    p.add_argument("--strategies", default="match,sparse-users,long-tail,balance:gender")
    p.add_argument("--ratios", default="0.2")
    p.add_argument("--filter", type=float, default=0.2)
    p.add_argument("--augment-filters", default="0.0,0.2",
                   help="critic filter quantiles tried for every strategy")
    p.add_argument("--augment-seeds", default="0", help="seeds of `augment` (model: --seed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--recommenders", default="ease,bpr")
    p.add_argument("--repeats", type=int, default=5,
                   help="`evaluate --repeats`: EASE/BPR fits averaged per figure (one "
                        "fit's bottom-20 %% NDCG moves by ~5 %%)")
    p.add_argument("--parts", default="augment,conditional,filter")
    p.add_argument("--fit-args", default="",
                   help='extra `recsynth fit` options, e.g. "--temperature 0.003"')
    p.add_argument("--work", type=Path, default=HERE / "results" / "augment")
    args = p.parse_args()
    parts = {"augment": augment_part, "conditional": conditional_part, "filter": filter_part}
    results: dict[str, list[dict]] = {k: [] for k in args.parts.split(",")}
    for name in args.datasets.split(","):
        train, holdout = prepare(name, args.work)
        model = fit(name, train, args.work, args.seed, args.fit_args)
        for part in results:
            results[part] += parts[part](name, train, holdout, model, args, args.work)
    stem = "-".join(filter(None, ["augment_groups", args.datasets.replace(",", "-"),
                                  fit_tag(args.fit_args)]))
    out = args.work / f"{stem}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    for part, rows in results.items():
        print(f"\n### {part}\n\n{table(rows)}")


if __name__ == "__main__":
    main()
