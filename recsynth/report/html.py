"""One self-contained HTML page for `recsynth evaluate --html`: verdict first, then plots.

Everything is inline (CSS, SVG charts), so the file opens offline and can be mailed or
attached to a ticket. Every piece of text from the data goes through `html.escape`.
"""

from __future__ import annotations

import re
from html import escape
from pathlib import Path
from typing import Any

from recsynth import io
from recsynth.errors import UsageError
from recsynth.evaluate import EvalDetails
from recsynth.gates import ALIASES, lookup
from recsynth.render import augmented_groups, pick_k
from recsynth.report import plots
from recsynth.report.training import training_svg

SECTIONS = ("headline", "utility", "fidelity", "privacy", "fairness")
BEYOND_ACCURACY = (("coverage", "catalog coverage"), ("gini", "Gini of recommended items"),
                   ("novelty", "novelty (mean −log2 popularity)"),
                   ("diversity", "intra-list diversity"), ("long_tail", "long-tail share"))


def check_html_path(path: str, overwrite: bool) -> Path:
    """Fail before any work when the report cannot go to `path`, in one line."""
    out = Path(path)
    if out.is_dir():
        raise UsageError(f"--html {path}: is a directory; give a file name like report.html")
    try:
        return io.check_writable(out, overwrite)
    except UsageError as exc:
        raise UsageError(f"--html {exc}") from None


def write_html(text: str, path: str, overwrite: bool) -> None:
    """Atomically: a temp file beside `path`, renamed only once it is complete."""
    try:
        io.write_text(text, check_html_path(path, overwrite), overwrite=overwrite)
    except OSError as exc:
        raise UsageError(f"--html {path}: cannot write there ({exc.strerror or exc})") from None


def render_html(result: dict[str, Any], details: EvalDetails,
                training: list[dict[str, Any]] | None = None) -> str:
    """The whole page; `training` (a model's training.jsonl records) adds its curves."""
    body = [_header(result), _headline(result), _nav(training is not None),
            _utility(result), _fidelity(result, details), _privacy(result, details),
            _fairness(result)]
    if training is not None:
        body.append(_training(training))
    body.append(_footer(result))
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>recsynth report: {escape(_name(result['data']['synthetic']['path']))}"
            f"</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
            + "\n".join(body) + "\n</main>\n</body>\n</html>\n")


# --- building blocks -------------------------------------------------------------------------


def _name(path: str) -> str:
    return Path(path).name or path


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return escape(str(value))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text)


def _figure(name: str, svg: str, caption: str, wide: bool = False) -> str:
    """A plot with its caption; `data-plot` names it for tests and links."""
    cls = "plot wide" if wide else "plot"
    return (f'<figure class="{cls}" id="plot-{_slug(name)}" data-plot="{escape(name)}">\n'
            f"{svg}\n<figcaption>{caption}</figcaption>\n</figure>")


def _section(key: str, title: str, intro: str, parts: list[str]) -> str:
    return (f'<section id="{key}">\n<h2>{title}</h2>\n<p class="intro">{intro}</p>\n'
            + "\n".join(parts) + "\n</section>")


