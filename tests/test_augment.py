"""Conditional sampling, critic filtering, `recsynth augment` and `evaluate --augmented`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsynth.augment import balance_allocation, parity_allocation
from recsynth.checkpoint import load_model
from recsynth.cli import main
from recsynth.conditions import activity_bounds
from recsynth.filtering import candidates, keep_best

ROOT = Path(__file__).resolve().parents[1] / "sample_data"
RARE_USERS = 5  # of 300: a group under 2 % of the users


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sample_data with user-level attributes (country, a segment with a rare value), split
    80/20 by user, and a small model. It is fitted on all 300 users so the rare value (5
    users) stays under 2 % and learnable; these tests check mechanics, not lift."""
    d = tmp_path_factory.mktemp("augment")
    log = pl.read_parquet(ROOT / "interactions.parquet").drop("country")
    users = pl.read_parquet(ROOT / "users.parquet").sort("user_id")
    segment = ["rare" if i % 60 == 7 else ("a" if i % 2 else "b") for i in range(users.height)]
    users = users.with_columns(pl.Series("segment", segment))
    log.join(users, on="user_id").write_parquet(d / "log.parquet")
    assert main(["split", str(d / "log.parquet"), "--train", str(d / "train.parquet"),
                 "--holdout", str(d / "holdout.parquet")]) == 0
    assert main(["fit", str(d / "log.parquet"), "--out", str(d / "model"), "--epochs", "2",
                 "--holdout-frac", "0", "--temperature", "0.01", "--rank", "8", "-q"]) == 0
    return d


def items_per_user(frame: pl.DataFrame) -> np.ndarray:
    return frame.group_by("user_id").agg(pl.col("item_id").n_unique()).get_column(
        "item_id").to_numpy()


def test_every_user_satisfies_the_condition_even_a_rare_one(work: Path, tmp_path: Path,
                                                            capsys) -> None:
    train = pl.read_parquet(work / "log.parquet")
    rare = train.filter(pl.col("segment") == "rare").get_column("user_id").n_unique()
    assert rare == RARE_USERS and rare / train.get_column("user_id").n_unique() < 0.02
    out = tmp_path / "rare.parquet"
    code, _, _ = run(["sample", str(work / "model"), "--users", "40", "--where", "segment=rare",
                      "--min-items", "5", "--max-items", "60", "--out", str(out), "-q"], capsys)
    assert code == 0
    syn = pl.read_parquet(out)
    assert syn.get_column("user_id").n_unique() == 40
    assert (syn.get_column("segment") == "rare").all()
    # the rare segment's countries are held by fewer than 5 users each: generalised away,
    # so that combination is refused rather than copied from a real user
    assert syn.get_column("country").null_count() == syn.height
    code, _, err = run(["sample", str(work / "model"), "--users", "4", "--where",
                        "segment=rare", "--where", "country=United Kingdom",
                        "--out", str(tmp_path / "no.parquet"), "-q"], capsys)
    assert code == 3 and not (tmp_path / "no.parquet").exists()
    n = items_per_user(syn)
    assert n.min() >= 5 and n.max() <= 60
    assert syn.schema == train.schema


def test_activity_terciles_keep_an_integer_quantile_in_its_own_tercile() -> None:
    """Users holding 3, 5, 7 or 20 items (100 each): the terciles fall on 5 and 7, which
    exp(log 5) = 4.999… once put in the tercile below."""
    from types import SimpleNamespace

    from recsynth.encode import Marginal

    form = SimpleNamespace(activity=Marginal.fit(np.log(np.repeat([3, 5, 7, 20], 100))))
    got = {level: activity_bounds(form, 1000, level) for level in ("low", "mid", "high")}
    assert got == {"low": (1, 5), "mid": (6, 7), "high": (8, 1000)}


