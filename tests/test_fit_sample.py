"""fit → sample through the CLI on shipped data: schema, determinism, safety, structure."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsynth.checkpoint import load_model
from recsynth.cli import main
from recsynth.errors import DataError


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
            "rowmodel"} <= names
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model"]["epochs"] == 3 and config["model"]["seed"] == 0
    history = [json.loads(line) for line in (model_dir / "training.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0, 1, 2, 3]
    assert all("check_ndcg10" in h for h in (history[0], history[-1]))
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert len(manifest["inputs"][0]["sha256"]) == 64
    assert manifest["versions"]["torch"]
    from recsynth.config import TEMPERATURE_GRID

    search = manifest["temperature_search"]
    assert sorted(float(t) for t in search) == sorted(TEMPERATURE_GRID)
    chosen = config["model"]["temperature"]
    admissible = [float(t) for t, v in search.items()
                  if v["dcr_share"] <= config["model"]["max_dcr_share"]]
    if admissible:  # the best held-out utility among the admissible temperatures
        assert chosen == max(admissible, key=lambda t: search[str(t)]["check_ndcg10"])


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


def test_fit_is_deterministic(model_dir: Path, sample_path: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    assert main(["fit", str(sample_path), "--out", str(again), "--epochs", "3", "-q"]) == 0
    assert (again / "weights.pt").read_bytes() == (model_dir / "weights.pt").read_bytes()


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
])
def test_damaged_model_directory_is_one_line_exit_3(model_dir: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    damage: str, message: str) -> None:
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    if damage == "missing":
        (bad / "weights.pt").unlink()
    else:
        meta = json.loads((bad / "config.json").read_text())
        meta["format_version"] = 99
        (bad / "config.json").write_text(json.dumps(meta))
    out = tmp_path / "syn.parquet"
    code, _, err = run(["sample", str(bad), "--users", "5", "--out", str(out)], capsys)
    assert code == 3 and message in err and "Traceback" not in err
    assert not out.exists()


def test_interrupted_sample_leaves_no_output(model_dir: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from recsynth import sampling

    real = sampling.generate_batch

    def flaky(model, seed, batch, start, n, *rest):
        if batch == 2:
            raise KeyboardInterrupt
        return real(model, seed, batch, start, n, *rest)

    monkeypatch.setattr(sampling, "generate_batch", flaky)
    out = tmp_path / "syn.parquet"
    code, _, _ = run(["sample", str(model_dir), "--users", "50", "--batch-users", "10",
                      "--out", str(out)], capsys)
    assert code == 130
    assert list(tmp_path.iterdir()) == []


def test_rows_and_part_files(model_dir: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "parts"
    code, _, _ = run(["sample", str(model_dir), "--rows", "3000", "--batch-users", "8",
                      "--rows-per-file", "1000", "--out", str(out), "-q"], capsys)
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
    assert main(["fit", str(data), "--out", str(model), "--epochs", "2", "--rank", "8",
                 "-q"]) == 0
    out = tmp_path / "syn.parquet"
    assert main(["sample", str(model), "--users", "300", "--out", str(out), "-q"]) == 0
    syn = pl.read_parquet(out).with_columns((pl.col("item_id") >= 40).alias("b"))
    mixed = syn.group_by("user_id").agg(pl.col("b").n_unique().alias("k"))
    assert (mixed["k"] > 1).mean() <= 0.05


@pytest.mark.parametrize("case,message", [
    ("one_user", "at least 2 users"),
    ("null_keys", "null key"),
])
def test_fit_bad_input(case: str, message: str, tmp_path: Path,
                       capsys: pytest.CaptureFixture[str]) -> None:
    frames = {
        "one_user": pl.DataFrame({"user_id": [1, 1, 1], "item_id": [1, 2, 3]}),
        "null_keys": pl.DataFrame({"user_id": [1, None, 2], "item_id": [1, 2, 3]}),
    }
    data = tmp_path / "log.parquet"
    frames[case].write_parquet(data)
    out = tmp_path / "m"
    code, _, err = run(["fit", str(data), "--out", str(out)], capsys)
    assert code == 3 and message in err and "Traceback" not in err
    assert not out.exists()


def test_duplicate_rows_and_all_null_columns_are_accepted(sample_frame: pl.DataFrame,
                                                          tmp_path: Path) -> None:
    """Documented behaviour: duplicates are interactions like any other; an all-null column
    is kept in the schema and comes back all-null."""
    log = pl.concat([sample_frame, sample_frame.head(500)]).with_columns(
        pl.lit(None, dtype=pl.Float64).alias("empty"))
    data = tmp_path / "log.parquet"
    log.write_parquet(data)
    assert main(["fit", str(data), "--out", str(tmp_path / "m"), "--epochs", "1", "-q"]) == 0
    out = tmp_path / "syn.parquet"
    assert main(["sample", str(tmp_path / "m"), "--users", "10", "--out", str(out), "-q"]) == 0
    syn = pl.read_parquet(out)
    assert syn["empty"].null_count() == syn.height


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
    (["--temperature", "0"], "temperature"),
    (["--time-budget", "soon"], "--time-budget"),
    (["--device", "tpu"], "--device"),
])
def test_fit_usage_errors(args: list[str], message: str, sample_path: Path, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m"
    code, _, err = run(["fit", str(sample_path), "--out", str(out), *args], capsys)
    assert code == 2 and message in err
    assert not out.exists()
