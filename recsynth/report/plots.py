"""The evaluate report's charts: each function takes figures or raw arrays, returns inline SVG.

Real train users are blue, synthetic users orange, held-out real users grey throughout.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from recsynth.metrics.fidelity import ColumnValues, epoch_seconds
from recsynth.metrics.privacy import roc_curve
from recsynth.render import augmented_groups
from recsynth.report.figure import HOLDOUT, PALETTE, REAL, SYNTHETIC, new_figure, to_svg

ACCURACY = (("ndcg", "NDCG"), ("recall", "recall"), ("precision", "precision"),
            ("hit_rate", "hit rate"), ("mrr", "MRR"), ("map", "MAP"))
MAX_BARS = 15  # categories shown per marginal; the rest are summed into "other"
MAX_GROUPS = 15  # fairness groups shown per grouping, the largest first
_CLIP = (0.5, 99.5)  # percentiles bounding continuous histograms (heavy tails)


def _short(label: str, width: int = 22) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#777777")
    ax.set_xticks([])
    ax.set_yticks([])


def _shares(values: np.ndarray) -> np.ndarray:
    """Histogram weights that make every side sum to 1, whatever its size."""
    return np.full(len(values), 1.0 / max(len(values), 1))


def _two_hists(ax: Any, real: np.ndarray, syn: np.ndarray, bins: np.ndarray,
               labels: tuple[str, str] = ("real", "synthetic"),
               colors: tuple[str, str] = (REAL, SYNTHETIC)) -> None:
    """Real as a filled histogram, synthetic as an outline on top, both as shares."""
    ax.hist(real, bins=bins, weights=_shares(real), color=colors[0], alpha=0.35,
            label=labels[0])
    ax.hist(syn, bins=bins, weights=_shares(syn), color=colors[1], histtype="step",
            linewidth=1.6, label=labels[1])
    ax.set_ylabel("share")
    ax.legend()


def _log_bins(lo: float, hi: float, n: int = 40) -> np.ndarray:
    return np.geomspace(lo, max(hi, lo * 1.01), n + 1)


def _count_bins(hi: float, n: int = 30) -> np.ndarray:
    """Log-spaced bins for whole counts ≥ 1: edges at half-integers, none empty by design."""
    return np.unique(np.round(np.geomspace(1.0, max(hi, 1.0) + 1.0, n + 1))) - 0.5


def _top_legend(fig: Any, ax: Any) -> None:
    """One legend above all panels, so it never hides a bar."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=len(labels))


# --- utility -------------------------------------------------------------------------------


def utility_bars(utility: dict[str, Any], k: int) -> str:
    """Accuracy @k of every recommender trained on real vs on synthetic users."""
    recs = list(utility)
    fig, axes = new_figure(8.6, 4.6, ncols=3, nrows=2)
    x = np.arange(len(recs))
    for ax, (metric, label) in zip(axes.ravel(), ACCURACY, strict=True):
        real = [utility[r]["real"].get(f"{metric}@{k}") or 0.0 for r in recs]
        syn = [utility[r]["synthetic"].get(f"{metric}@{k}") or 0.0 for r in recs]
        ax.bar(x - 0.2, real, 0.4, color=REAL, label="trained on real")
        ax.bar(x + 0.2, syn, 0.4, color=SYNTHETIC, label="trained on synthetic")
        ax.set_xticks(x, recs)
        ax.set_title(f"{label}@{k}")
    _top_legend(fig, axes.ravel()[0])
    return to_svg(fig)


def utility_by_k(utility: dict[str, Any], ks: list[int]) -> str:
    """NDCG@K per recommender for both training sets, and their ratio (TSTR) per K."""
    fig, (ax, ratio_ax) = new_figure(8.6, 3.2, ncols=2)
    for i, (name, figs) in enumerate(utility.items()):
        color = PALETTE[i % len(PALETTE)]
        real = [figs["real"].get(f"ndcg@{k}") for k in ks]
        syn = [figs["synthetic"].get(f"ndcg@{k}") for k in ks]
        ratio = [figs["ratio"].get(f"ndcg@{k}") for k in ks]
        ax.plot(ks, real, marker="o", color=color, label=f"{name}")
        ax.plot(ks, syn, marker="s", linestyle="--", color=color)
        ratio_ax.plot(ks, [np.nan if v is None else v for v in ratio], marker="o",
                      color=color, label=name)
    ax.set(title="NDCG@K: real (solid) vs synthetic (dashed)", xlabel="K", xscale="log")
    ratio_ax.axhline(1.0, color="#999999", linestyle=":")
    ratio_ax.set(title="TSTR = synthetic / real NDCG@K", xlabel="K", xscale="log")
    for a in (ax, ratio_ax):
        a.set_xticks(ks, [str(k) for k in ks])
        a.minorticks_off()
    ax.legend(fontsize=7)
    return to_svg(fig)