@pytest.mark.parametrize("level", ["low", "high"])
def test_activity_levels_hold_for_every_user(level: str, work: Path, tmp_path: Path,
                                             capsys) -> None:
    model = load_model(work / "model")
    lo, hi = activity_bounds(model.form, model.n_items, level)
    out = tmp_path / f"{level}.parquet"
    assert run(["sample", str(work / "model"), "--users", "30", "--activity", level,
                "--out", str(out), "-q"], capsys)[0] == 0
    n = items_per_user(pl.read_parquet(out))
    assert len(n) == 30 and n.min() >= lo and n.max() <= hi


@pytest.mark.parametrize("args, code, message", [
    (["--where", "planet=Mars"], 2, "unknown column 'planet'"),
    (["--where", "segment=zzz"], 2, "unknown value 'zzz'"),
    (["--where", "country=Cyprus"], 3, "at least 5 are needed"),
    (["--where", "segment=rare", "--where", "country=Germany"], 3,
     "held by the 5 or more real users"),
    (["--where", "segment"], 2, "expected COLUMN=VALUE"),
    (["--min-items", "2500"], 3, "no user can have"),
    (["--min-items", "100000"], 3, "no synthetic user of this model can have"),
    (["--min-items", "9", "--max-items", "3"], 2, "empty item range"),
    (["--filter-quantile", "1"], 2, "--filter-quantile must be in [0, 1)"),
])
def test_impossible_or_unknown_condition_is_a_clear_error(args: list[str], code: int,
                                                          message: str, work: Path,
                                                          tmp_path: Path, capsys) -> None:
    out = tmp_path / "x.parquet"
    got, stdout, err = run(["sample", str(work / "model"), "--users", "5", "--out", str(out),
                            *args], capsys)
    assert got == code and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and stdout == ""
    assert not out.exists()


def test_critic_filter_drops_the_requested_share(work: Path, tmp_path: Path, capsys) -> None:
    assert candidates(30, 0.25) == 40 and candidates(30, 0.0) == 30
    assert keep_best(np.array([0.1, 0.9, 0.5, 0.9]), 2).tolist() == [1, 3]
    out = tmp_path / "aug.parquet"
    code, stdout, _ = run(["augment", str(work / "train.parquet"), str(work / "model"),
                           "--out", str(out), "--ratio", "0.25", "--filter-quantile", "0.2",
                           "--json", "-q"], capsys)
    assert code == 0
    summary = json.loads(stdout)
    kept = summary["synthetic"]["users"]
    assert summary["synthetic"]["generated_candidates"] == candidates(kept, 0.2)
    assert (summary["synthetic"]["generated_candidates"] - kept) / \
        summary["synthetic"]["generated_candidates"] == pytest.approx(0.2, abs=0.02)


def test_augment_writes_real_then_synthetic_rows_with_disjoint_keys(work: Path, tmp_path: Path,
                                                                    capsys) -> None:
    real = pl.read_parquet(work / "train.parquet")
    out = tmp_path / "aug.parquet"
    code, stdout, _ = run(["augment", str(work / "train.parquet"), str(work / "model"),
                           "--out", str(out), "--strategy", "balance:segment", "--ratio", "0.2",
                           "--mark-synthetic", "--json", "-q"], capsys)
    assert code == 0
    summary = json.loads(stdout)
    aug = pl.read_parquet(out)
    assert aug.schema == {**real.schema, "is_synthetic": pl.Boolean}
    assert aug.head(real.height).drop("is_synthetic").equals(real)
    assert not aug.head(real.height).get_column("is_synthetic").any()
    syn = aug.slice(real.height).filter(pl.col("is_synthetic"))
    assert syn.height == aug.height - real.height == summary["synthetic"]["rows"]
    assert not set(syn.get_column("user_id")) & set(real.get_column("user_id"))
    n_real = real.get_column("user_id").n_unique()
    assert syn.get_column("user_id").n_unique() == round(0.2 * n_real)
    # balance: the new users go to the smallest groups first, here all to the rare one
    balance = summary["balance"]
    assert balance["added"]["rare"] == round(0.2 * n_real)
    assert (syn.get_column("segment") == "rare").all()
    assert parity_allocation({"a": 10, "b": 4, "c": 1}, 7) == {"a": 0, "b": 2, "c": 5}


