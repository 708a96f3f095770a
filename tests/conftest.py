from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "interactions.parquet"


@pytest.fixture
def interrupt_batch(monkeypatch: pytest.MonkeyPatch):
    """`interrupt_batch(b)`: Ctrl-C while batch b's rows are being made, as a user's
    interrupt meets a running sample."""
    from recsynth import sampling

    real = sampling.users_to_rows

    def arm(at: int) -> None:
        def flaky(model, seed, batch, *rest):
            if batch == at:
                raise KeyboardInterrupt
            return real(model, seed, batch, *rest)

        monkeypatch.setattr(sampling, "users_to_rows", flaky)

    return arm


@pytest.fixture(scope="session")
def sample_path() -> Path:
    return SAMPLE


@pytest.fixture(scope="session")
def sample_frame() -> pl.DataFrame:
    return pl.read_parquet(SAMPLE)


@pytest.fixture(scope="session")
def split_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sample_data split 80/20 by user with `recsynth split`, shared by the CLI tests."""
    from recsynth.cli import main

    out = tmp_path_factory.mktemp("split")
    code = main(["split", str(SAMPLE), "--train", str(out / "train.parquet"),
                 "--holdout", str(out / "holdout.parquet"), "--seed", "0"])
    assert code == 0
    return out


@pytest.fixture(scope="session")
def pop_synthetic(split_dir: Path) -> Path:
    """A popularity-sampler synthetic log for the train side of `split_dir`."""
    from recsynth.baselines import popularity_sampler
    from recsynth.schema import infer_schema

    train = pl.read_parquet(split_dir / "train.parquet")
    schema = infer_schema(train.lazy(), "train")
    path = split_dir / "pop.parquet"
    popularity_sampler(train, schema, None, np.random.default_rng(0)).write_parquet(path)
    return path


@pytest.fixture(scope="session")
def sample_matrices():
    """sample_data as users x items: 80 % train users, and the other 20 % folded in (their
    history) with hidden items (the targets), each evaluated user holding at least one."""
    from recsynth.matrix import build_catalog, to_user_items
    from recsynth.protocol import fold_in_split

    df = pl.read_parquet(SAMPLE)
    x = to_user_items(df, "user_id", "item_id", build_catalog("item_id", df), "sample").matrix
    rng = np.random.default_rng(0)
    perm = rng.permutation(x.shape[0])
    n_test = x.shape[0] // 5
    train, held = x[np.sort(perm[n_test:])], x[np.sort(perm[:n_test])]
    fold, test = fold_in_split(held, 0.2, rng)
    keep = np.diff(test.indptr) > 0
    return train, fold[keep], test[keep]