def augmented_lift(augmented: dict[str, Any], k: int) -> str:
    """NDCG@k lift of training on the augmented log over real only: all users, each group."""
    metric = f"ndcg@{k}"
    recs = list(augmented["utility"])
    columns = [("all users" if grouping is None else f"{grouping}: {group}", figs)
               for grouping, group, _, figs in augmented_groups(augmented)]
    fig, ax = new_figure(8.6, 3.0)
    x = np.arange(len(columns))
    width = 0.8 / max(len(recs), 1)
    for i, rec in enumerate(recs):
        lifts = [100.0 * (figs.get(rec, {}).get("lift", {}).get(metric) or 0.0)
                 for _, figs in columns]
        ax.bar(x + (i - (len(recs) - 1) / 2) * width, lifts, width,
               color=PALETTE[i % len(PALETTE)], label=rec)
    ax.axhline(0.0, color="#999999", linewidth=0.8)
    ax.set_xticks(x, [_short(label, 18) for label, _ in columns], rotation=20, ha="right")
    ax.set(title=f"NDCG@{k} lift from augmentation (%)", ylabel="% vs real only")
    _top_legend(fig, ax)
    return to_svg(fig)


# --- fidelity ------------------------------------------------------------------------------


def popularity_rank(real: np.ndarray, syn: np.ndarray) -> str:
    """Users per item against the item's popularity rank, log-log (the long tail)."""
    fig, ax = new_figure(4.6, 3.4)
    for counts, color, label in ((real, REAL, "real"), (syn, SYNTHETIC, "synthetic")):
        c = np.sort(counts[counts > 0])[::-1]
        if len(c):
            ax.plot(np.arange(1, len(c) + 1), c, color=color, label=f"{label} ({len(c)} items)")
    ax.set(xscale="log", yscale="log", xlabel="item rank", ylabel="users with the item",
           title="item popularity")
    ax.legend()
    return to_svg(fig)


def activity_hist(real: np.ndarray, syn: np.ndarray) -> str:
    """Rows per user on log-spaced bins."""
    fig, ax = new_figure(4.6, 3.4)
    if len(real) == 0 or len(syn) == 0:
        _empty(ax, "no users on one side")
    else:
        hi = float(max(real.max(), syn.max()))
        _two_hists(ax, real, syn, _count_bins(hi))
        ax.set_xscale("log")
    ax.set(xlabel="rows per user", title="user activity")
    return to_svg(fig)


def gap_hist(real: np.ndarray, syn: np.ndarray) -> str:
    """Seconds between a user's consecutive events (positive gaps, log bins)."""
    fig, ax = new_figure(4.6, 3.4)
    r, s = real[real > 0], syn[syn > 0]
    if len(r) == 0 or len(s) == 0:
        _empty(ax, "no positive gaps on one side")
    else:
        lo, hi = float(min(r.min(), s.min())), float(max(r.max(), s.max()))
        zero_r, zero_s = 1 - len(r) / len(real), 1 - len(s) / len(syn)
        _two_hists(ax, r, s, _log_bins(lo, hi),
                   labels=(f"real ({zero_r:.0%} zero gaps)", f"synthetic ({zero_s:.0%} zero)"))
        ax.set_xscale("log")
        for sec, text in ((60, "1 min"), (3600, "1 h"), (86400, "1 d"), (30 * 86400, "30 d")):
            if lo <= sec <= hi:
                ax.axvline(sec, color="#bbbbbb", linewidth=0.8, linestyle=":")
                ax.text(sec, 1.0, text, transform=ax.get_xaxis_transform(), fontsize=7,
                        ha="center", va="bottom", color="#777777")
    ax.set(xlabel="seconds to the same user's next event")
    ax.set_title("inter-event gaps", pad=12)
    return to_svg(fig)