@pytest.mark.parametrize("strategy", ["sparse-users", "long-tail", "match"])
def test_other_strategies_and_same_seed_same_bytes(strategy: str, work: Path, tmp_path: Path,
                                                   capsys) -> None:
    outs = []
    for name in ("a", "b"):
        outs.append(tmp_path / f"{name}.parquet")
        code, stdout, _ = run(["augment", str(work / "train.parquet"), str(work / "model"),
                               "--out", str(outs[-1]), "--strategy", strategy, "--ratio",
                               "0.1", "--json", "-q"], capsys)
        assert code == 0
    assert outs[0].read_bytes() == outs[1].read_bytes()
    summary = json.loads(stdout)
    if strategy == "sparse-users":
        syn = pl.read_parquet(outs[0]).filter(
            ~pl.col("user_id").is_in(pl.read_parquet(work / "train.parquet")["user_id"]
                                     .implode()))
        assert items_per_user(syn).max() <= summary["max_items"]


def test_augment_joins_the_side_tables_the_model_was_fitted_with(work: Path, tmp_path: Path,
                                                                  capsys) -> None:
    train = pl.read_parquet(work / "train.parquet")  # the log with its user attributes
    train.select("user_id", "country", "segment").unique().write_parquet(tmp_path / "u.parquet")
    train.drop("country", "segment").write_parquet(tmp_path / "log.parquet")
    out = tmp_path / "aug.parquet"
    args = ["augment", str(tmp_path / "log.parquet"), str(work / "model"), "--out", str(out),
            "-q"]
    code, _, err = run(args, capsys)
    assert code == 3 and "needs the same side tables" in err and not out.exists()
    code, _, _ = run([*args, "--users", str(tmp_path / "u.parquet")], capsys)
    assert code == 0
    aug = pl.read_parquet(out)
    assert aug.head(train.height).select(train.columns).equals(train)
    syn = aug.slice(train.height)  # synthetic users carry the joined attributes too
    assert syn.height > 0 and syn.get_column("country").null_count() < syn.height


def test_balance_never_grows_a_group_past_the_largest_when_values_are_left_out() -> None:
    before = {"uk": 221, "de": 5, "cy": 1, "be": 2}
    # every value generable: plain water-filling
    assert balance_allocation({"x": 10, "y": 4}, {"x", "y"}, 8) == {"x": 1, "y": 7}
    # cy and be cannot be generated: their share is not handed to the larger groups
    assert balance_allocation(before, {"uk", "de"}, 48) == {"de": 48, "uk": 0}
    assert balance_allocation({"x": 10, "y": 4, "z": 1}, {"x", "y"}, 20) == {"x": 0, "y": 6}
    assert balance_allocation(before, {"uk"}, 48) == {"uk": 0}


def test_balance_refuses_to_add_only_to_the_largest_group(work: Path, tmp_path: Path,
                                                          capsys) -> None:
    # without its German users the train log's only generable country is the largest
    data = tmp_path / "no_de.parquet"
    pl.read_parquet(work / "train.parquet").filter(pl.col("country") != "Germany") \
        .write_parquet(data)
    out = tmp_path / "aug.parquet"
    code, _, err = run(["augment", str(data), str(work / "model"), "--out", str(out),
                        "--strategy", "balance:country"], capsys)
    assert code == 3 and "would widen the imbalance" in err and not out.exists()


