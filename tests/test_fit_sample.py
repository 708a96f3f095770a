"""fit → sample through the CLI on shipped data: schema, determinism, safety, structure."""

from __future__ import annotations

import json
import pickle
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
import torch

from recsynth.checkpoint import load_model
from recsynth.cli import main
from recsynth.config import OTHER_SOFTNESS
from recsynth.decode import decode
from recsynth.errors import DataError
from recsynth.latent import ACTIVITY_POWER


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory, sample_path: Path) -> Path:
    out = tmp_path_factory.mktemp("fit") / "model"
    assert main(["fit", str(sample_path), "--out", str(out), "--epochs", "3", "-q"]) == 0
    return out


def test_model_directory_contents(model_dir: Path) -> None:
    names = {p.name for p in model_dir.iterdir()}
    assert {"config.json", "weights.pt", "catalog.parquet", "training.jsonl", "manifest.json",
            "rowmodel", "training.png"} <= names
    assert (model_dir / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model"]["epochs"] == 3 and config["model"]["seed"] == 0
    history = [json.loads(line) for line in (model_dir / "training.jsonl").read_text().splitlines()]
    checked = [h for h in history if h.get("pass") != "refit"]
    assert [h["epoch"] for h in checked] == [0, 1, 2, 3]
    assert all("check_ndcg10" in h for h in (checked[0], checked[-1]))
    # then the refit on every user repeats the epochs the checked run trained
    assert [h["epoch"] for h in history if h.get("pass") == "refit"] == [0, 1, 2, 3]
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert len(manifest["inputs"][0]["sha256"]) == 64
    assert manifest["versions"]["torch"]
    from recsynth.config import TEMPERATURE_GRID

    search = manifest["temperature_search"]
    assert sorted(float(t) for t in search) == sorted(TEMPERATURE_GRID)
    model = config["model"]  # the search's rule (tested alone in test_check_size.py)
    safe = [float(t) for t, v in search.items() if v["dcr_share"] <= model["max_dcr_share"]]
    if safe:  # the softest inside the guard within one standard error of the best check
        assert model["temperature"] == max(
            t for t in safe if search[str(t)]["gap"] <= max(
                0.0, model["check_slack_se"] * search[str(t)]["gap_se"]))
        assert min(search[str(t)]["gap"] for t in safe) == 0.0


def test_sample_has_the_real_schema_and_new_users(model_dir: Path, sample_frame: pl.DataFrame,
                                                  tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "syn.parquet"
    code, stdout, _ = run(["sample", str(model_dir), "--users", "50", "--out", str(out)], capsys)
    assert code == 0 and stdout.strip() == str(out)
    syn = pl.read_parquet(out)
    assert syn.schema == sample_frame.schema
    assert syn["user_id"].n_unique() == 50
    assert not set(syn["user_id"]) & set(sample_frame["user_id"])
    assert set(syn["item_id"]) <= set(sample_frame["item_id"])
    # repeated purchases of an item come back at about the real rate
    real_ratio = sample_frame.height / sample_frame.select("user_id", "item_id").n_unique()
    syn_ratio = syn.height / syn.select("user_id", "item_id").n_unique()
    assert 1.0 <= syn_ratio and abs(syn_ratio - real_ratio) / real_ratio < 0.5
    gaps = syn.group_by("user_id", maintain_order=True).agg(
        (pl.col("timestamp").diff().dt.total_seconds() >= 0).all().alias("ordered"))
    assert gaps["ordered"].all()


def test_same_seed_byte_identical_other_seed_differs(model_dir: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    paths = []
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        paths.append(tmp_path / f"{name}.parquet")
        assert run(["sample", str(model_dir), "--users", "40", "--seed", seed, "--out",
                    str(paths[-1]), "-q"], capsys)[0] == 0
    a, b, c = (p.read_bytes() for p in paths)
    assert a == b
    assert a != c


def test_drawing_ahead_in_a_thread_writes_the_batches_made_one_by_one(
        model_dir: Path, tmp_path: Path) -> None:
    from recsynth import sampling

    model = load_model(model_dir)
    out = tmp_path / "syn.parquet"
    sampling.sample_to_parquet(model, str(out), seed=4, batch_users=7, n_users=30)
    sizes = (7, 7, 7, 7, 2)
    one_by_one = pl.concat([sampling.generate_batch(model, 4, b, 7 * b, n)
                            for b, n in enumerate(sizes)])
    assert pl.read_parquet(out).equals(one_by_one)
    assert pq.ParquetFile(out).metadata.num_row_groups == len(sizes)  # one per batch, in order


def test_fit_is_deterministic(model_dir: Path, sample_path: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    assert main(["fit", str(sample_path), "--out", str(again), "--epochs", "3", "-q"]) == 0
    assert (again / "weights.pt").read_bytes() == (model_dir / "weights.pt").read_bytes()
    for name in ("rowmodel/rowmodel.json", "config.json"):  # the per-row model's floats too
        assert (again / name).read_bytes() == (model_dir / name).read_bytes(), name


class _Evil:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/recsynth-pwned"),))


def test_pickled_weights_are_refused(model_dir: Path, tmp_path: Path) -> None:
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    with (bad / "weights.pt").open("wb") as fh:
        pickle.dump({"x": _Evil()}, fh)
    Path("/tmp/recsynth-pwned").unlink(missing_ok=True)
    with pytest.raises(DataError, match="refusing to load"):
        load_model(bad)
    assert not Path("/tmp/recsynth-pwned").exists()


@pytest.mark.parametrize("damage,message", [
    ("missing", "missing from the model directory"),
    ("version", "refit the model"),
    ("not an object", "expected a JSON object"),
    ("wrong type", "setting 'temperature' is 'hot'"),
    ("bad value", "--temperature must be positive"),
    ("catalog", "incomplete or corrupt"),
    ("conditions", "incomplete or corrupt"),
    ("nan weights", "is not a tensor of finite numbers"),
    ("factor shape", "does not fit the item biases"),
    ("short catalog", "catalog.parquet holds 10 items"),
    ("renamed key", "schema differs from the row model's"),
])
def test_damaged_model_directory_is_one_line_exit_3(model_dir: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    damage: str, message: str) -> None:
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    meta = json.loads((bad / "config.json").read_text())
    if damage == "missing":
        (bad / "weights.pt").unlink()
    elif damage == "not an object":
        (bad / "config.json").write_text("[]")
    elif damage == "catalog":  # the middle of the file zeroed: its pages no longer decode
        data = bytearray((bad / "catalog.parquet").read_bytes())
        third = len(data) // 3
        data[third:2 * third] = bytes(third)
        (bad / "catalog.parquet").write_bytes(bytes(data))
    elif damage == "conditions":  # valid JSON of the wrong shape
        (bad / "conditions.json").write_text('{"columns": []}')
    elif damage in ("nan weights", "factor shape"):
        import torch

        tensors = torch.load(bad / "weights.pt", weights_only=True)
        tensors["form.item_factors"] = (torch.zeros(3) if damage == "factor shape" else
                                        torch.full_like(tensors["form.item_factors"], np.nan))
        torch.save(tensors, bad / "weights.pt")
    elif damage == "short catalog":
        pl.read_parquet(bad / "catalog.parquet").head(10).write_parquet(bad / "catalog.parquet")
    elif damage == "renamed key":
        (bad / "config.json").write_text(json.dumps(meta).replace('"user_id"', '"uid"'))
    else:
        if damage == "version":
            meta["format_version"] = 99
        else:
            meta["model"]["temperature"] = "hot" if damage == "wrong type" else -1.0
        (bad / "config.json").write_text(json.dumps(meta))
    out = tmp_path / "syn.parquet"
    code, _, err = run(["sample", str(bad), "--users", "5", "--out", str(out)], capsys)
    assert code == 3 and message in err and "Traceback" not in err
    assert not out.exists()


def test_format_2_models_load_without_sessions(model_dir: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Models saved before timeline sessions (format 2) still sample; new ones say format 3,
    which an older recsynth refuses instead of dropping the sessions."""
    import shutil

    assert json.loads((model_dir / "config.json").read_text())["format_version"] == 3
    old = tmp_path / "old"
    shutil.copytree(model_dir, old)
    meta = json.loads((old / "config.json").read_text())
    (old / "config.json").write_text(json.dumps({**meta, "format_version": 2}))
    rows = json.loads((old / "rowmodel" / "rowmodel.json").read_text())
    rows["timeline"].pop("sessions", None)
    (old / "rowmodel" / "rowmodel.json").write_text(json.dumps(rows))
    out = tmp_path / "syn.parquet"
    code, _, err = run(["sample", str(old), "--users", "5", "--out", str(out), "-q"], capsys)
    assert code == 0, err
    assert pl.read_parquet(out)["user_id"].n_unique() == 5


def test_interrupted_sample_leaves_no_output(model_dir: Path, tmp_path: Path, interrupt_batch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    interrupt_batch(2)
    out = tmp_path / "syn.parquet"
    code, _, _ = run(["sample", str(model_dir), "--users", "50", "--batch-users", "10",
                      "--out", str(out)], capsys)
    assert code == 130
    assert list(tmp_path.iterdir()) == []


def test_rows_and_part_files(model_dir: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "parts"
    code, _, _ = run(["sample", str(model_dir), "--rows", "3000", "--batch-users", "8",
                      "--rows-per-file", "500", "--out", str(out), "-q"], capsys)
    assert code == 0
    parts = sorted(out.glob("*.parquet"))
    assert len(parts) >= 2
    frame = pl.read_parquet(out)
    last_user_rows = frame.filter(pl.col("user_id") == frame["user_id"][-1]).height
    assert 3000 <= frame.height < 3000 + last_user_rows  # whole users up to the target
    users = [set(pl.read_parquet(p)["user_id"]) for p in parts]
    assert not set.intersection(*users[:2])  # a user is never split across files


def test_disjoint_communities_stay_disjoint(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for user in range(300):
        community = user % 2
        items = rng.choice(40, size=rng.integers(5, 15), replace=False) + 40 * community
        rows += [(user, int(i)) for i in items]
    log = pl.DataFrame(rows, schema={"user_id": pl.Int64, "item_id": pl.Int64}, orient="row")
    data = tmp_path / "log.parquet"
    log.write_parquet(data)
    model = tmp_path / "m"
    # the decoder temperature pinned: the mixture keeps the communities apart (1-3 % of
    # users mixed over fit and sample seeds); at 0.02, which the privacy-guarded search
    # picks for some seeds, 11-16 % of users mix (measured 2026-11-28)
    assert main(["fit", str(data), "--out", str(model), "--epochs", "2", "--rank", "8",
                 "--temperature", "0.01", "-q"]) == 0
    out = tmp_path / "syn.parquet"
    assert main(["sample", str(model), "--users", "300", "--out", str(out), "-q"]) == 0
    syn = pl.read_parquet(out).with_columns((pl.col("item_id") >= 40).alias("b"))
    mixed = syn.group_by("user_id").agg(pl.col("b").n_unique().alias("k"))
    assert (mixed["k"] > 1).mean() <= 0.05


@pytest.mark.parametrize("case,message", [
    ("one_user", "at least 2 users"),
    ("one_item", "2 items"),
    ("null_keys", "null key"),
    ("mixed_parts", "is String here but Int64"),
    ("float_keys", "user keys of dtype Float64 are not supported"),
    ("enum_keys", "user keys of dtype Enum are not supported"),
    ("list_items", "item keys of dtype List(Int64) are not supported"),
    ("corrupt", "cannot read"),
])
def test_fit_bad_input(case: str, message: str, tmp_path: Path,
                       capsys: pytest.CaptureFixture[str]) -> None:
    frames = {
        "one_user": pl.DataFrame({"user_id": [1, 1, 1], "item_id": [1, 2, 3]}),
        "one_item": pl.DataFrame({"user_id": [1, 2, 3], "item_id": [7, 7, 7]}),
        "null_keys": pl.DataFrame({"user_id": [1, None, 2], "item_id": [1, 2, 3]}),
        "float_keys": pl.DataFrame({"user_id": [1.5, 2.5, 3.5], "item_id": [1, 2, 3]}),
        "enum_keys": pl.DataFrame({"user_id": pl.Series(["a", "b", "c"],
                                                        dtype=pl.Enum(["a", "b", "c"])),
                                   "item_id": [1, 2, 3]}),
        "list_items": pl.DataFrame({"user_id": [1, 2, 3], "item_id": [[1], [2, 3], [3]]}),
    }
    if case == "mixed_parts":
        data = tmp_path / "parts"
        data.mkdir()
        pl.DataFrame({"user_id": [1, 2], "item_id": [1, 2]}).write_parquet(data / "a.parquet")
        pl.DataFrame({"user_id": [3, 4], "item_id": ["1", "3"]}).write_parquet(
            data / "b.parquet")
    elif case == "corrupt":  # footer intact, pages scrambled: fails only when rows are read
        data = tmp_path / "log.parquet"
        pl.DataFrame({"user_id": list(range(200)), "item_id": list(range(200)),
                      "rating": [4] * 200}).write_parquet(data)
        raw = bytearray(data.read_bytes())
        for k in range(100, len(raw) // 2):
            raw[k] = (raw[k] * 7 + 3) % 256
        data.write_bytes(bytes(raw))
    else:
        data = tmp_path / "log.parquet"
        frames[case].write_parquet(data)
    out = tmp_path / "models" / "m"  # a folder fit would create: left out on failure too
    code, _, err = run(["fit", str(data), "--out", str(out)], capsys)
    assert code == 3 and message in err and "Traceback" not in err
    assert not out.parent.exists()


def test_other_dates_are_modelled_and_unmodelled_columns_are_named(
        sample_frame: pl.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A second date or a duration is a numeric column (by its physical value); a nested
    column cannot be modelled, comes out null, and fit says so."""
    n = sample_frame.height
    log = sample_frame.with_columns(
        (pl.date(2020, 1, 1) + pl.duration(days=pl.int_range(n) % 97)).alias("ship_day"),
        pl.duration(minutes=pl.int_range(n) % 50).alias("wait"),
        pl.concat_list(pl.int_range(n), pl.int_range(n)).alias("tags"))
    data = tmp_path / "log.parquet"
    log.write_parquet(data)
    code, _, err = run(["fit", str(data), "--out", str(tmp_path / "m"), "--epochs", "0"],
                       capsys)
    assert code == 0 and "column 'tags' (List(Int64)) is not modelled" in err
    assert "'ship_day'" not in err and "'wait'" not in err
    # the temperature search logs each value it scores, then the one it chose
    from recsynth.fitting import TEMPERATURE_GRID

    searched = [line for line in err.splitlines() if "held-out DCR share" in line]
    assert len(searched) == len(TEMPERATURE_GRID)
    chosen = json.loads((tmp_path / "m" / "config.json").read_text())["model"]["temperature"]
    assert f"at temperature {chosen:g} (" in err
    out = tmp_path / "syn.parquet"
    assert main(["sample", str(tmp_path / "m"), "--users", "50", "--out", str(out), "-q"]) == 0
    syn = pl.read_parquet(out)
    assert syn.schema == log.schema
    for col in ("ship_day", "wait"):
        assert syn[col].null_count() == 0
        assert log[col].min() <= syn[col].min() and syn[col].max() <= log[col].max()
    assert syn["tags"].null_count() == syn.height


def test_synthetic_user_keys_never_wrap_nor_collide() -> None:
    from types import SimpleNamespace

    from recsynth.fitting import _user_key_info
    from recsynth.sampling import user_keys

    def model(info: dict) -> SimpleNamespace:
        return SimpleNamespace(user_key=info, schema=SimpleNamespace(user_col="u"))

    top = 2**63 - 3  # Int64 keys near the maximum: three fit, a fourth would wrap
    assert user_keys(model({"dtype": "Int64", "first_new": top}), 0, 3).to_list() == \
        [top, top + 1, top + 2]
    with pytest.raises(DataError, match="do not fit the real key dtype Int64"):
        user_keys(model({"dtype": "Int64", "first_new": top}), 0, 4)
    huge = _user_key_info(pl.Series([2**63 + 5], dtype=pl.UInt64))  # beyond Int64
    keys = user_keys(model(huge), 1, 2)
    assert keys.dtype == pl.UInt64 and keys.to_list() == [2**63 + 7, 2**63 + 8]
    # string keys: a prefix no real key starts with
    info = _user_key_info(pl.Series(["syn-000000000", "syn-000000001", "x"]))
    assert info["prefix"] == "syn2-"
    assert user_keys(model(info), 0, 2).to_list() == ["syn2-000000000", "syn2-000000001"]


def test_duplicate_rows_and_all_null_columns_are_accepted(sample_frame: pl.DataFrame,
                                                          tmp_path: Path) -> None:
    """Documented behaviour: duplicates are interactions like any other; an all-null column
    is kept in the schema and comes back all-null. Columns come back in the log's order,
    keys last here."""
    log = pl.concat([sample_frame, sample_frame.head(500)]).with_columns(
        pl.lit(None, dtype=pl.Float64).alias("empty"))
    log = log.select(reversed(log.columns))
    data = tmp_path / "log.parquet"
    log.write_parquet(data)
    assert main(["fit", str(data), "--out", str(tmp_path / "m"), "--epochs", "1", "-q"]) == 0
    out = tmp_path / "syn.parquet"
    assert main(["sample", str(tmp_path / "m"), "--users", "10", "--out", str(out), "-q"]) == 0
    syn = pl.read_parquet(out)
    assert syn.schema == log.schema
    assert syn["empty"].null_count() == syn.height


def test_negative_and_out_of_range_epoch_timestamps_round_trip(tmp_path: Path) -> None:
    """Documented behaviour: integer timestamps stay integers in their own unit; pre-1970
    (negative) values and values past the datetime range of the declared unit are kept,
    and synthetic times stay inside the real span."""
    rng = np.random.default_rng(1)
    users = np.repeat(np.arange(60), 6)
    ts = np.sort(rng.integers(-4 * 10**9, 10**9, users.size))
    ts[-1] = 4 * 10**18  # past year 2262 in ns, far past the datetime range in seconds
    log = pl.DataFrame({"user_id": users, "item_id": rng.integers(0, 25, users.size),
                        "ts": ts})
    data = tmp_path / "log.parquet"
    log.write_parquet(data)
    schema = tmp_path / "schema.toml"
    schema.write_text('schema_version = 1\n[columns."user_id"]\nrole = "user_key"\n'
                      '[columns."item_id"]\nrole = "item_key"\n'
                      '[columns."ts"]\nrole = "timestamp"\ntime_unit = "s"\n')
    assert main(["fit", str(data), "--schema", str(schema), "--out", str(tmp_path / "m"),
                 "--epochs", "1", "-q"]) == 0
    out = tmp_path / "syn.parquet"
    assert main(["sample", str(tmp_path / "m"), "--users", "30", "--out", str(out), "-q"]) == 0
    syn = pl.read_parquet(out)
    assert syn.schema["ts"] == pl.Int64
    assert syn["ts"].min() >= ts.min() and syn["ts"].max() <= ts.max()
    assert (syn["ts"] < 0).any()


def test_durations_and_time_budget(sample_path: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from recsynth.errors import UsageError
    from recsynth.fitting import parse_duration

    assert parse_duration("90") == 90 and parse_duration("10m") == 600
    assert parse_duration("1.5h") == 5400
    for bad in ("soon", "-1m", "0"):
        with pytest.raises(UsageError):
            parse_duration(bad)
    out = tmp_path / "m"
    code, _, _ = run(["fit", str(sample_path), "--out", str(out), "--epochs", "500",
                      "--time-budget", "0.5s", "-q"], capsys)
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stopped"] == "time budget"
    assert len((out / "training.jsonl").read_text().splitlines()) < 500


@pytest.mark.parametrize("args,message", [
    (["--max-dcr-share", "0.3"], "--max-dcr-share"),
    (["--temperature", "0"], "--temperature must be positive"),
    (["--like-threshold", "nan"], "--like-threshold must be a finite number"),
    (["--epochs", "-1"], "--epochs must be at least 0"),
    (["--rank", "0"], "--rank must be at least 1"),
    (["--other-softness", "0"], "--other-softness"),
    (["--time-budget", "soon"], "--time-budget"),
    (["--device", "tpu"], "--device"),
    (["--precision", "fp16"], "--precision"),
])
def test_fit_usage_errors(args: list[str], message: str, sample_path: Path, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m"
    code, _, err = run(["fit", str(sample_path), "--out", str(out), *args], capsys)
    assert code == 2 and message in err
    assert not out.exists()


def test_side_tables_become_user_and_item_attributes(sample_frame: pl.DataFrame,
                                                      tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1] / "sample_data"
    small = sample_frame.filter(pl.col("user_id").is_in(sample_frame["user_id"].unique()
                                                        .sort().head(120).implode()))
    data, users = tmp_path / "log.parquet", tmp_path / "users.parquet"
    small.write_parquet(data)
    side = pl.read_parquet(root / "users.parquet").rename({"country": "home"})
    side.write_parquet(users)
    model = tmp_path / "m"
    assert main(["fit", str(data), "--users", str(users), "--items",
                 str(root / "items.parquet"), "--out", str(model), "--epochs", "1",
                 "-q"]) == 0
    out = tmp_path / "syn.parquet"
    assert main(["sample", str(model), "--users", "40", "--out", str(out), "-q"]) == 0
    syn = pl.read_parquet(out)
    assert {"home", "description", "median_unit_price"} <= set(syn.columns)
    assert syn.group_by("user_id").agg(pl.col("home").n_unique())["home"].max() == 1
    assert set(syn["home"].drop_nulls()) <= set(side["home"])
    items = pl.read_parquet(root / "items.parquet")
    joined = syn.join(items, on="item_id", suffix="_real")
    assert joined.height == syn.height
    assert (joined["description"] == joined["description_real"]).all()


@pytest.mark.parametrize("table,message", [
    (pl.DataFrame({"user_id": [12348, 12348], "home": ["a", "b"]}), "duplicate keys"),
    (pl.DataFrame({"customer": [12348], "home": ["a"]}), "'user_id' (the key to join on)"),
    (pl.DataFrame({"user_id": ["x"], "home": ["a"]}), "cannot be read as Int64"),
    (pl.DataFrame({"user_id": [12348], "country": ["a"]}), "'country' is also in"),
])
def test_side_table_errors(table: pl.DataFrame, message: str, sample_path: Path, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    users = tmp_path / "users.parquet"
    table.write_parquet(users)
    out = tmp_path / "m"
    code, _, err = run(["fit", str(sample_path), "--users", str(users), "--out", str(out)],
                       capsys)
    assert code == 3 and message in err and str(users) in err
    assert not out.exists()


def _weights(model: Path) -> dict:
    import torch

    return torch.load(model / "weights.pt", weights_only=True)


@pytest.mark.parametrize("conditional", [False, True])
def test_resume_continues_to_the_uninterrupted_result(conditional: bool, sample_path: Path,
                                                      tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import recsynth.fitting as fitting

    data = sample_path
    if conditional:  # a user-level country: the GAN trains a condition vector by sampling
        data = tmp_path / "log.parquet"
        users = pl.read_parquet(sample_path.parent / "users.parquet")
        pl.read_parquet(sample_path).drop("country").join(users, on="user_id") \
            .write_parquet(data)
    args = [str(data), "--epochs", "4", "--temperature", "0.01", "--rank", "8", "-q"]
    assert main(["fit", *args, "--out", str(tmp_path / "full")]) == 0
    out = tmp_path / "part"
    real_save = fitting.save_checkpoint

    def interrupted(path: Path, key: str, state: dict) -> None:
        real_save(path, key, state)
        if state["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(fitting, "save_checkpoint", interrupted)
    code, _, err = run(["fit", *args, "--out", str(out)], capsys)
    ckpt = tmp_path / "part.checkpoint.pt"
    assert code == 130 and not out.exists() and ckpt.is_file()
    monkeypatch.setattr(fitting, "save_checkpoint", real_save)

    code, _, err = run(["fit", *args, "--rank", "9", "--out", str(out), "--resume"], capsys)
    assert code == 3 and "other settings" in err and ckpt.is_file()
    assert main(["fit", *args, "--out", str(out), "--resume"]) == 0
    assert not ckpt.exists()
    full, part = _weights(tmp_path / "full"), _weights(out)
    assert full.keys() == part.keys()
    assert all(bool((full[k] == part[k]).all()) for k in full)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["resumed_after_epoch"] == 2
    epochs = [r["epoch"] for r in map(json.loads, (out / "training.jsonl").open())
              if r.get("pass") != "refit"]
    assert epochs == [0, 1, 2, 3, 4]
    n_cond = json.loads((out / "config.json").read_text())["n_cond"]
    assert (n_cond > 0) == conditional

    code, _, err = run(["fit", *args, "--out", str(tmp_path / "other"), "--resume"], capsys)
    assert code == 2 and "no checkpoint" in err


def test_sigterm_leaves_a_resumable_checkpoint_and_no_model(sample_path: Path,
                                                            tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "m"
    ckpt = tmp_path / "m.checkpoint.pt"
    proc = subprocess.Popen([sys.executable, "-m", "recsynth", "fit", str(sample_path),
                             "--out", str(out), "--epochs", "100000", "--temperature", "0.01",
                             "--rank", "4", "--holdout-frac", "0", "-q"],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "terminated" in err and "Traceback" not in err
    assert ckpt.is_file() and not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_bf16_autocast_trains_and_is_recorded(sample_path: Path, tmp_path: Path) -> None:
    import torch

    out = tmp_path / "m"
    assert main(["fit", str(sample_path), "--out", str(out), "--epochs", "6", "--precision",
                 "bf16", "--temperature", "0.01", "--rank", "8", "--holdout-frac", "0",
                 "-q"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["precision"] == "bf16" and manifest["config"]["precision"] == "bf16"
    assert manifest["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    history = [json.loads(line) for line in (out / "training.jsonl").open()]
    losses = [r["loss_d"] for r in history[1:]] + [r["loss_g"] for r in history
                                                  if r.get("loss_g") is not None]
    assert len(losses) > 6 and all(np.isfinite(losses))
    assert load_model(out).generator.net[-1].weight.abs().sum() > 0  # trained, not identity


def test_cuda_without_a_gpu_is_a_usage_error(sample_path: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the cuda path is exercised by the benchmarks")
    code, _, err = run(["fit", str(sample_path), "--out", str(tmp_path / "m"), "--device",
                        "cuda"], capsys)
    assert code == 2 and "no CUDA device" in err


def test_a_model_saved_before_activity_scaling_decodes_unscaled(model_dir: Path,
                                                                tmp_path: Path) -> None:
    """config.json without activity_power: the decoder of its time (power 0)."""
    model_dir = Path(shutil.copytree(model_dir, tmp_path / "model"))
    model = load_model(model_dir)
    assert model.form.activity_power == ACTIVITY_POWER
    meta = json.loads((model_dir / "config.json").read_text())
    del meta["activity_power"]
    (model_dir / "config.json").write_text(json.dumps(meta))
    old = load_model(model_dir)
    assert old.form.activity_power == 0.0
    np.testing.assert_array_equal(old.form.item_factors, model.form.item_factors)
    x = torch.randn(64, model.form.dim, generator=torch.Generator().manual_seed(1))
    n = model.space.n_model_items
    t = model.config.temperature
    as_saved = decode(x, replace(old.form, activity_power=ACTIVITY_POWER), t, n,
                      torch.Generator().manual_seed(2))
    before = decode(x, old.form, t, n, torch.Generator().manual_seed(2))
    scaled = decode(x, model.form, t, n, torch.Generator().manual_seed(2))
    assert np.array_equal(as_saved.item_index, scaled.item_index)
    assert not np.array_equal(before.item_index, scaled.item_index)


def test_a_model_saved_before_the_softer_other_channel_decodes_both_alike(
        sample_frame: pl.DataFrame, tmp_path: Path) -> None:
    """config.json without other_softness: both channels at one temperature, as then."""
    rated = sample_frame.with_columns(
        rating=(pl.struct("user_id", "item_id").hash(seed=0) % 5 + 1).cast(pl.Float64))
    rated.write_parquet(tmp_path / "rated.parquet")
    model_dir = tmp_path / "model"
    assert main(["fit", str(tmp_path / "rated.parquet"), "--out", str(model_dir),
                 "--epochs", "0", "-q"]) == 0
    model = load_model(model_dir)
    assert model.form.n_channels == 2
    assert model.form.other_softness == model.config.other_softness == OTHER_SOFTNESS
    meta = json.loads((model_dir / "config.json").read_text())
    del meta["model"]["other_softness"]
    (model_dir / "config.json").write_text(json.dumps(meta))
    old = load_model(model_dir)
    assert old.form.other_softness == old.config.other_softness == 1.0
    x = torch.randn(64, model.form.dim, generator=torch.Generator().manual_seed(1))
    n, t = model.space.n_model_items, model.config.temperature
    before = decode(x, old.form, t, n, torch.Generator().manual_seed(2))
    now = decode(x, model.form, t, n, torch.Generator().manual_seed(2))
    # the liked channel is drawn first, from the same noise: only the other channel moves
    assert np.array_equal(before.item_index[before.liked], now.item_index[now.liked])
    assert not np.array_equal(before.item_index[~before.liked], now.item_index[~now.liked])
