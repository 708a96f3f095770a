"""`evaluate --repeats`: stochastic recommenders averaged over trainings, others trained once."""

from __future__ import annotations

from pathlib import Path

import pytest
import scipy.sparse as sp

from recsynth.cli import main
from recsynth.metrics.utility import utility_metrics

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "interactions.parquet"


@pytest.fixture(scope="module")
def split(sample_matrices) -> tuple[sp.csr_matrix, ...]:
    train, fold, test = sample_matrices
    return train, train[::2], fold, test  # a different "synthetic" side: every other user


@pytest.fixture
def short_bpr(monkeypatch: pytest.MonkeyPatch) -> None:
    """BPR's extra epochs for small logs stop at 50 K sampled triples instead of 500 K:
    what these tests check (means over trainings, seeds by name) does not need more."""
    from recsynth.recommenders import bpr

    monkeypatch.setattr(bpr, "_MIN_SAMPLES", 50_000)


def run(split, recommenders, repeats):
    train, syn, fold, test = split
    return utility_metrics(train, syn, fold, test, ks=[10], recommenders=recommenders,
                           seed=3, repeats=repeats)


def test_bpr_is_the_mean_of_its_trainings_and_deterministic_models_fit_once(split, short_bpr):
    single = [run(split, ["bpr"], 1)]
    result, per_user = run(split, ["itemknn", "bpr"], 3)
    # the figures of one training do not depend on where bpr stands in the list
    assert run(split, ["itemknn", "bpr"], 1)[0]["bpr"] == single[0][0]["bpr"]
    assert result["bpr"]["trainings"] == 3 and "trainings" not in result["itemknn"]
    assert result["itemknn"]["real"] == run(split, ["itemknn"], 1)[0]["itemknn"]["real"]
    # the 3-run mean differs from one run (the trainings differ) and averages per user
    ndcg = result["bpr"]["real"]["ndcg@10"]
    assert ndcg != single[0][0]["bpr"]["real"]["ndcg@10"]
    assert ndcg == pytest.approx(per_user["bpr"]["real"]["ndcg@10"].mean())
    assert 0.0 < ndcg < 1.0


def test_identical_data_gives_ratio_one_with_repeats(split, short_bpr):
    train, _, fold, test = split
    result, _ = utility_metrics(train, train, fold, test, ks=[10], recommenders=["bpr"],
                                seed=0, repeats=2)
    assert result["bpr"]["ratio"]["ndcg@10"] == pytest.approx(1.0)


def test_cli_rejects_repeats_below_one(tmp_path, capsys):
    code = main(["evaluate", "--train", str(SAMPLE), "--holdout", str(SAMPLE), "--synthetic",
                 str(SAMPLE), "--repeats", "0", "--out", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert code == 2
    assert "--repeats" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.json").exists()


def test_ease_is_refitted_with_other_validation_users(split):
    result, _ = run(split, ["ease"], 3)
    assert result["ease"]["trainings"] == 3
    one = run(split, ["ease"], 1)[0]["ease"]
    assert result["ease"]["real"]["ndcg@10"] != one["real"]["ndcg@10"]