@pytest.mark.parametrize("args, code, message", [
    (["--ratio", "0"], 2, "--ratio must be positive"),
    (["--ratio", "-1"], 2, "--ratio must be positive"),
    (["--strategy", "balance:gender"], 3, "needs column 'gender'"),
    (["--strategy", "popular"], 2, "--strategy 'popular'"),
])
def test_bad_augment_input_writes_nothing(args: list[str], code: int, message: str,
                                          work: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "aug.parquet"
    got, _, err = run(["augment", str(work / "train.parquet"), str(work / "model"), "--out",
                       str(out), *args], capsys)
    assert got == code and message in err and "Traceback" not in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_evaluate_augmented_adds_a_key_and_keeps_the_others(work: Path, tmp_path: Path,
                                                            capsys) -> None:
    aug = tmp_path / "aug.parquet"
    assert run(["augment", str(work / "train.parquet"), str(work / "model"), "--out",
                str(aug), "--ratio", "0.2", "-q"], capsys)[0] == 0
    base = ["evaluate", "--train", str(work / "train.parquet"), "--holdout",
            str(work / "holdout.parquet"), "--recommenders", "pop,ease", "--k", "10", "--json",
            "-q"]
    code, plain, _ = run([*base, "--synthetic", str(aug)], capsys)
    assert code == 0
    code, both, _ = run([*base, "--synthetic", str(aug), "--augmented", str(aug)], capsys)
    assert code == 0
    plain, both = json.loads(plain), json.loads(both)
    assert set(both) - set(plain) == {"augmented"}
    assert both["utility"] == plain["utility"] and both["fairness"] == plain["fairness"]
    section = both["augmented"]
    assert set(section) == {"data", "utility", "groups"}
    ease = section["utility"]["ease"]
    assert {"real", "augmented", "lift"} <= set(ease)
    assert ease["real"] == plain["utility"]["ease"]["real"]
    assert ease["lift"]["ndcg@10"] == pytest.approx(
        ease["augmented"]["ndcg@10"] / ease["real"]["ndcg@10"] - 1)
    groups = section["groups"]
    assert {"top5", "rest", "bottom20"} == set(groups["activity"]["groups"])
    assert "segment" in groups and "change" in groups["segment"]["gap"]["ease"]
    assert section["data"]["users_not_in_train"] == round(
        0.2 * pl.read_parquet(work / "train.parquet")["user_id"].n_unique())
    code, only, _ = run([*base, "--augmented", str(aug)], capsys)
    assert code == 0
    assert set(json.loads(only)) == {"schema_version", "recsynth_version", "config", "data",
                                     "augmented", "gates"}


def test_augmented_log_must_not_hold_heldout_users(work: Path, capsys) -> None:
    code, _, err = run(["evaluate", "--train", str(work / "train.parquet"), "--holdout",
                        str(work / "holdout.parquet"), "--augmented",
                        str(work / "log.parquet"), "-q"], capsys)
    assert code == 3 and "must not contain held-out users" in err


def test_augmented_user_keys_must_read_as_the_real_dtype(work: Path, tmp_path: Path,
                                                         capsys) -> None:
    aug = tmp_path / "aug.parquet"
    train = pl.read_parquet(work / "train.parquet")
    train.with_columns(pl.format("u{}", pl.col("user_id")).alias("user_id")).write_parquet(aug)
    code, _, err = run(["evaluate", "--train", str(work / "train.parquet"), "--holdout",
                        str(work / "holdout.parquet"), "--augmented", str(aug), "-q"], capsys)
    assert code == 3 and str(aug) in err and "'user_id'" in err and "cannot be read" in err


def test_model_without_conditions_refuses_where(tmp_path: Path, capsys) -> None:
    # sample_data's own log has no user-level attribute (country varies within users)
    model = tmp_path / "plain"
    assert main(["fit", str(ROOT / "interactions.parquet"), "--out", str(model), "--epochs", "1",
                 "--holdout-frac", "0", "--temperature", "0.01", "--rank", "8", "-q"]) == 0
    assert not (model / "conditions.json").exists()
    assert json.loads((model / "config.json").read_text())["n_cond"] == 0
    out = tmp_path / "s.parquet"
    assert run(["sample", str(model), "--users", "3", "--out", str(out), "-q"], capsys)[0] == 0
    code, _, err = run(["sample", str(model), "--users", "3", "--out", str(tmp_path / "t.parquet"),
                        "--where", "segment=a"], capsys)
    assert code == 2 and "no user-level attribute" in err


def test_conditional_model_missing_its_conditions_is_refused(work: Path, tmp_path: Path,
                                                             capsys) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(work / "model", broken)
    (broken / "conditions.json").unlink()
    out = tmp_path / "s.parquet"
    code, _, err = run(["sample", str(broken), "--users", "3", "--out", str(out)], capsys)
    assert code == 3 and "condition inputs" in err and not out.exists()


def test_augment_data_with_null_keys_is_a_data_error(work: Path, tmp_path: Path,
                                                     capsys) -> None:
    data = tmp_path / "nulls.parquet"
    train = pl.read_parquet(work / "train.parquet")
    train.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(None)
                       .otherwise(pl.col("user_id")).alias("user_id")).write_parquet(data)
    out = tmp_path / "aug.parquet"
    code, _, err = run(["augment", str(data), str(work / "model"), "--out", str(out),
                        "--strategy", "match"], capsys)
    assert code == 3 and "null key" in err and not out.exists()


