"""`evaluate --html`: every section and plot on the page, self-contained, safe to write."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from recsynth.cli import main
from recsynth.report.training import write_training_png

ROOT = Path(__file__).resolve().parents[1]
HISTORY = [{"epoch": 0, "check_ndcg10": 0.20, "seconds": 0.0},
           {"epoch": 1, "loss_d": 3.1, "loss_g": -0.4, "seconds": 0.5},
           {"epoch": 2, "loss_d": 2.7, "loss_g": -0.2, "seconds": 1.0, "check_ndcg10": 0.22}]


def _args(split_dir: Path, synthetic: Path, *extra: str) -> list[str]:
    return ["evaluate", "--train", str(split_dir / "train.parquet"),
            "--holdout", str(split_dir / "holdout.parquet"), "--synthetic", str(synthetic),
            "--recommenders", "pop,ease", "--k", "5,10", "--quiet", *extra]


@pytest.fixture(scope="module")
def report(split_dir: Path, pop_synthetic: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[str, dict, str]:
    """One run with every option the page reacts to; a path with markup in its name."""
    tmp = tmp_path_factory.mktemp("html")
    synthetic = tmp / "syn<b>&.parquet"
    shutil.copy(pop_synthetic, synthetic)
    model = tmp / "model"
    model.mkdir()
    (model / "training.jsonl").write_text("".join(json.dumps(r) + "\n" for r in HISTORY))
    html, out = tmp / "report.html", tmp / "report.json"
    code = main(_args(split_dir, synthetic, "--users", str(ROOT / "sample_data/users.parquet"),
                      "--html", str(html), "--out", str(out), "--model", str(model),
                      "--fail-under", "tstr=0.01", "--fail-over", "mia_auc=0.99"))
    assert code == 0
    return html.read_text(encoding="utf-8"), json.loads(out.read_text()), str(synthetic)


def _plots(page: str) -> dict[str, str]:
    """data-plot name -> the figure's markup."""
    figures = re.findall(r'<figure class="plot[^"]*" id="[^"]+" data-plot="([^"]+)">(.*?)'
                         r"</figure>", page, flags=re.S)
    return dict(figures)


def test_every_section_and_plot_is_on_the_page(report: tuple[str, dict, str]) -> None:
    page, result, _ = report
    for section in ("headline", "utility", "fidelity", "privacy", "fairness", "training"):
        assert f'<section id="{section}"' in page
    expected = {"utility-bars", "utility-by-k", "popularity", "activity", "gaps",
                "cooccurrence", "dcr", "roc", "training"}
    expected |= {f"column-{c}" for c in result["fidelity"]["columns"]}
    expected |= {f"fairness-{g}" for g in result["fairness"]}
    assert {"fairness-activity", "fairness-country", "column-quantity"} <= expected
    plots = _plots(page)
    assert set(plots) == expected
    for name, markup in plots.items():
        assert markup.lstrip().startswith("<svg"), name
        assert markup.count("<svg") == 1 and "</svg>" in markup, name
        assert "<figcaption>" in markup, name


def test_headline_has_verdict_and_the_three_numbers(report: tuple[str, dict, str]) -> None:
    page, result, _ = report
    headline = page[page.index('<section id="headline"'):page.index("</section>")]
    assert 'class="verdict-pass"' in headline and ">PASS<" in headline
    figures = {"tstr": result["utility"]["ease"]["ratio"]["ndcg@10"],
               "mia_auc": result["privacy"]["mia_auc"],
               "exact_copy_share": result["privacy"]["exact_copy_share"]}
    for metric, value in figures.items():
        card = re.search(rf'data-metric="{metric}">.*?class="value">([^<]+)<', headline)
        assert card is not None and card.group(1) == f"{value:.3f}", metric
    assert headline.count("<tr>") == 1 + 2  # header + one row per gate


def test_page_is_self_contained_and_escaped(report: tuple[str, dict, str]) -> None:
    page, _, synthetic = report
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page and "<link" not in page and "<img" not in page
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "url(http" not in page and "@import" not in page
    assert "syn<b>" not in page and "syn&lt;b&gt;&amp;.parquet" in page
    assert Path(synthetic).name not in page


def test_html_leaves_the_json_unchanged(report: tuple[str, dict, str], split_dir: Path,
                                        tmp_path: Path) -> None:
    _, with_html, synthetic = report
    out = tmp_path / "plain.json"
    code = main(_args(split_dir, Path(synthetic), "--users",
                      str(ROOT / "sample_data/users.parquet"), "--out", str(out),
                      "--fail-under", "tstr=0.01", "--fail-over", "mia_auc=0.99"))
    assert code == 0
    assert json.loads(out.read_text()) == with_html


@pytest.mark.parametrize("case", ["exists", "directory", "parent_is_file", "model_alone",
                                  "same_as_out", "missing_model"])
def test_bad_html_path_is_one_line_before_any_work(case: str, split_dir: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    existing = tmp_path / "old.html"
    existing.write_text("keep me")
    (tmp_path / "afile").write_text("x")
    extra, code, message = {
        "exists": (["--html", str(existing)], 4, "already exists"),
        "directory": (["--html", str(tmp_path)], 2, "is a directory"),
        "parent_is_file": (["--html", str(tmp_path / "afile" / "r.html")], 2, "is not a directory"),
        "model_alone": (["--model", str(tmp_path)], 2, "pass --html too"),
        "same_as_out": (["--html", str(tmp_path / "r"), "--out", str(tmp_path / "r")], 2,
                        "same file"),
        "missing_model": (["--html", str(tmp_path / "r.html"), "--model",
                           str(tmp_path / "nope")], 3, "not a model directory"),
    }[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    # the synthetic file does not exist: any work past the checks would fail differently
    assert main(_args(split_dir, tmp_path / "missing.parquet", *extra)) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert existing.read_text() == "keep me"


def test_training_png_is_a_stable_png(tmp_path: Path) -> None:
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    write_training_png(HISTORY, a)
    write_training_png(HISTORY, b)
    assert a.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert a.read_bytes() == b.read_bytes()
    write_training_png([], tmp_path / "empty.png")  # a fit with no epoch still gets a figure


def test_the_augmented_run_is_shown_with_its_lift(split_dir: Path, pop_synthetic: Path,
                                                   tmp_path: Path) -> None:
    import polars as pl

    train = pl.read_parquet(split_dir / "train.parquet")
    extra = pl.read_parquet(pop_synthetic).with_columns(
        (pl.col("user_id").rank("dense").cast(pl.Int64) + 10**7).alias("user_id"))
    augmented = tmp_path / "aug.parquet"
    pl.concat([train, extra.select(train.columns)], how="vertical_relaxed").write_parquet(
        augmented)
    html = tmp_path / "r.html"
    assert main(_args(split_dir, pop_synthetic, "--augmented", str(augmented),
                      "--html", str(html))) == 0
    page = html.read_text(encoding="utf-8")
    plots = _plots(page)
    assert "<svg" in plots["augmented-lift"]
    assert "augmented NDCG@10" in page and "activity: bottom20" in page
    assert re.search(r"[+-]\d+\.\d %", page)  # lifts are printed