def _table(head: list[str], rows: list[list[str]], cls: str = "") -> str:
    """Cells are HTML already (escaped by the caller)."""
    th = "".join(f"<th>{h}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>\n" for row in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>\n{trs}</tbody></table>'


def _get(result: dict[str, Any], metric: str) -> Any:
    try:
        return lookup(result, ALIASES.get(metric, metric))
    except UsageError:
        return None


# --- sections --------------------------------------------------------------------------------


def _header(result: dict[str, Any]) -> str:
    d = result["data"]
    return (f"<header><h1>recsynth evaluation report</h1>\n<p class=\"sub\">synthetic "
            f"<code>{escape(d['synthetic']['path'])}</code> against train "
            f"<code>{escape(d['train']['path'])}</code> and held-out "
            f"<code>{escape(d['holdout']['path'])}</code></p>\n<p class=\"sub\">"
            f"{d['train']['users']:,} train users, {d['holdout']['users']:,} held-out users "
            f"({d['evaluated_users']:,} scored), {d['synthetic']['users']:,} synthetic users "
            f"({d['synthetic']['rows']:,} rows); catalog {d['catalog_items']:,} items</p>"
            "</header>")


def _headline(result: dict[str, Any]) -> str:
    gates = result.get("gates", [])
    failed = [g for g in gates if not g["passed"]]
    if not gates:
        verdict, cls = "no gates given", "none"
        detail = "pass <code>--fail-under tstr=0.9 --fail-over mia_auc=0.6</code> for a verdict"
    elif failed:
        verdict, cls = "FAIL", "fail"
        detail = f"{len(failed)} of {len(gates)} quality gates failed"
    else:
        verdict, cls = "PASS", "pass"
        detail = f"all {len(gates)} quality gates passed"
    status = {g["metric"]: g["passed"] for g in gates}
    status.update({g["path"]: g["passed"] for g in gates})
    priv = result["privacy"]
    ref = priv.get("reference", {})
    cards = [
        _card("tstr", "utility ratio (TSTR)", _get(result, "tstr"),
              "EASE NDCG@10 trained on synthetic ÷ on real; 1.0 = as useful as the real "
              "data", status),
        _card("mia_auc", "membership-inference AUC", priv.get("mia_auc"),
              "can an attacker tell train users from held-out ones? 0.5 ideal, "
              "≥ 0.6 leaks", status),
        _card("exact_copy_share", "exact copies", priv.get("exact_copy_share"),
              f"share of synthetic users identical to a train user (held-out real users: "
              f"{_fmt(ref.get('exact_copy_share'))}); among users with ≥ 5 items: "
              f"{_fmt(priv.get('exact_copy_share_5plus'))}, must be 0", status),
    ]
    rows = [[escape(g["metric"]), _fmt(g["value"], 4),
             ("≥ " if g["fail"] == "under" else "≤ ") + _fmt(g["threshold"], 4),
             '<span class="ok">pass</span>' if g["passed"] else '<span class="bad">FAIL</span>']
            for g in gates]
    table = _table(["gate", "value", "needs", "verdict"], rows, "gates") if rows else ""
    return (f'<section id="headline" class="verdict-{cls}">\n<div class="verdict">'
            f'<span class="badge">{verdict}</span> <span>{detail}</span></div>\n'
            f'<div class="cards">{"".join(cards)}</div>\n{table}\n</section>')


def _card(metric: str, title: str, value: Any, note: str, status: dict[str, bool]) -> str:
    passed = status.get(metric, status.get(ALIASES.get(metric, metric)))
    cls = "card" if passed is None else ("card card-ok" if passed else "card card-bad")
    return (f'<div class="{cls}" data-metric="{metric}"><div class="title">{title}</div>'
            f'<div class="value">{_fmt(value)}</div><div class="note">{note}</div></div>')


def _nav(training: bool) -> str:
    keys = list(SECTIONS[1:]) + (["training"] if training else [])
    links = " · ".join(f'<a href="#{k}">{k}</a>' for k in keys)
    return f"<nav>{links}</nav>"


def _utility(result: dict[str, Any]) -> str:
    utility, ks = result["utility"], result["config"]["ks"]
    k = pick_k(result)
    parts = [
        _figure("utility-bars", plots.utility_bars(utility, k),
                f"Accuracy @{k} on held-out real users of each recommender trained on the "
                "real train users (blue) and on the synthetic users (orange). Close bars mean "
                "the synthetic data teaches what the real data teaches.", wide=True),
        _figure("utility-by-k", plots.utility_by_k(utility, ks),
                "NDCG at every cut-off K; right: the ratio synthetic/real (TSTR), 1.0 = "
                "no loss.", wide=True),
    ]
    rows = []
    for name, figs in utility.items():
        label = f"{name} (mean of {figs['trainings']} fits)" if "trainings" in figs else name
        rows.append([escape(label)] + [_fmt(figs["ratio"].get(f"{m}@{k}")) for m in
                                       ("ndcg", "recall", "precision", "map", "hit_rate")])
    parts.append(_table(["TSTR @" + str(k), "NDCG", "recall", "precision", "MAP", "hit rate"],
                        rows))
    rows = [[escape(label)] + [f"{_fmt(figs['real'].get(f'{m}@{k}'))} → "
                               f"{_fmt(figs['synthetic'].get(f'{m}@{k}'))}"
                               for figs in utility.values()]
            for m, label in BEYOND_ACCURACY]
    parts.append(_table([f"beyond accuracy @{k} (real → synthetic)"] +
                        [escape(n) for n in utility], rows))
    if "augmented" in result:
        parts += _augmented(result["augmented"], k)
    return _section("utility", "Utility: train on synthetic, test on real",
                    "Each recommender is trained on the real train users and on the "
                    "synthetic users, then ranks items for the same held-out real users "
                    "(80 % of their items folded in, the hidden 20 % scored); with "
                    "--repeats N, EASE, BPR and APR are fitted N times and averaged.", parts)


def _augmented(augmented: dict[str, Any], k: int) -> list[str]:
    """The augmented run: lift over real-only training, overall and per user group."""
    metric = f"ndcg@{k}"
    rows = []
    for rec in augmented["utility"]:
        for grouping, group, n_users, figs in augmented_groups(augmented):
            if rec not in figs:
                continue
            label = "all users" if grouping is None else f"{grouping}: {group} ({n_users})"
            g = figs[rec]
            rows.append([escape(rec) if grouping is None else "", escape(label),
                         _fmt(g["real"].get(metric)), _fmt(g["augmented"].get(metric)),
                         _pct(g["lift"].get(metric))])
    data = augmented["data"]
    return [
        _figure("augmented-lift", plots.augmented_lift(augmented, k),
                f"Augmented run ({escape(_name(data['path']))}: {data['users']} users, "
                f"{data['users_not_in_train']} of them added): NDCG@{k} of each recommender "
                "trained on the augmented log relative to training on the real train users "
                "alone, for all held-out users and per group. Above zero = augmentation "
                "helped that group.", wide=True),
        _table([f"augmented NDCG@{k}", "users", "real only", "augmented", "lift"], rows),
    ]


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * value:+.1f} %"


