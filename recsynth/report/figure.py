"""matplotlib set-up shared by every plot: headless backend, one style, SVG/PNG out.

Imported lazily (only when a report or training.png is drawn) so the CLI starts fast.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REAL = "#1f5a96"  # real train users
SYNTHETIC = "#e07b00"  # synthetic users
HOLDOUT = "#6b6b6b"  # held-out real users (the yardstick)
PALETTE = ("#1f5a96", "#e07b00", "#2e8b57", "#b22222", "#7b4fa0", "#8c6d31", "#d45087")

_STYLE: dict[str, Any] = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#e4e4e4",
    "grid.linewidth": 0.6,
    "legend.frameon": False,
    "legend.fontsize": 8,
    "svg.fonttype": "none",  # text stays text: small files, selectable, browser fonts
    "svg.hashsalt": "recsynth",  # stable element ids, so the same report is the same bytes
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Liberation Sans", "Arial", "Helvetica"],
}


def new_figure(width: float = 6.4, height: float = 3.4, ncols: int = 1, nrows: int = 1,
               **kwargs: Any) -> tuple[Figure, Any]:
    """A figure and its axes (an array when several), drawn off-screen with Agg.

    `Figure` is built directly, not through pyplot, so no global figure registry fills up.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    matplotlib.rcParams.update(_STYLE)
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, **kwargs)
    return fig, axes


def to_svg(fig: Figure) -> str:
    """The figure as an `<svg>` element to inline in HTML (no XML prolog, no date)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]


def save_png(fig: Figure, path: Path) -> None:
    """Write the figure as PNG without a timestamp, so equal inputs give equal bytes."""
    fig.savefig(path, format="png", metadata={"Software": None})