def cooccurrence_scatter(rate_real: np.ndarray, rate_syn: np.ndarray) -> str:
    """Co-occurrence rate of each frequent real pair, real vs synthetic, log-log."""
    fig, ax = new_figure(4.6, 3.4)
    positive = np.concatenate([rate_real[rate_real > 0], rate_syn[rate_syn > 0]])
    floor = positive.min() / 2 if len(positive) else 1e-6
    absent = rate_syn <= 0
    ax.scatter(rate_real[~absent], rate_syn[~absent], s=6, alpha=0.5, color=SYNTHETIC,
               linewidths=0, label="pair")
    if absent.any():
        ax.scatter(rate_real[absent], np.full(absent.sum(), floor), s=8, marker="v",
                   color=HOLDOUT, linewidths=0, label=f"absent in synthetic ({absent.sum()})")
    lo = float(rate_real.min()) if absent.all() else float(
        min(rate_real.min(), rate_syn[~absent].min()))
    hi = float(max(rate_real.max(), rate_syn.max()))
    ax.plot([lo, hi], [lo, hi], color="#999999", linestyle=":", label="equal rates")
    ax.set(xscale="log", yscale="log", xlabel="rate in real users",
           ylabel="rate in synthetic users", title=f"co-occurrence, {len(rate_real)} top pairs")
    from matplotlib import ticker

    for axis in (ax.xaxis, ax.yaxis):  # 1-2-5 steps as plain numbers: a span under a decade
        axis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))  # still gets labels
        axis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        axis.set_minor_formatter(ticker.NullFormatter())
    ax.legend(loc="upper left")
    return to_svg(fig)


def column_marginal(name: str, values: ColumnValues) -> str:
    """A column's distribution, real vs synthetic: bars for categories, else a histogram."""
    fig, ax = new_figure(4.6, 3.4)
    r, s = values.real, values.synthetic
    if len(r) == 0 or len(s) == 0:
        _empty(ax, "no values on one side")
    elif values.metric == "tvd":
        _category_bars(ax, r, s, numeric=values.kind == "numeric")
    elif values.kind == "time":
        days = [epoch_seconds(v).to_numpy() / 86400.0 for v in (r, s)]
        _two_hists(ax, days[0], days[1], _clipped_bins(*days))
        ax.xaxis_date()
        import matplotlib.dates as mdates

        locator = mdates.AutoDateLocator(maxticks=6)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    else:
        x, y = (v.cast(pl.Float64).to_numpy() for v in (r, s))
        _two_hists(ax, x, y, _clipped_bins(x, y))
    ax.set_title(_short(name, 40))
    return to_svg(fig)


def _clipped_bins(real: np.ndarray, syn: np.ndarray, n: int = 40) -> np.ndarray:
    """Equal-width bins over the 0.5–99.5 % range of both sides (outliers fall outside)."""
    lo, hi = np.percentile(np.concatenate([real, syn]), _CLIP)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, n + 1)