def _fidelity(result: dict[str, Any], details: EvalDetails) -> str:
    fid, dist = result["fidelity"], details.fidelity
    parts = [
        _figure("popularity", plots.popularity_rank(dist.popularity_real,
                                                    dist.popularity_synthetic),
                f"Users per item by popularity rank (log–log). TVD "
                f"{_fmt(fid['item_popularity_tvd'])}, Gini real "
                f"{_fmt(fid['item_popularity_gini_real'])} vs synthetic "
                f"{_fmt(fid['item_popularity_gini_synthetic'])}."),
        _figure("activity", plots.activity_hist(dist.activity_real, dist.activity_synthetic),
                f"Rows per user (share of users per log-spaced bin). KS "
                f"{_fmt(fid['activity_ks'])}; mean {_fmt(fid['activity_mean_real'], 1)} real vs "
                f"{_fmt(fid['activity_mean_synthetic'], 1)} synthetic."),
    ]
    if dist.gaps_real is not None and dist.gaps_synthetic is not None:
        parts.append(_figure(
            "gaps", plots.gap_hist(dist.gaps_real, dist.gaps_synthetic),
            f"Time from each event to the same user's next one (positive gaps; zero gaps are "
            f"events in one session). KS {_fmt(fid['inter_event_gap_ks'])}; KS of each "
            f"user's span from first to last event {_fmt(fid.get('user_span_ks'))}."))
    if dist.cooccurrence is not None:
        parts.append(_figure(
            "cooccurrence", plots.cooccurrence_scatter(*dist.cooccurrence),
            f"Share of users holding both items, for the most frequent real item pairs; "
            f"on the dotted line the synthetic users keep the pair as often as real ones. "
            f"Correlation {_fmt(fid['cooccurrence_corr'])}."))
    for name, values in dist.columns.items():
        col = fid["columns"][name]
        kind = "histogram, 0.5–99.5 % range" if values.metric == "ks" else "shares per value"
        parts.append(_figure(
            f"column-{name}", plots.column_marginal(name, values),
            f"Column <code>{escape(name)}</code> ({values.kind}, {kind}). "
            f"{col['metric'].upper()} {_fmt(col['value'])}; nulls "
            f"{_fmt(col['null_rate_real'])} real vs {_fmt(col['null_rate_synthetic'])} "
            "synthetic."))
    return _section("fidelity", "Fidelity: does the synthetic log look like the real one?",
                    "Synthetic users against the real train users. KS and TVD are 0 for "
                    "identical distributions, 1 for disjoint ones.",
                    [f'<div class="grid">{"".join(parts)}</div>'])


def _privacy(result: dict[str, Any], details: EvalDetails) -> str:
    priv, dist = result["privacy"], details.privacy
    ref = priv.get("reference", {})
    parts = [
        _figure("dcr", plots.dcr_hist(dist.synthetic_dcr, dist.holdout_dcr),
                "Jaccard distance from each synthetic user (orange) and each held-out real "
                "user (grey) to the closest of the train reference users. Synthetic users "
                "piled further left than the grey yardstick sit too close to real ones; a "
                f"bar at 0 is exact copies. DCR share {_fmt(priv['dcr_share'])} (0.5 ideal)."),
        _figure("roc", plots.membership_roc(dist.member_d, dist.nonmember_d, priv["mia_auc"]),
                "The attacker calls a real user a member of the train set when some "
                "synthetic user lies close to them. On the diagonal the attack is a coin "
                "flip; AUC ≥ 0.6 means the synthetic data leaks who was in it."),
    ]
    rows = [[key, _fmt(priv.get(key), 4), _fmt(ref.get(key), 4), meaning] for key, meaning in (
        ("exact_copy_share", "identical to a train user"),
        ("exact_copy_share_5plus", "the same, users with ≥ 5 items (must be 0)"),
        ("dcr_share", "closer to train than to held-out users (0.5 ideal)"),
        ("mia_auc", "membership inference AUC (0.5 ideal, ≥ 0.6 leaks)"),
        ("mia_auc_se", "its standard error (DeLong): gaps under 2 SE are noise"),
        ("nndr", "median nearest / second-nearest distance ratio"),
        ("dcr_median", "median distance to the closest train user"))]
    table = _table(["metric", "synthetic", "held-out reference", "meaning"], rows, "text-last")
    return _section("privacy", "Privacy: does any real user come back out?",
                    f"User level: Jaccard distances between item sets, on equal-size "
                    f"reference sets of {priv.get('n_reference', 0):,} train and held-out "
                    "users.", [f'<div class="grid">{"".join(parts)}</div>', table])


