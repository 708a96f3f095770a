"""The model directory: tensors without pickle, everything else JSON or Parquet.

    config.json      format version, every hyper-parameter, schema, key dtypes
    weights.pt       a flat dict of tensors (torch.save), loaded with weights_only=True
    catalog.parquet  item keys; position = item index
    rowmodel/        per-row column model (JSON + Parquet)
    training.jsonl   losses and the held-out check per epoch
    training.png     the same as curves, to look at
    manifest.json    input fingerprints, versions, seed, timings

A directory from an untrusted source cannot run code when loaded: torch refuses anything
but tensors and plain containers, and nothing else is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import platform
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from recsynth import __version__
from recsynth.conditions import Conditions, width
from recsynth.config import ModelConfig, config_from_dict, validate_config
from recsynth.encode import Marginal
from recsynth.errors import DataError, UsageError, first_line
from recsynth.itemspace import ItemSpace
from recsynth.latent import ClosedForm
from recsynth.model import PacCritic, ResidualGenerator
from recsynth.report.training import write_training_png
from recsynth.rowmodel import RowModel
from recsynth.schema import Schema, schema_from_dict, schema_to_dict

# 2: item space (head items + tail slots); 3: timeline sessions, which a reader of format 2
# would silently drop (its synthetic users would span far less time than real ones)
FORMAT_VERSION = 3
READABLE_FORMATS = (2, 3)  # a format-2 model loads as before: no sessions
FILES = ("config.json", "weights.pt", "catalog.parquet", "manifest.json")


@dataclass
class Model:
    config: ModelConfig
    schema: Schema
    like_threshold: float | None
    catalog: pl.Series
    form: ClosedForm
    generator: ResidualGenerator
    critic: PacCritic
    rowmodel: RowModel
    user_key: dict[str, Any]  # {"dtype": "Int32", "first_new": 1000000} or {"dtype": "String"}
    space: ItemSpace  # which item columns the generator models (see itemspace.py)
    conditions: Conditions | None = None  # per-attribute-value code statistics (--where)

    @property
    def n_items(self) -> int:
        return len(self.catalog)


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def save_model(model: Model, directory: Path, history: list[dict[str, Any]],
               manifest: dict[str, Any]) -> None:
    """Write every file into `directory` (the caller makes it atomic)."""
    directory.mkdir(parents=True, exist_ok=True)
    form = model.form
    tensors = {"form.item_factors": _tensor(form.item_factors),
               "form.item_bias": _tensor(form.item_bias), "form.mean": _tensor(form.mean),
               "form.chol": _tensor(form.chol), "form.weights": _tensor(form.weights),
               "form.means": _tensor(form.means), "form.chols": _tensor(form.chols),
               "form.activity": _tensor(form.activity.knots)}
    if form.liked_share is not None:
        tensors["form.liked_share"] = _tensor(form.liked_share.knots)
    for name in ("activity_scores", "liked_scores"):
        if getattr(form, name) is not None:
            tensors[f"form.{name}"] = _tensor(getattr(form, name).knots)
    tensors.update({"space.head": _tensor(model.space.head),
                    "space.tail": _tensor(model.space.tail),
                    "space.tail_weights": _tensor(model.space.tail_weights)})
    tensors.update({f"generator.{k}": v for k, v in model.generator.state_dict().items()})
    tensors.update({f"critic.{k}": v for k, v in model.critic.state_dict().items()})
    torch.save(tensors, directory / "weights.pt")
    config = {"format_version": FORMAT_VERSION, "recsynth_version": __version__,
              "model": asdict(model.config), "like_threshold": model.like_threshold,
              "n_items": model.n_items, "n_channels": form.n_channels,
              "activity_power": form.activity_power,
              "n_cond": model.generator.n_cond,
              "n_slots": model.space.n_slots,
              "schema": schema_to_dict(model.schema), "user_key": model.user_key}
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    pl.DataFrame({"item": model.catalog}).write_parquet(directory / "catalog.parquet")
    model.rowmodel.save(directory / "rowmodel")
    if model.conditions is not None:
        model.conditions.save(directory)
    (directory / "training.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    write_training_png(history, directory / "training.png")
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def load_model(directory: str | Path) -> Model:
    d = Path(directory)
    if not d.is_dir():
        raise DataError(f"{d}: not a model directory (run `recsynth fit` to make one)")
    for name in FILES:
        if not (d / name).is_file():
            raise DataError(f"{d / name}: missing from the model directory")
    try:
        meta = json.loads((d / "config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{d / 'config.json'}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise DataError(f"{d / 'config.json'}: expected a JSON object, found "
                        f"{type(meta).__name__}")
    if meta.get("format_version") not in READABLE_FORMATS:
        raise DataError(f"{d / 'config.json'}: model format {meta.get('format_version')!r} "
                        f"from recsynth {meta.get('recsynth_version')}; this recsynth "
                        f"({__version__}) reads formats {', '.join(map(str, READABLE_FORMATS))}"
                        ": refit the model")
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol it refuses
            warnings.simplefilter("ignore")
            tensors = torch.load(d / "weights.pt", map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError):
        # not torch's own text: it suggests weights_only=False, which would run the code
        raise DataError(f"{d / 'weights.pt'}: not a plain tensor file (it holds Python "
                        "objects or is damaged); refusing to load it") from None
    if not isinstance(tensors, dict):
        raise DataError(f"{d / 'weights.pt'}: expected a dict of tensors")
    try:
        # absent other_softness: a model from before the softer other channel
        config = config_from_dict(meta["model"], absent={"other_softness": 1.0})
        try:
            validate_config(config)
        except UsageError as exc:
            raise ValueError(f"config.json: {exc}") from None
        schema = schema_from_dict(meta["schema"], str(d / "config.json"))
        broken = [k for k, v in tensors.items()
                  if not isinstance(v, torch.Tensor)
                  or (v.is_floating_point() and not bool(torch.isfinite(v).all()))]
        if broken:
            raise ValueError(f"weights.pt: {broken[0]!r} is not a tensor of finite numbers")
        share = tensors.get("form.liked_share")
        form = ClosedForm(tensors["form.item_factors"].numpy(), tensors["form.item_bias"].numpy(),
                          tensors["form.mean"].numpy(), tensors["form.chol"].numpy(),
                          tensors["form.weights"].numpy(), tensors["form.means"].numpy(),
                          tensors["form.chols"].numpy(), Marginal(tensors["form.activity"].numpy()),
                          None if share is None else Marginal(share.numpy()),
                          int(meta["n_channels"]),
                          # absent: a model from before activity-scaled decoding
                          activity_power=float(meta.get("activity_power", 0.0)),
                          other_softness=float(config.other_softness))
        factors = form.item_factors
        if factors.ndim != 2 or factors.shape[0] != len(form.item_bias) or \
                len(form.mean) < factors.shape[1]:
            raise ValueError(f"weights.pt: form.item_factors of shape {tuple(factors.shape)} "
                             "does not fit the item biases and the code mean")
        n_cond = int(meta.get("n_cond", 0))  # models from before conditional training: 0
        generator = ResidualGenerator(form.dim, config.hidden, form.n_components, n_cond)
        generator.load_state_dict(_prefixed(tensors, "generator."))
        critic = PacCritic(form.dim, config.hidden, config.pac, n_cond)
        critic.load_state_dict(_prefixed(tensors, "critic."))
        catalog = pl.read_parquet(d / "catalog.parquet").get_column("item")
        rowmodel = RowModel.load(d / "rowmodel")
        space = ItemSpace(tensors["space.head"].numpy(), tensors["space.tail"].numpy(),
                          tensors["space.tail_weights"].numpy(), int(meta["n_slots"]))
        if space.n_model_items * form.n_channels != len(form.item_bias):
            raise ValueError("item space and item factors disagree")
        if len(catalog) != len(rowmodel.catalog) or len(space.head) + len(space.tail) != len(
                catalog):
            raise ValueError(f"catalog.parquet holds {len(catalog)} items, the model "
                             f"{len(rowmodel.catalog)}")
        if rowmodel.schema != schema:
            raise ValueError("config.json's schema differs from the row model's")
        if space.capped:
            form = replace(form, n_head=len(space.head))
        form = replace(form, **{name: Marginal(tensors[f"form.{name}"].numpy())
                                for name in ("activity_scores", "liked_scores")
                                if f"form.{name}" in tensors})  # absent: earlier models
        conditions = Conditions.load(d)
        # a model from before conditional training has no n_cond (and a generator without
        # condition inputs) whether or not it has conditions.json: it samples as it did
        if "n_cond" in meta and n_cond != width(conditions):
            raise ValueError(f"the generator takes {n_cond} condition inputs, "
                             f"conditions.json describes {width(conditions)}")
        like_threshold, user_key = meta["like_threshold"], meta["user_key"]
        if not (like_threshold is None or isinstance(like_threshold, (int, float))) \
                or not isinstance(user_key, dict):
            raise ValueError("config.json: like_threshold or user_key of the wrong type")
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError,
            OSError, pl.exceptions.PolarsError) as exc:  # a polars error: a damaged catalog.parquet
        raise DataError(f"{d}: model directory is incomplete or corrupt "
                        f"({first_line(exc)})") from None
    generator.eval()
    critic.eval()
    return Model(config, schema, like_threshold, catalog.alias(schema.item_col), form,
                 generator, critic, rowmodel, user_key, space, conditions)


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def fingerprint(paths: list[Path]) -> list[dict[str, Any]]:
    """Size and SHA-256 of every input file, so a model can be traced to its data."""
    out = []
    for p in paths:
        digest = hashlib.sha256()
        with p.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        out.append({"path": str(p), "bytes": p.stat().st_size, "sha256": digest.hexdigest()})
    return out


def versions() -> dict[str, str]:
    return {"recsynth": __version__, "torch": torch.__version__, "polars": pl.__version__,
            "numpy": np.__version__, "python": platform.python_version()}
