"""End to end through the CLI, as a pipeline would call it: stdout, stderr, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from recsynth.cli import main

FAST = ["--recommenders", "pop,ease", "--k", "10", "--quiet"]


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def evaluate_args(split_dir: Path, synthetic: Path | str, *extra: str,
                  as_json: bool = True) -> list[str]:
    return ["evaluate", "--train", str(split_dir / "train.parquet"),
            "--holdout", str(split_dir / "holdout.parquet"), "--synthetic", str(synthetic),
            *(["--json"] if as_json else []), *extra]


@pytest.fixture(scope="session")
def identity_result(split_dir: Path) -> dict:
    """SYN = TRAIN with every recommender: the known answer of the whole protocol."""
    from recsynth.cli import main as cli_main

    out = split_dir / "identity.json"
    code = cli_main(evaluate_args(split_dir, split_dir / "train.parquet", "--quiet",
                                  "--out", str(out)))
    assert code == 0
    return json.loads(out.read_text())


def test_synthetic_equal_to_train_gives_ratio_one_and_full_leak(identity_result: dict) -> None:
    r = identity_result
    assert r["schema_version"] == 1
    assert set(r["utility"]) == {"pop", "itemknn", "ease", "bpr", "apr"}
    for name, figs in r["utility"].items():
        for metric, ratio in figs["ratio"].items():
            if figs["real"][metric]:
                assert ratio == pytest.approx(1.0), (name, metric)
    assert "ndcg@10" in r["utility"]["ease"]["ratio"]
    assert r["privacy"]["exact_copy_share"] == 1.0
    assert r["privacy"]["mia_auc"] >= 0.95
    assert r["fidelity"]["activity_ks"] == 0.0
    assert r["fidelity"]["item_popularity_tvd"] == pytest.approx(0.0, abs=1e-12)
    assert r["fairness"]["activity"]["groups"]["top5"]["n_users"] >= 1
    assert set(r["privacy"]) >= {"exact_copy_share", "dcr_share", "mia_auc", "nndr"}


def test_popularity_sampler_scores_far_lower(identity_result: dict, split_dir: Path,
                                             pop_synthetic: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(evaluate_args(split_dir, pop_synthetic, *FAST), capsys)
    assert code == 0
    r = json.loads(out)
    pop_ratio = r["utility"]["ease"]["ratio"]["ndcg@10"]
    assert pop_ratio < 0.75
    assert r["privacy"]["exact_copy_share"] < 0.05
    assert r["privacy"]["mia_auc"] < identity_result["privacy"]["mia_auc"]


def test_same_seed_same_json_and_row_order_does_not_matter(
        split_dir: Path, pop_synthetic: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    args = evaluate_args(split_dir, pop_synthetic, "--recommenders", "pop,itemknn,ease,bpr",
                         "--quiet")
    _, first, _ = run(args, capsys)
    _, second, _ = run(args, capsys)
    assert first == second
    shuffled = {}
    for name, path in (("train", split_dir / "train.parquet"),
                       ("holdout", split_dir / "holdout.parquet"), ("syn", pop_synthetic)):
        shuffled[name] = tmp_path / f"{name}.parquet"
        pl.read_parquet(path).sample(fraction=1.0, shuffle=True, seed=5).write_parquet(
            shuffled[name])
    code, third, _ = run(["evaluate", "--train", str(shuffled["train"]),
                          "--holdout", str(shuffled["holdout"]), "--synthetic",
                          str(shuffled["syn"]), "--json", *args[8:]], capsys)
    assert code == 0
    a, b = json.loads(first), json.loads(third)
    for r in (a, b):
        for side in ("train", "holdout", "synthetic"):
            r["data"][side].pop("path")
    assert a == b


def test_gate_failure_exits_5_and_still_reports(split_dir: Path, pop_synthetic: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(evaluate_args(split_dir, pop_synthetic, *FAST, "--fail-under",
                                       "tstr=0.99", "--fail-over", "mia_auc=0.9"), capsys)
    assert code == 5
    gates = json.loads(out)["gates"]
    assert [g["passed"] for g in gates] == [False, True]
    assert "quality gate failed: tstr" in err


def test_human_tables_go_to_stderr_only(split_dir: Path, pop_synthetic: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(evaluate_args(split_dir, pop_synthetic, "--recommenders", "pop",
                                       "--k", "10", as_json=False), capsys)
    assert code == 0
    assert out == ""
    assert "Utility" in err and "Privacy" in err and "Fidelity" in err


def _bad_inputs(split_dir: Path, tmp: Path) -> dict[str, tuple[list[str], int, str]]:
    train = pl.read_parquet(split_dir / "train.parquet")
    hold = pl.read_parquet(split_dir / "holdout.parquet")
    (tmp / "empty.parquet").write_bytes(b"")
    (tmp / "csv.parquet").write_text("user_id,item_id\n1,2\n")
    train.rename({"item_id": "sku_code"}).write_parquet(tmp / "renamed.parquet")
    train.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(None)
                       .otherwise(pl.col("user_id")).alias("user_id")
                       ).write_parquet(tmp / "nullkey.parquet")
    train.with_columns(pl.lit("NOT-AN-ITEM").alias("item_id")).write_parquet(tmp / "unknown.parquet")
    pl.concat([hold, train.head(5)]).write_parquet(tmp / "overlap.parquet")
    (tmp / "bad_schema.toml").write_text("[columns\n")
    syn = str(split_dir / "train.parquet")
    return {
        "missing": (evaluate_args(split_dir, tmp / "nope.parquet"), 3, "no such file"),
        "empty": (evaluate_args(split_dir, tmp / "empty.parquet"), 3, "empty"),
        "not_parquet": (evaluate_args(split_dir, tmp / "csv.parquet"), 3, "not a Parquet"),
        "misnamed_key": (evaluate_args(split_dir, tmp / "renamed.parquet"), 3, "'item_id' is missing"),
        "null_key": (evaluate_args(split_dir, tmp / "nullkey.parquet"), 3, "null key"),
        "unknown_items": (evaluate_args(split_dir, tmp / "unknown.parquet"), 3, "not in the real catalog"),
        "shared_users": (["evaluate", "--train", syn, "--holdout", str(tmp / "overlap.parquet"),
                          "--synthetic", syn], 3, "user(s) with"),
        "bad_schema": (evaluate_args(split_dir, syn, "--schema", str(tmp / "bad_schema.toml")), 3,
                       "cannot parse schema"),
        "bad_k": (evaluate_args(split_dir, syn, "--k", "ten"), 2, "--k"),
        "bad_recommender": (evaluate_args(split_dir, syn, "--recommenders", "svd"), 2, "unknown 'svd'"),
        "missing_option": (["evaluate", "--train", syn], 2, "Missing option"),
        "negative_seed": (evaluate_args(split_dir, syn, "--seed", "-1"), 2, "--seed"),
        "huge_seed": (evaluate_args(split_dir, syn, "--seed", str(2**62)), 2, "--seed"),
        "min_rating_without_rating": (evaluate_args(split_dir, syn, "--min-rating", "4"), 3,
                                      "rating column"),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "not_parquet", "misnamed_key", "null_key",
                                  "unknown_items", "shared_users", "bad_schema", "bad_k",
                                  "bad_recommender", "missing_option", "negative_seed",
                                  "huge_seed",
                                  "min_rating_without_rating"])
def test_bad_input_is_one_clear_line(case: str, split_dir: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    args, want_code, fragment = _bad_inputs(split_dir, tmp_path)[case]
    out_file = tmp_path / "report.json"
    code, out, err = run([*args, "--out", str(out_file)] if want_code == 3 else args, capsys)
    assert code == want_code
    assert fragment in err
    assert "Traceback" not in err
    assert out == ""
    assert not out_file.exists()
    errors = [line for line in err.splitlines() if "error" in line]  # progress lines aside
    assert len(errors) == 1 and err.strip().splitlines()[-1].startswith("recsynth: error: ")


@pytest.mark.parametrize("args,fragment,hint", [
    (["sample", "m", "--users", "abc", "--out", "x.parquet"], "'--users'", "recsynth sample"),
    (["sampel"], "No such command 'sampel'", "recsynth --help"),
    (["fit"], "Missing argument", "recsynth fit"),
    (["split", "in.parquet", "--bogus"], "No such option: --bogus", "recsynth split"),
    (["fit", "data.parquet", "--out"], "'--out' requires an argument", "recsynth fit"),
])
def test_command_line_errors_are_one_line(args: list[str], fragment: str, hint: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A cron log shows one line per failure, not typer's six-line usage panel."""
    code, out, err = run(args, capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("recsynth: error: ")
    assert fragment in err and f"(see `{hint}" in err


def test_existing_report_is_not_overwritten(split_dir: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report.json"
    report.write_text("precious")
    code, _, err = run(evaluate_args(split_dir, split_dir / "train.parquet", *FAST, "--out",
                                     str(report)), capsys)
    assert code == 4 and "--overwrite" in err
    assert report.read_text() == "precious"


def test_split_cli_refuses_existing_outputs(split_dir: Path, sample_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["split", str(sample_path), "--train", str(split_dir / "train.parquet"),
                        "--holdout", str(split_dir / "other.parquet")], capsys)
    assert code == 4
    assert not (split_dir / "other.parquet").exists()


def test_split_reports_progress_on_stderr_unless_quiet(sample_path: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    paths = [str(tmp_path / "train.parquet"), str(tmp_path / "holdout.parquet")]
    args = ["split", str(sample_path), "--train", paths[0], "--holdout", paths[1]]
    code, out, err = run(args, capsys)
    assert code == 0 and out.splitlines() == paths
    assert "reading the user keys" in err and "240 train users and 60 held-out users" in err
    code, out, err = run([*args, "--overwrite", "-q"], capsys)
    assert code == 0 and out.splitlines() == paths and err == ""


def test_schema_cli_prints_json_and_toml(sample_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["schema", str(sample_path), "--format", "json"], capsys)
    assert code == 0
    assert json.loads(out)["columns"]["user_id"]["role"] == "user_key"
    code, out, _ = run(["schema", str(sample_path)], capsys)
    assert code == 0 and '[columns."item_id"]' in out


def test_ctrl_c_while_importing_is_one_line_exit_130(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A Ctrl-C in the first second lands in `import torch` or polars; it was a traceback."""
    from recsynth.entry import run

    class Interrupting:
        def find_spec(self, name: str, *args: object) -> None:
            if name == "recsynth.cli":
                raise KeyboardInterrupt

    monkeypatch.delitem(sys.modules, "recsynth.cli")
    monkeypatch.setattr(sys, "meta_path", [Interrupting(), *sys.meta_path])
    with pytest.raises(SystemExit) as done:
        run()
    assert done.value.code == 130
    assert capsys.readouterr().err == "recsynth: interrupted\n"


def test_module_entry_point_version_and_help() -> None:
    done = subprocess.run([sys.executable, "-m", "recsynth", "--version"], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0 and done.stdout.startswith("recsynth ")
    for cmd in ("evaluate", "split", "schema"):
        done = subprocess.run([sys.executable, "-m", "recsynth", cmd, "--help"],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0 and "Usage" in done.stdout