def _fairness(result: dict[str, Any]) -> str:
    k = pick_k(result)
    metric = f"ndcg@{k}"
    recs = list(result["utility"])
    parts = []
    for grouping, block in result["fairness"].items():
        n = len(block["groups"])
        shown = "" if n <= plots.MAX_GROUPS else f" (the {plots.MAX_GROUPS} largest of {n})"
        gap = ("top 5 % minus the rest" if grouping == "activity"
               else "largest minus smallest group with ≥ 10 users")
        parts.append(_figure(
            f"fairness-{grouping}", plots.fairness_bars(block, recs, metric),
            f"NDCG@{k} per <code>{escape(grouping)}</code> group{shown}, trained on real "
            f"(blue) vs synthetic (orange). Gap: {gap}; a synthetic gap far from the real "
            "one means the synthetic data serves some users worse.", wide=True))
    return _section("fairness", "Fairness: is utility shared across user groups?",
                    "The same held-out users, split by activity and by every user "
                    "attribute.", parts or ["<p>No user groups to compare.</p>"])


def _training(history: list[dict[str, Any]]) -> str:
    fig = _figure("training", training_svg(history),
                  "From the model's training.jsonl: WGAN-GP losses per epoch, and the "
                  "held-out utility check that picks the state kept (epoch 0 is the closed "
                  "form the GAN starts from).", wide=True)
    return _section("training", "Training", "How the generator's fit went.", [fig])


def _footer(result: dict[str, Any]) -> str:
    c = result["config"]
    return (f"<footer>recsynth {escape(result['recsynth_version'])} · seed {c['seed']} · "
            f"K {', '.join(map(str, c['ks']))} · recommenders "
            f"{escape(', '.join(c['recommenders']))} · the full figures are in the JSON "
            "report (<code>--out</code>, <code>--json</code>)</footer>")


CSS = """
:root { --real: #1f5a96; --syn: #e07b00; --ok: #1d7f3a; --bad: #b3261e; --line: #dddddd; }
* { box-sizing: border-box; }
body { margin: 0; background: #f6f6f4; color: #222;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 40px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 0 0 6px; border-bottom: 2px solid var(--line);
  padding-bottom: 4px; }
.sub { margin: 2px 0; color: #555; font-size: 13px; }
code { font-size: 12px; background: #ececea; padding: 1px 4px; border-radius: 3px;
  word-break: break-all; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px;
  padding: 18px 22px; margin: 18px 0; }
.intro { color: #444; margin: 4px 0 12px; }
nav { margin: 12px 0 0; font-size: 14px; }
nav a { color: var(--real); }
.verdict { font-size: 18px; display: flex; gap: 12px; align-items: center; }
.badge { font-weight: 700; font-size: 22px; padding: 4px 14px; border-radius: 6px;
  color: #fff; background: #777; letter-spacing: 0.04em; }
.verdict-pass .badge { background: var(--ok); }
.verdict-fail .badge { background: var(--bad); }
.verdict-pass { border-left: 6px solid var(--ok); }
.verdict-fail { border-left: 6px solid var(--bad); }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(250px, 1fr));
  gap: 14px; margin: 16px 0 8px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px;
  border-top: 4px solid #999; }
.card-ok { border-top-color: var(--ok); }
.card-bad { border-top-color: var(--bad); }
.card-ok .value { color: var(--ok); }
.card-bad .value { color: var(--bad); }
.card .title { font-size: 13px; color: #555; text-transform: uppercase;
  letter-spacing: 0.03em; }
.card .value { font-size: 34px; font-weight: 650; margin: 2px 0; }
.card .note { font-size: 12.5px; color: #555; }
.ok { color: var(--ok); font-weight: 600; }
.bad { color: var(--bad); font-weight: 600; }
table { border-collapse: collapse; margin: 12px 0; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f1; }
table.text-last td:last-child, table.text-last th:last-child { text-align: left; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(440px, 1fr));
  gap: 14px; }
figure.plot { margin: 8px 0; }
figure.plot svg { width: 100%; height: auto; display: block; }
figure.wide svg { max-width: 1000px; }
figcaption { font-size: 12.5px; color: #444; margin-top: 4px; }
footer { color: #777; font-size: 12px; margin-top: 18px; }
"""
