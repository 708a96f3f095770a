"""Command line: parse → call the library → render → exit code. The only module that prints."""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from recsynth import __version__, io
from recsynth.config import DEFAULT_KS, DEFAULT_RECOMMENDERS, EvalConfig, ModelConfig
from recsynth.errors import DataError, GateFailed, RecsynthError, UsageError, first_line

try:  # typer ≥ 0.26 vendors click; its parse errors derive from TyperException
    from typer import TyperException as _ParseError
except ImportError:  # an older typer over click (checked with typer 0.15)
    from click import ClickException as _ParseError

app = typer.Typer(
    name="recsynth",
    help="Learn synthetic user-item interaction logs from real ones, and score them.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

stderr = Console(stderr=True)
SEED_ENV = "RECSYNTH_SEED"

Seed = Annotated[int, typer.Option(help="Random seed; same inputs and seed, same output.",
                                   envvar=SEED_ENV, min=0, max=2**32 - 1)]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")]
UserCol = Annotated[Optional[str], typer.Option("--user-col", help="User key column.")]
ItemCol = Annotated[Optional[str], typer.Option("--item-col", help="Item key column.")]
TimeCol = Annotated[Optional[str], typer.Option("--time-col", help="Timestamp column.")]
SchemaFile = Annotated[Optional[str], typer.Option(
    "--schema", help="Schema file (TOML/JSON from `recsynth schema`) overriding inference.")]
Where = Annotated[Optional[list[str]], typer.Option(
    "--where", help="COLUMN=VALUE: every synthetic user has this user attribute (repeatable).")]
Activity = Annotated[Optional[str], typer.Option(
    help="low, mid or high: every synthetic user's item count in that tercile of the real "
         "users'.")]
MinItems = Annotated[Optional[int], typer.Option(
    help="Every synthetic user has at least this many distinct items.")]
MaxItems = Annotated[Optional[int], typer.Option(
    help="Every synthetic user has at most this many distinct items.")]
FilterQuantile = Annotated[float, typer.Option(
    help="Drop this share of generated users that the critic scores least realistic.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"recsynth {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """recsynth: synthetic interaction logs that keep collaborative structure, not users."""


def _split_list(text: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise UsageError(f"{what}: expected a comma-separated list")
    return items


def _parse_ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(sorted({int(t) for t in _split_list(text, "--k")}))
    except ValueError:
        raise UsageError(f"--k {text!r}: expected whole numbers like 5,10,20,50") from None
    if ks[0] < 1:
        raise UsageError("--k values must be at least 1")
    return ks


@app.command()
def evaluate(
    train: Annotated[str, typer.Option(help="Real users the generator was fitted on (Parquet "
                                            "file, directory or glob).")],
    holdout: Annotated[str, typer.Option(help="Real users the generator never saw.")],
    synthetic: Annotated[Optional[str], typer.Option(
        help="Synthetic log to score (any generator).")] = None,
    augmented: Annotated[Optional[str], typer.Option(
        help="Real + synthetic training log (from `recsynth augment`): train every "
             "recommender on it and report per-group lift over the real train data.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as one JSON "
                                                          "object on stdout.")] = False,
    out: Annotated[Optional[str], typer.Option(help="Also write the JSON result here.")] = None,
    html: Annotated[Optional[str], typer.Option(
        help="Also write a self-contained HTML report with plots here.")] = None,
    model: Annotated[Optional[str], typer.Option(
        help="Model directory from `recsynth fit`: adds its training curves to --html, and "
             "a DP model's (ε, δ) beside the privacy attacks.")] = None,
    min_rating: Annotated[Optional[float], typer.Option(
        help="Only rows rated at least this count as positives for utility.")] = None,
    k: Annotated[str, typer.Option("--k", help="Cut-offs K, comma-separated.")] =
        ",".join(map(str, DEFAULT_KS)),
    recommenders: Annotated[str, typer.Option(help="Recommenders, comma-separated.")] =
        ",".join(DEFAULT_RECOMMENDERS),
    fail_under: Annotated[Optional[list[str]], typer.Option(
        help="METRIC=V: exit 5 when METRIC < V (e.g. tstr=0.9). Repeatable.")] = None,
    fail_over: Annotated[Optional[list[str]], typer.Option(
        help="METRIC=V: exit 5 when METRIC > V (e.g. mia_auc=0.6). Repeatable.")] = None,
    users: Annotated[Optional[str], typer.Option(
        help="User side table (Parquet) with attributes for the fairness groups.")] = None,
    schema: SchemaFile = None,
    user_col: UserCol = None,
    item_col: ItemCol = None,
    time_col: TimeCol = None,
    repeats: Annotated[int, typer.Option(
        help="Fit EASE, BPR and APR this many times (other λ-validation users, other SGD "
             "draws) and report the means: one fit's NDCG moves by a few %, more on small "
             "user groups.")] = 1,
    seed: Seed = 0,
    overwrite: Overwrite = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No tables or progress.")] = False,
) -> None:
    """Score a synthetic log against real users: utility, fidelity, privacy, fairness."""
    from recsynth.evaluate import evaluate_with_details
    from recsynth.gates import apply_gates, check_paths, parse_gates
    from recsynth.inputs import load_inputs
    from recsynth.progress import StageReporter
    from recsynth.recommenders.base import RECOMMENDER_NAMES
    from recsynth.render import render_augmented, render_evaluation

    if synthetic is None and augmented is None:
        raise UsageError("give --synthetic, --augmented or both")
    if html is not None and synthetic is None:
        raise UsageError("--html reports on a synthetic log: give --synthetic too")
    ks = _parse_ks(k)
    recs = tuple(_split_list(recommenders, "--recommenders"))
    unknown = [r for r in recs if r not in RECOMMENDER_NAMES]
    if unknown:
        raise UsageError(f"--recommenders: unknown {unknown[0]!r} "
                         f"(choose from {', '.join(RECOMMENDER_NAMES)})")
    if repeats < 1:
        raise UsageError(f"--repeats must be at least 1 (got {repeats})")
    gates = parse_gates(fail_under or [], fail_over or [])
    if out is not None:
        io.check_writable(out, overwrite)
    history = _html_inputs(html, model, out, overwrite)
    from recsynth.dp.report import dp_guarantee

    guarantee = dp_guarantee(model)
    config = EvalConfig(ks=ks, recommenders=recs, min_rating=min_rating, seed=seed,
                        repeats=repeats)

    with StageReporter(stderr, quiet=quiet) as report:
        report("reading train, holdout and synthetic logs")
        inputs = load_inputs(train, holdout, synthetic, schema_file=schema, user_col=user_col,
                             item_col=item_col, time_col=time_col, users_table=users,
                             min_rating=min_rating, augmented=augmented)
        result, details = evaluate_with_details(inputs, config, on_stage=report)
        if guarantee is not None:
            result["privacy"]["guarantee"] = guarantee
        check_paths(gates, result)
        result["gates"] = apply_gates(gates, result)
        if html is not None:  # rendered before anything is written: a failure leaves nothing
            from recsynth.report.html import render_html

            report("rendering the HTML report")
            page = render_html(result, details, history)

    text = json.dumps(result, indent=2, sort_keys=False) + "\n"
    if out is not None:
        io.write_text(text, out, overwrite=overwrite)
    if html is not None:
        from recsynth.report.html import write_html

        write_html(page, html, overwrite)
    if not quiet and "utility" in result:
        render_evaluation(result, stderr)
    if not quiet and "augmented" in result:
        render_augmented(result, stderr)
    if json_out:
        sys.stdout.write(text)
    else:
        for path in (out, html):
            if path is not None:
                typer.echo(path)
    failed = [g for g in result["gates"] if not g["passed"]]
    if failed:
        g = failed[0]
        raise GateFailed(f"quality gate failed: {g['metric']} = {g['value']} "
                         f"(--fail-{g['fail']} {g['threshold']})")


def _html_inputs(html: str | None, model: str | None, out: str | None,
                 overwrite: bool) -> list[dict] | None:
    """Check --html/--model before any work; the model's training history when given."""
    from pathlib import Path

    if html is None:
        from recsynth.dp.report import dp_guarantee

        if model is not None and dp_guarantee(model) is None:
            raise UsageError("--model adds training curves to the HTML report (or a DP "
                             "model's guarantee): pass --html too")
        return None
    from recsynth.report.html import check_html_path

    check_html_path(html, overwrite)
    if out is not None and Path(out).resolve() == Path(html).resolve():
        raise UsageError("--out and --html name the same file")
    if model is None:
        return None
    from recsynth.report.training import read_history

    if not Path(model).is_dir():
        raise DataError(f"{model}: not a model directory (run `recsynth fit` to make one)")
    return read_history(Path(model) / "training.jsonl")


@app.command()
def split(
    real: Annotated[str, typer.Argument(help="Real log (Parquet file, directory or glob).")],
    train: Annotated[str, typer.Option(help="Output Parquet file for the train users.")],
    holdout: Annotated[str, typer.Option(help="Output Parquet file for the held-out users.")],
    holdout_frac: Annotated[float, typer.Option(help="Share of users held out.")] = 0.2,
    user_col: UserCol = None,
    schema: SchemaFile = None,
    seed: Seed = 0,
    overwrite: Overwrite = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress.")] = False,
) -> None:
    """Split a log by user: every user's whole history lands on one side."""
    from recsynth.progress import StageReporter
    from recsynth.schema import resolve_schema
    from recsynth.split import split_frame

    if os.path.abspath(train) == os.path.abspath(holdout):
        raise UsageError("--train and --holdout must be different files")
    io.check_writable(train, overwrite)
    io.check_writable(holdout, overwrite)
    lf = io.scan(real)
    user = user_col or resolve_schema(lf, str(real), schema).user_col
    if user not in lf.collect_schema():
        raise DataError(f"{real}: column {user!r} given by --user-col not found")
    with StageReporter(stderr, quiet=quiet) as report:
        train_lf, holdout_lf = split_frame(lf, user, holdout_frac, seed, str(real), report)
        with io.atomic_path(train, overwrite) as tmp_train, \
                io.atomic_path(holdout, overwrite) as tmp_holdout:
            train_lf.sink_parquet(tmp_train)
            holdout_lf.sink_parquet(tmp_holdout)
    typer.echo(train)
    typer.echo(holdout)


@app.command("schema")
def schema_cmd(
    data: Annotated[str, typer.Argument(help="Log to inspect (Parquet file, directory or glob).")],
    fmt: Annotated[str, typer.Option("--format", help="toml or json.")] = "toml",
    user_col: UserCol = None,
    item_col: ItemCol = None,
    time_col: TimeCol = None,
) -> None:
    """Print the inferred schema; edit it and pass it back with --schema."""
    from recsynth.schema import dump_schema, infer_schema

    if fmt not in ("toml", "json"):
        raise UsageError(f"--format {fmt!r}: use toml or json")
    lf = io.scan(data)
    sys.stdout.write(dump_schema(infer_schema(lf, str(data), user_col, item_col, time_col), fmt))


@app.command()
def fit(
    data: Annotated[str, typer.Argument(help="Real log (Parquet file, directory or glob).")],
    out: Annotated[str, typer.Option(help="Model directory to write.")],
    epochs: Annotated[int, typer.Option(help="GAN epochs (0: the closed-form sampler).")] =
        ModelConfig.epochs,
    time_budget: Annotated[Optional[str], typer.Option(
        help="Stop training when fit has run this long (e.g. 90s, 10m), counted from its "
             "start (reading and the temperature search come first); the best state is kept "
             "and at least one epoch trains. With the refit, the checked run gets half of "
             "what is left. Calibration and the per-row model come after it.")] = None,
    holdout_frac: Annotated[Optional[float], typer.Option(
        help="Share of users kept out of fitting for the held-out check (0: none; default "
             "10 %, with the refit up to 25 % on small logs so the check has ~200 users).")] =
        None,
    refit: Annotated[bool, typer.Option(
        help="After the held-out check chose the temperature and the epoch, fit again on "
             "every user with those choices (--no-refit: keep the model fitted without the "
             "check's users; logs whose check is capped at 10,000 users skip it).")] =
        ModelConfig.refit,
    rank: Annotated[Optional[int], typer.Option(
        help="SVD factors per user code (default: users/15, at most 200).")] = None,
    temperature: Annotated[Optional[float], typer.Option(
        help="Decoder temperature (default: chosen by the held-out check).")] = None,
    other_softness: Annotated[float, typer.Option(
        help="With a rating: decode the items rated under the like threshold this many "
             "times softer than the liked ones (1: one temperature; softer costs a "
             "recommender of liked items nothing and keeps users further from the real "
             "ones).")] = ModelConfig.other_softness,
    like_threshold: Annotated[Optional[float], typer.Option(
        help="Ratings at or above this are 'liked' (default: rounded-up mean rating).")] = None,
    components: Annotated[Optional[int], typer.Option(
        help="Gaussian-mixture components (default: 1, or users/100 when users form "
             "separate communities; at most 10).")]
        = None,
    max_items: Annotated[int, typer.Option(
        help="Item columns of the model (at least 1024). A larger catalog keeps its "
             "max-items - 512 most popular items one by one; the rarer ones share up to 256 "
             "tail slots and are drawn by popularity.")] = ModelConfig.max_items,
    max_dcr_share: Annotated[float, typer.Option(
        help="Privacy guard of the temperature search: the largest share of held-out-check "
             "synthetic users closer to fitting users than to held-out ones (0.5 = none).")] =
        ModelConfig.max_dcr_share,
    device: Annotated[str, typer.Option(
        help="auto (cuda when a GPU is visible), cpu or cuda: where the GAN trains.")] = "auto",
    precision: Annotated[str, typer.Option(
        help="fp32, or bf16 autocast for the networks while training.")] =
        ModelConfig.precision,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue an interrupted fit from OUT.checkpoint.pt (same data and "
                         "options; --epochs may grow).")] = False,
    users: Annotated[Optional[str], typer.Option(
        help="User side table (Parquet, one row per user key): its columns become "
             "user-level attributes, generated with each synthetic user.")] = None,
    items: Annotated[Optional[str], typer.Option(
        help="Item side table (Parquet, one row per item key): item-level columns.")] = None,
    cache_dir: Annotated[Optional[str], typer.Option(
        help="Keep the encoded log here, keyed by the inputs' fingerprint, and reuse it when "
             "the same data is fitted again (other settings, --resume, torchrun ranks).")] =
        None,
    row_model_rows: Annotated[int, typer.Option(
        help="Rows of whole users the per-row model (ratings, prices, times) is fitted on; "
             "larger logs use a random sample of users.")] = ModelConfig.row_model_rows,
    schema: SchemaFile = None,
    user_col: UserCol = None,
    item_col: ItemCol = None,
    time_col: TimeCol = None,
    epsilon: Annotated[Optional[float], typer.Option(
        help="Train a user-level (ε, δ)-differentially private model with this ε "
             "(see README: what it covers).")] = None,
    delta: Annotated[Optional[float], typer.Option(
        help="δ of --epsilon (default 1e-6, public; must be < 1/users).")] = None,
    max_grad_norm: Annotated[float, typer.Option(
        help="DP-SGD per-user gradient clipping bound (with --epsilon).")] =
        ModelConfig.max_grad_norm,
    noise_multiplier: Annotated[str, typer.Option(
        help="DP-SGD noise multiplier, or auto: the least that fits --epochs in the "
             "budget.")] = "auto",
    public_catalog: Annotated[bool, typer.Option(
        "--public-catalog", help="With --epsilon: the log's item keys are public (a product "
                                 "catalog), so no budget is spent hiding rare items.")] = False,
    seed: Seed = 0,
    overwrite: Overwrite = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress.")] = False,
) -> None:
    """Learn a generator of whole synthetic users from a real log; write a model directory."""
    from recsynth import distributed
    from recsynth.fitting import fit_model, parse_duration
    from recsynth.progress import StageReporter
    from recsynth.train import resolve_device

    device = resolve_device(device)
    budget = parse_duration(time_budget) if time_budget is not None else None
    config = ModelConfig(rank=rank, temperature=temperature, other_softness=other_softness,
                         like_threshold=like_threshold,
                         n_components=components, epochs=epochs, holdout_frac=holdout_frac,
                         refit=refit,
                         max_dcr_share=max_dcr_share, max_items=max_items,
                         row_model_rows=row_model_rows, precision=precision, seed=seed,
                         epsilon=epsilon, delta=delta, max_grad_norm=max_grad_norm,
                         noise_multiplier=_noise_multiplier(noise_multiplier),
                         dp_public_catalog=public_catalog)

    world = distributed.start(device)
    try:
        with StageReporter(stderr, quiet=quiet or not world.is_main) as report:
            backend = "nccl" if device == "cuda" else "gloo"
            procs = f" ({world.size} processes, {backend})" if world.active else ""
            report(f"device: {device}{procs}, precision {precision}")

            def on_epoch(record: dict) -> None:
                which = "refit epoch" if record.get("pass") == "refit" else "epoch"
                parts = [f"{which} {record['epoch']}/{record.get('of', epochs)}"]
                for key, label in (("loss_d", "D"), ("loss_g", "G"),
                                   ("check_ndcg10", "check"), ("epsilon", "ε")):
                    if record.get(key) is not None:
                        parts.append(f"{label} {record[key]:.4f}")
                report("  ".join(parts))

            path = fit_model(data, out, config, schema_file=schema, user_col=user_col,
                             item_col=item_col, time_col=time_col, users_table=users,
                             items_table=items, time_budget=budget, resume=resume,
                             overwrite=overwrite, on_stage=report, on_epoch=on_epoch,
                             world=world, device=device, cache_dir=cache_dir)
    finally:
        distributed.stop()
    if world.is_main:
        typer.echo(str(path))


def _noise_multiplier(text: str) -> float | None:
    if text.strip().lower() == "auto":
        return None
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"--noise-multiplier {text!r}: expected a number or auto") from None


@app.command()
def sample(
    model_dir: Annotated[str, typer.Argument(help="Model directory from `recsynth fit`.")],
    out: Annotated[str, typer.Option(help="Output Parquet file (a directory of parts with "
                                          "--rows-per-file or --workers > 1).")],
    users: Annotated[Optional[int], typer.Option(help="Number of synthetic users.")] = None,
    rows: Annotated[Optional[int], typer.Option(
        help="Approximate number of rows instead of --users.")] = None,
    batch_users: Annotated[int, typer.Option(help="Users generated per record batch.")] = 2048,
    rows_per_file: Annotated[Optional[int], typer.Option(
        help="Write a directory of part files of about this many rows (at least one "
             "--batch-users batch each).")] = None,
    workers: Annotated[int, typer.Option(
        help="Worker processes, each writing its own part files (1 M rows each unless "
             "--rows-per-file); the output is the same for any worker count.")] = 1,
    where: Where = None,
    activity: Activity = None,
    min_items: MinItems = None,
    max_items: MaxItems = None,
    filter_quantile: FilterQuantile = 0.0,
    seed: Seed = 0,
    overwrite: Overwrite = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress.")] = False,
) -> None:
    """Write synthetic users with the real schema to Parquet, streaming."""
    from recsynth import distributed
    from recsynth.checkpoint import load_model
    from recsynth.conditions import Request, parse_where
    from recsynth.progress import StageReporter
    from recsynth.sampling import make_shaping, sample_to_parquet

    if (users is None) == (rows is None):
        raise UsageError("give exactly one of --users N or --rows N")
    if rows is not None and rows < 1:
        raise UsageError(f"--rows must be at least 1 (got {rows})")
    if rows_per_file is not None and rows_per_file < 1:
        raise UsageError(f"--rows-per-file must be at least 1 (got {rows_per_file})")
    if workers < 1:
        raise UsageError(f"--workers must be at least 1 (got {workers})")
    request = Request(parse_where(where or []), activity, min_items, max_items)
    io.check_writable(out, overwrite)
    model = load_model(model_dir)
    shaping = make_shaping(model, request, filter_quantile)
    target = f"{users} users" if users is not None else f"{rows} rows"
    world = distributed.start("cpu")
    procs = f" ({world.size} processes)" if world.active else ""
    try:
        with StageReporter(stderr, quiet=quiet or not world.is_main) as report:
            report(f"sampling {target} from {model_dir}{procs}")
            last = [0.0]

            def on_batch(done_users: int, done_rows: int) -> None:
                share = done_users / users if users is not None else done_rows / rows
                if share - last[0] >= 0.1 or share >= 1.0:
                    last[0] = share
                    report(f"{done_users} users, {done_rows} rows ({min(share, 1.0):.0%})")

            stats = sample_to_parquet(model, out, seed=seed, batch_users=batch_users,
                                      n_users=users, n_rows=rows, rows_per_file=rows_per_file,
                                      overwrite=overwrite, shaping=shaping, workers=workers,
                                      model_dir=model_dir, on_batch=on_batch, world=world)
    finally:
        distributed.stop()
    if not world.is_main:
        return
    if not quiet:
        stderr.print(f"recsynth: wrote {stats.users} users, {stats.rows} rows", markup=False,
                     highlight=False)
    typer.echo(out)


@app.command()
def augment(
    data: Annotated[str, typer.Argument(help="Real log to augment (Parquet file, directory "
                                             "or glob), with the columns the model was fit on.")],
    model_dir: Annotated[str, typer.Argument(help="Model directory from `recsynth fit`.")],
    out: Annotated[str, typer.Option(help="Output Parquet file: real rows, then synthetic.")],
    strategy: Annotated[str, typer.Option(
        help="match, sparse-users, long-tail or balance:COLUMN.")] = "match",
    ratio: Annotated[float, typer.Option(
        help="Synthetic users to add, as a share of the real users.")] = 0.2,
    mark_synthetic: Annotated[bool, typer.Option(
        "--mark-synthetic", help="Add a boolean column is_synthetic.")] = False,
    filter_quantile: FilterQuantile = 0.0,
    batch_users: Annotated[int, typer.Option(help="Users generated per record batch.")] = 2048,
    users: Annotated[Optional[str], typer.Option(
        help="User side table given to `fit --users`: joined onto DATA first, so the "
             "output is the joined log.")] = None,
    items: Annotated[Optional[str], typer.Option(
        help="Item side table given to `fit --items` (joined likewise).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary of what was "
                                                          "added as JSON on stdout.")] = False,
    seed: Seed = 0,
    overwrite: Overwrite = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress.")] = False,
) -> None:
    """Write the real log plus targeted synthetic users (keys never collide with real ones)."""
    from recsynth.augment import augment as run_augment
    from recsynth.checkpoint import load_model
    from recsynth.progress import StageReporter

    io.check_writable(out, overwrite)
    model = load_model(model_dir)
    with StageReporter(stderr, quiet=quiet) as report:
        summary = run_augment(data, model, out, strategy, ratio=ratio, seed=seed,
                              mark=mark_synthetic, filter_quantile=filter_quantile,
                              batch_users=batch_users, overwrite=overwrite,
                              users_table=users, items_table=items, on_stage=report)
    if not quiet:
        syn = summary["synthetic"]
        stderr.print(f"recsynth: added {syn['users']} synthetic users ({syn['rows']} rows) to "
                     f"{summary['real']['users']} real users", markup=False, highlight=False)
    if json_out:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        typer.echo(out)


def main(argv: list[str] | None = None) -> int:
    """Entry point: map every failure to one stderr line and an exit code (GUIDE §5).

    Typer runs without its standalone mode, so its usage errors reach us as exceptions and
    print as one line (not a boxed usage panel that a cron log splits over six lines), and
    the interrupt it reports as a returned 130 is named here.
    """
    terminated: list[bool] = []  # set by SIGTERM: typer reports both signals as code 130
    on_term = _terminate_as_interrupt(terminated)
    try:
        code = app(args=argv, prog_name="recsynth", standalone_mode=False)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except _ParseError as exc:
        return _parse_error(exc, sys.argv[1:] if argv is None else argv)
    except typer.Abort:  # end of input at a prompt
        stderr.print("recsynth: aborted", markup=False)
        return 1
    except RecsynthError as exc:
        stderr.print(f"recsynth: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        return _interrupted(isinstance(exc, Terminated))
    except Exception as exc:
        if os.environ.get("RECSYNTH_DEBUG"):
            traceback.print_exc()
        msg = first_line(exc)
        stderr.print(f"recsynth: internal error: {type(exc).__name__}: {msg} "
                     "(set RECSYNTH_DEBUG=1 for a traceback)", markup=False, soft_wrap=True)
        return 1
    finally:
        if on_term is not None:
            signal.signal(signal.SIGTERM, on_term)
    if code == 130:  # typer turns an interrupt inside a command into a returned 130
        return _interrupted(bool(terminated))
    return code if isinstance(code, int) else 0


def _parse_error(exc: Any, argv: list[str]) -> int:
    """A command-line error as one line; with no arguments at all typer has printed the
    help (the error's message) already. Errors raised before a command's context exists
    (an option missing its value) name the command from `argv`."""
    if type(exc).__name__ == "NoArgsIsHelpError":
        return exc.exit_code
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        path = ctx.command_path
    else:
        names = {c.name or c.callback.__name__ for c in app.registered_commands
                 if c.callback is not None}
        path = " ".join(["recsynth", *[a for a in argv if a in names][:1]])
    hint = f" (see `{path} --help`)"
    message = " ".join(exc.format_message().split())
    stderr.print(f"recsynth: error: {message}{hint}", markup=False, highlight=False,
                 soft_wrap=True)
    return exc.exit_code


def _interrupted(terminated: bool) -> int:
    if terminated:
        stderr.print("recsynth: terminated", markup=False)
        return 143
    stderr.print("recsynth: interrupted", markup=False)
    return 130


class Terminated(KeyboardInterrupt):
    """SIGTERM (a job scheduler stopping us) unwinds like Ctrl-C: temp files are removed
    and a fit leaves its last-epoch checkpoint."""


def _terminate_as_interrupt(seen: list[bool]) -> Any:
    def handler(signum: int, frame: Any) -> None:
        seen.append(True)
        raise Terminated()

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        return None


if __name__ == "__main__":
    raise SystemExit(main())