def test_values_held_by_few_users_keep_nothing_of_them(work: Path) -> None:
    from recsynth.conditions import MIN_GROUP_USERS

    model = load_model(work / "model")
    stats = model.conditions.columns["country"]
    small = np.asarray(stats.users) < MIN_GROUP_USERS
    assert small.any() and (~small).any()
    assert np.all(np.asarray(stats.shift)[small] == 0)
    assert np.allclose(np.asarray(stats.weights)[small], model.form.weights)
    assert np.any(np.asarray(stats.shift)[~small] != 0)


def test_model_from_before_conditional_training_still_samples_where(work: Path, tmp_path: Path,
                                                                     capsys) -> None:
    """A model written before the GAN took condition vectors: conditions.json, no n_cond,
    a generator and critic without condition inputs. `--where` still holds for every user
    (through the closed-form group statistics)."""
    import shutil

    import torch

    old = tmp_path / "old-model"
    shutil.copytree(work / "model", old)
    config = json.loads((old / "config.json").read_text())
    n_cond = config.pop("n_cond")
    (old / "config.json").write_text(json.dumps(config))
    tensors = torch.load(old / "weights.pt", weights_only=True)
    g = tensors["generator.net.0.weight"]
    tensors["generator.net.0.weight"] = g[:, :g.shape[1] - n_cond].clone()
    c = tensors["critic.net.0.weight"]
    pac = json.loads((work / "model" / "config.json").read_text())["model"]["pac"]
    per_user = c.shape[1] // pac
    tensors["critic.net.0.weight"] = c.reshape(c.shape[0], pac, per_user)[
        :, :, :per_user - n_cond].reshape(c.shape[0], -1).clone()
    torch.save(tensors, old / "weights.pt")
    assert load_model(old).generator.n_cond == 0
    out = tmp_path / "s.parquet"
    code, _, _ = run(["sample", str(old), "--users", "20", "--where", "segment=a",
                      "--out", str(out), "-q"], capsys)
    assert code == 0 and (pl.read_parquet(out).get_column("segment") == "a").all()


def test_generator_gets_a_condition_vector_for_one_where_only(work: Path) -> None:
    from recsynth.conditions import Request
    from recsynth.sampling import make_shaping

    model = load_model(work / "model")
    one = make_shaping(model, Request(where=(("segment", "a"),))).plan
    assert one.vector is not None and one.vector.sum() == 1
    assert len(one.vector) == model.generator.n_cond > 0
    two = make_shaping(model, Request(where=(("segment", "a"),
                                             ("country", "United Kingdom")))).plan
    assert two.vector is None  # the generator saw one value at a time in training


@pytest.mark.parametrize("cast", [pl.col("user_id").cast(pl.Float64),
                                  pl.concat_list("item_id").alias("item_id")])
def test_augment_data_of_other_dtypes_is_a_data_error(cast: pl.Expr, work: Path, tmp_path: Path,
                                                      capsys) -> None:
    """Float user keys or list item keys were internal errors; the column is named now."""
    data = tmp_path / "other.parquet"
    pl.read_parquet(work / "train.parquet").with_columns(cast).write_parquet(data)
    out = tmp_path / "aug.parquet"
    code, _, err = run(["augment", str(data), str(work / "model"), "--out", str(out)], capsys)
    assert code == 3 and "here but" in err and "the log the model was fitted on" in err
    assert "Traceback" not in err and not out.exists()