def _category_bars(ax: Any, real: pl.Series, syn: pl.Series, numeric: bool) -> None:
    """Share of each value; ordered by value for small numerics, else by real share."""
    shares = {}
    for side, series in (("real", real), ("synthetic", syn)):
        vc = series.rename("v").value_counts(name="n")
        shares[side] = dict(zip(vc.get_column("v").to_list(),
                                (vc.get_column("n") / len(series)).to_list(), strict=True))
    keys = set(shares["real"]) | set(shares["synthetic"])
    if numeric:
        order = sorted(keys)[:MAX_BARS]
    else:
        order = sorted(keys, key=lambda v: (-shares["real"].get(v, 0.0),
                                            -shares["synthetic"].get(v, 0.0), str(v)))
        order = order[:MAX_BARS]
    labels = [_short(str(v)) for v in order]
    real_bars = [shares["real"].get(v, 0.0) for v in order]
    syn_bars = [shares["synthetic"].get(v, 0.0) for v in order]
    if len(keys) > len(order):
        labels.append(f"other ({len(keys) - len(order)} values)")
        real_bars.append(1.0 - sum(real_bars))
        syn_bars.append(1.0 - sum(syn_bars))
    pos = np.arange(len(labels))
    if numeric:
        ax.bar(pos - 0.2, real_bars, 0.4, color=REAL, label="real")
        ax.bar(pos + 0.2, syn_bars, 0.4, color=SYNTHETIC, label="synthetic")
        ax.set_xticks(pos, labels)
        ax.set_ylabel("share")
    else:
        ax.barh(pos - 0.2, real_bars, 0.4, color=REAL, label="real")
        ax.barh(pos + 0.2, syn_bars, 0.4, color=SYNTHETIC, label="synthetic")
        ax.set_yticks(pos, labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("share")
    ax.legend(loc="lower right" if not numeric else "best")


# --- privacy -------------------------------------------------------------------------------


def dcr_hist(synthetic_dcr: np.ndarray, holdout_dcr: np.ndarray) -> str:
    """Distance to the closest train user: synthetic users vs held-out real users."""
    fig, ax = new_figure(4.6, 3.4)
    syn, hold = (d[np.isfinite(d)] for d in (synthetic_dcr, holdout_dcr))
    if len(syn) == 0 or len(hold) == 0:
        _empty(ax, "no distances on one side")
    else:
        # from 0 when there are copies, else from just below the closest user: the detail
        lo = min(syn.min(), hold.min())
        lo = 0.0 if lo <= 0.0 else np.floor(lo * 10 - 0.5) / 10
        _two_hists(ax, hold, syn, np.linspace(max(lo, 0.0), 1.0, 41),
                   labels=("held-out real users", "synthetic users"),
                   colors=(HOLDOUT, SYNTHETIC))
        ax.legend(loc="upper left")
        ax.set_xlim(max(lo, 0.0), 1.0)
    ax.set(xlabel="Jaccard distance to the closest train user",
           title="distance to closest record")
    return to_svg(fig)


def membership_roc(member_d: np.ndarray, nonmember_d: np.ndarray, auc: float | None) -> str:
    """ROC of the attack "a real user was in train when a synthetic user sits close"."""
    fig, ax = new_figure(4.6, 3.4)
    if auc is None or len(member_d) == 0 or len(nonmember_d) == 0:
        _empty(ax, "not measured (a side is empty)")
    else:
        fpr, tpr = roc_curve(-member_d, -nonmember_d)
        ax.plot(fpr, tpr, color=SYNTHETIC, label=f"attack, AUC {auc:.3f}")
        ax.plot([0, 1], [0, 1], color="#999999", linestyle=":", label="guessing, 0.5")
        ax.set(xlim=(0, 1), ylim=(0, 1.01), aspect="equal")
        ax.legend(loc="lower right")
    ax.set(xlabel="false positive rate (held-out users)",
           ylabel="true positive rate (train users)", title="membership inference ROC")
    return to_svg(fig)


# --- fairness ------------------------------------------------------------------------------


def fairness_bars(block: dict[str, Any], recommenders: list[str], metric: str) -> str:
    """Mean `metric` per user group and recommender, real vs synthetic, gaps in the titles."""
    groups = sorted(block["groups"].items(), key=lambda kv: -kv[1]["n_users"])[:MAX_GROUPS]
    n = len(recommenders)
    fig, axes = new_figure(min(2.3 * n + 1.2, 9.0), 0.9 + 0.32 * len(groups) * 1.2,
                           ncols=n, sharey=True, squeeze=False)
    pos = np.arange(len(groups))
    labels = [f"{_short(label, 18)} (n={g['n_users']})" for label, g in groups]
    for ax, rec in zip(axes[0], recommenders, strict=True):
        real = [g[rec]["real"].get(metric) or 0.0 for _, g in groups]
        syn = [g[rec]["synthetic"].get(metric) or 0.0 for _, g in groups]
        ax.barh(pos - 0.2, real, 0.4, color=REAL, label="real")
        ax.barh(pos + 0.2, syn, 0.4, color=SYNTHETIC, label="synthetic")
        gap = block["gap"][rec]
        ax.set_title(f"{rec}\ngap {_fmt(gap['real'].get(metric))} → "
                     f"{_fmt(gap['synthetic'].get(metric))}", fontsize=8)
        ax.set_xlabel(metric, fontsize=8)
    axes[0][0].set_yticks(pos, labels, fontsize=7)
    axes[0][0].invert_yaxis()
    _top_legend(fig, axes[0][0])
    return to_svg(fig)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:+.3f}"
