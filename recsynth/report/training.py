"""Training curves from `training.jsonl`: critic/generator losses and the held-out check.

`recsynth fit` writes them as `training.png` beside the model; the HTML report embeds the
same figure when `evaluate --model` names the model directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recsynth.errors import DataError

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def read_history(path: Path) -> list[dict[str, Any]]:
    """The per-epoch records of a model directory's training.jsonl."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the training history ({exc})") from None


def _series(history: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pts = [(int(r["epoch"]), float(r[key])) for r in history
           if isinstance(r.get(key), (int, float)) and "epoch" in r
           and r.get("pass") != "refit"]  # the chart is the run the check chose from
    return [e for e, _ in pts], [v for _, v in pts]


def training_figure(history: list[dict[str, Any]]) -> Figure:
    """Left: WGAN-GP critic and generator losses per epoch; right: held-out NDCG@10.

    Epoch 0 of the check is the closed form before any adversarial step, the bar the
    GAN has to beat; the best checked epoch (the state kept) is marked.
    """
    from recsynth.report.figure import REAL, SYNTHETIC, new_figure

    fig, (loss_ax, check_ax) = new_figure(8.0, 3.0, ncols=2)
    plotted = False
    for key, label, color in (("loss_d", "critic (D) loss", REAL),
                              ("loss_g", "generator (G) loss", SYNTHETIC)):
        epochs, values = _series(history, key)
        if epochs:
            loss_ax.plot(epochs, values, marker="." if len(epochs) < 30 else None,
                         color=color, label=label)
            plotted = True
    loss_ax.set(title="WGAN-GP losses", xlabel="epoch", ylabel="loss")
    if plotted:
        loss_ax.legend()
    else:
        loss_ax.text(0.5, 0.5, "no training epochs", ha="center", transform=loss_ax.transAxes)
    epochs, scores = _series(history, "check_ndcg10")
    check_ax.set(title="held-out check (EASE NDCG@10)", xlabel="epoch", ylabel="NDCG@10")
    if epochs:
        check_ax.plot(epochs, scores, marker="o", color=REAL)
        best = max(range(len(scores)), key=lambda i: (scores[i], -epochs[i]))
        check_ax.axhline(scores[0], color="#999999", linestyle=":",
                         label=f"epoch {epochs[0]} (closed form) {scores[0]:.3f}")
        check_ax.plot([epochs[best]], [scores[best]], marker="*", markersize=12,
                      linestyle="none", color=SYNTHETIC,
                      label=f"kept: epoch {epochs[best]} {scores[best]:.3f}")
        check_ax.legend(loc="best")
    else:
        check_ax.text(0.5, 0.5, "no held-out check in this fit", ha="center",
                      transform=check_ax.transAxes)
    return fig


def training_svg(history: list[dict[str, Any]]) -> str:
    from recsynth.report.figure import to_svg

    return to_svg(training_figure(history))


def write_training_png(history: list[dict[str, Any]], path: Path) -> None:
    """The training curves as a PNG file (the model directory's training.png)."""
    from recsynth.report.figure import save_png

    save_png(training_figure(history), path)
