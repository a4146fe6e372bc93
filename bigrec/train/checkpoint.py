"""Sharded checkpoints with ``torch.distributed.checkpoint`` (DCP): save, find, check, load.

A checkpoint is a directory::

    step-00000120/
      .metadata, __<rank>_0.distcp   DCP shards of {"model": ..., "optim": ...}: embedding tables
                                     (sharded), dense weights, the fused sparse and the dense
                                     optimizer state
      ranks/rank-00001.pt            per rank: RNG states and the data position (tensors and
                                     plain values only)
      meta.json                      job state: epoch, batches done, global step, LR schedule,
                                     early stopping, history, world size, DataLoader workers
      schema.json, config.yaml, plan.json
      MANIFEST.json                  size and SHA-256 of every file above
      COMPLETE                       written last

Every rank writes into ``<name>.tmp``; rank 0 writes the manifest and ``COMPLETE``
once all shards are on disk and renames the directory, so a save interrupted at
any point leaves either the previous checkpoint or a ``.tmp`` / marker-less
directory that :func:`find_latest` skips with a warning. Loading checks the
manifest before any file is interpreted and runs no code from the checkpoint
(``bigrec.train.safe_load``); only files bigrec wrote are ever deleted
(``bigrec.train.manifest``). See ``docs/checkpoints.md``.
"""

from __future__ import annotations

import json
import random
import re
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import yaml
from torch import nn
from torch.distributed.checkpoint.api import CheckpointException

from bigrec.config import Config
from bigrec.errors import ConfigError
from bigrec.features import Schema
from bigrec.train import manifest
from bigrec.train.distributed import raise_for_all
from bigrec.train.safe_load import SafeFileSystemReader, SafeLoadPlanner, load_plain, read_dcp_metadata

COMPLETE_MARKER = "COMPLETE"
STEP_PREFIX = "step-"
STAGING_SUFFIX = ".tmp"
_STEP_NAME = re.compile(rf"^{STEP_PREFIX}(\d+)({re.escape(STAGING_SUFFIX)})?$")


class CheckpointWarning(UserWarning):
    """A checkpoint was skipped, or part of its state could not be restored."""


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def step_name(global_step: int) -> str:
    return f"{STEP_PREFIX}{global_step:08d}"


# ----------------------------------------------------------------------- saving
def rng_state() -> dict:
    """This process's random generators (torch CPU/CUDA, NumPy, Python) as tensors and plain values."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
             "python": [version, list(internal), gauss_next]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(directory: str | Path, model: nn.Module, optimizer=None, *, schema: Schema,
                    config: Config, plan: Optional[dict] = None, extra: Optional[dict] = None,
                    rank_state: Optional[dict] = None) -> Path:
    """Write a checkpoint to ``directory`` atomically (collective: every rank calls it).

    ``extra`` (the same on every rank) goes to ``meta.json``; ``rank_state`` (this
    rank's RNG states, data position...: tensors and plain values) to ``ranks/rank-<r>.pt``.
    """
    final = Path(directory)
    staging = final.with_name(final.name + STAGING_SUFFIX)
    rank = _rank()
    raise_for_all(_make_staging(staging, final) if rank == 0 else None)
    written = []
    if rank_state is not None:
        (staging / "ranks").mkdir(parents=True, exist_ok=True)
        written.append(f"ranks/rank-{rank:05d}.pt")
        torch.save(rank_state, staging / written[-1])
    state = {"model": model.state_dict()}
    if optimizer is not None:
        state["optim"] = optimizer.state_dict()
    dcp.save(state, checkpoint_id=str(staging))  # ends with a gather: every rank's files are written
    written += sorted(p.name for p in staging.glob(f"__{rank}_*.distcp"))
    entries = _gather_digests(manifest.digests(staging, written))
    if rank == 0:
        schema.save(staging / "schema.json")
        (staging / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        if plan is not None:
            (staging / "plan.json").write_text(json.dumps(plan, indent=2) + "\n")
        (staging / "meta.json").write_text(json.dumps(extra or {}, indent=2) + "\n")
        names = [".metadata", "schema.json", "config.yaml", "meta.json"] + (["plan.json"] if plan is not None else [])
        entries.update(manifest.digests(staging, names))
        manifest.write(staging, entries)
        (staging / COMPLETE_MARKER).write_text("ok\n")
        (staging / manifest.STAGING_MARKER).unlink()
        manifest.remove_owned(final)
        staging.rename(final)
    _barrier()
    return final


def _make_staging(staging: Path, final: Path) -> Optional[str]:
    """Rank 0: an empty ``staging`` directory marked as bigrec's; the problem if a foreign file is in the way."""
    for path in (staging, final):
        left = manifest.remove_owned(path) if path is staging else manifest.foreign_files(path)
        if left:
            return (f"cannot write checkpoint {final}: {path} holds file(s) bigrec did not write "
                    f"{left[:5]}; move them away")
    staging.mkdir(parents=True)
    (staging / manifest.STAGING_MARKER).write_text("")
    return None


def _gather_digests(local: dict) -> dict:
    """Rank 0 gets every rank's file digests (other ranks get their own back)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return dict(local)
    parts = [None] * dist.get_world_size() if _rank() == 0 else None
    dist.gather_object(local, parts, dst=0)
    return {name: entry for part in parts or [local] for name, entry in part.items()}


def prune(root: str | Path, keep_last: int) -> None:
    """Keep the newest ``keep_last`` complete ``step-*`` checkpoints under ``root``; drop stale ``.tmp`` ones.

    Rank 0 only, between two saves (no save is in flight). Only files bigrec wrote
    are deleted; a directory holding others is kept with a warning.
    """
    complete, stale = [], []
    for path in Path(root).iterdir() if Path(root).is_dir() else ():
        match = _STEP_NAME.match(path.name)
        if match is None:
            continue
        if match.group(2) or not (path / COMPLETE_MARKER).exists():
            stale.append(path)
        else:
            complete.append((int(match.group(1)), path))
    complete.sort()
    for path in [path for _, path in complete[:-keep_last]] if keep_last > 0 else []:
        _remove(path)
    for path in stale:
        _remove(path)


def _remove(path: Path) -> None:
    left = manifest.remove_owned(path)
    if left:
        warnings.warn(f"kept {path}: it holds file(s) bigrec did not write ({left[:5]})", CheckpointWarning,
                      stacklevel=3)


# ---------------------------------------------------------------------- finding
def verify(directory: str | Path, hashes: bool = True) -> None:
    """Check a checkpoint is complete and intact (ConfigError naming the file otherwise).

    The manifest is checked first (sizes, and with ``hashes`` every SHA-256);
    only then is the DCP index read, and every shard it names must be in the
    manifest. Collective when a process group of several ranks exists and
    ``hashes`` is set: every rank calls it and hashes a share of the files.
    """
    path = Path(directory)
    if not path.is_dir():
        raise ConfigError(f"checkpoint {path}: directory not found")
    if path.name.endswith(STAGING_SUFFIX) or not (path / COMPLETE_MARKER).exists():
        raise ConfigError(f"checkpoint {path} is incomplete (no {COMPLETE_MARKER} marker): it was interrupted "
                          f"while being written")
    files = manifest.check(path, hashes)
    if ".metadata" not in files:
        raise ConfigError(f"checkpoint {path}: the DCP index file .metadata is missing")
    if not hashes:
        return
    metadata = _read_metadata(path)
    named = sorted({info.relative_path for info in (metadata.storage_data or {}).values()})
    unlisted = [name for name in named if name not in files]
    if unlisted:
        raise manifest.IntegrityError(f"checkpoint {path}: its DCP index names shard file(s) {unlisted[:5]} "
                                      f"that its manifest does not list")


def find_latest(root: str | Path) -> Optional[Path]:
    """The newest usable ``step-*`` checkpoint under ``root``; torn or damaged ones are skipped with a warning."""
    root = Path(root)
    candidates = []
    for path in root.iterdir() if root.is_dir() else ():
        match = _STEP_NAME.match(path.name)
        if match is not None:
            candidates.append((int(match.group(1)), not match.group(2), path))
    for _, _, path in sorted(candidates, reverse=True):
        try:
            verify(path)
        except ConfigError as exc:
            warnings.warn(f"skipping checkpoint: {exc}", CheckpointWarning, stacklevel=2)
            continue
        return path
    return None


def read_meta(directory: str | Path) -> dict:
    return json.loads((Path(directory) / "meta.json").read_text())


def read_rank_state(directory: str | Path, rank: int) -> Optional[dict]:
    """This rank's RNG states and data position (tensors and plain values only; nothing else is loaded)."""
    path = Path(directory) / "ranks" / f"rank-{rank:05d}.pt"
    if not path.exists():
        return None
    try:
        return load_plain(path)
    except Exception as exc:  # noqa: BLE001 - refused or unreadable: one line naming the file
        raise ConfigError(f"checkpoint {directory}: {path.name} is refused or unreadable: it must hold tensors "
                          f"and plain values only ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None


# --------------------------------------------------------------------- checking
def _diff(saved, current, prefix: str) -> list[str]:
    """Readable differences between two nested dicts/values."""
    if isinstance(saved, dict) and isinstance(current, dict):
        out = []
        for key in sorted(set(saved) | set(current), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in saved:
                out.append(f"{name} is absent there, {current[key]!r} here")
            elif key not in current:
                out.append(f"{name} is {saved[key]!r} there, absent here")
            else:
                out.extend(_diff(saved[key], current[key], name))
        return out
    if isinstance(saved, (list, tuple)) and isinstance(current, (list, tuple)):
        saved, current = list(saved), list(current)
    return [] if saved == current else [f"{prefix} is {saved!r} there, {current!r} here"]


def _schema_diff(saved: Schema, current: Schema) -> list[str]:
    old = {f["name"]: f for f in saved.to_dict()["features"]}
    new = {f["name"]: f for f in current.to_dict()["features"]}
    out = _diff(old, new, "feature")
    if saved.labels != current.labels:
        out.append(f"labels are {saved.labels} there, {current.labels} here")
    return out


def check_compatible(directory: str | Path, schema: Schema, config: Config) -> None:
    """Raise a ConfigError naming what differs if the checkpoint was written for another model or schema."""
    path = Path(directory)
    problems = []
    if (path / "schema.json").exists():
        problems += [f"schema: {d}" for d in _schema_diff(Schema.load(path / "schema.json"), schema)]
    if (path / "config.yaml").exists():
        saved = yaml.safe_load((path / "config.yaml").read_text()) or {}
        current = config.to_dict()
        for section in ("model", "task"):
            problems += _diff(saved.get(section), current[section], section)
    if problems:
        shown = "; ".join(problems[:8]) + (f"; ... ({len(problems) - 8} more)" if len(problems) > 8 else "")
        raise ConfigError(f"checkpoint {path} was written for another model or schema: {shown}")


def _read_metadata(path: Path):
    """The DCP index, unpickled with an allow-list (no code runs); read it only after :func:`verify`."""
    try:
        return read_dcp_metadata(path / ".metadata")
    except Exception as exc:  # noqa: BLE001 - any failure here means an unreadable index
        raise ConfigError(f"checkpoint {path}: cannot read the DCP index .metadata ({type(exc).__name__}: {exc})") \
            from None


def _size(value) -> Optional[tuple]:
    return tuple(value.size()) if isinstance(value, torch.Tensor) or hasattr(value, "local_shards") else None


def _saved_size(entry) -> Optional[tuple]:
    return tuple(entry.size) if hasattr(entry, "size") else None


def check_model_fits(directory: str | Path, model_state: dict) -> None:
    """Every model tensor must be in the checkpoint with the same global shape (ConfigError naming them)."""
    path = Path(directory)
    saved = _read_metadata(path).state_dict_metadata
    missing, wrong = [], []
    for key, value in model_state.items():
        entry = saved.get(f"model.{key}")
        if entry is None:
            missing.append(key)
        elif _size(value) is not None and _saved_size(entry) != _size(value):
            wrong.append(f"{key} is {list(_saved_size(entry) or [])} there, {list(_size(value))} here")
    if missing or wrong:
        parts = ([f"missing tensors {missing[:6]}" + (" ..." if len(missing) > 6 else "")] if missing else []) + wrong[:6]
        raise ConfigError(f"checkpoint {path} does not fit this model/plan: " + "; ".join(parts))


# ---------------------------------------------------------------------- loading
def _load(state: dict, path: Path) -> None:
    try:
        dcp.load(state, storage_reader=SafeFileSystemReader(str(path)), planner=SafeLoadPlanner())
    except CheckpointException as exc:
        failures = "; ".join(f"rank {r}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                             for r, e in list(exc.failures.items())[:2])
        raise ConfigError(f"checkpoint {path}: loading failed ({failures})") from None


def load_model_state(directory: str | Path, model: nn.Module, verified: bool = False) -> None:
    """Load the model weights of a checkpoint into ``model`` (any sharding, any world size).

    ``verified``: the caller has just run :func:`verify` on it.
    """
    path = Path(directory)
    if not verified:
        verify(path)
    state = {"model": model.state_dict()}
    check_model_fits(path, state["model"])
    _load(state, path)
    model.load_state_dict(state["model"])


_TABLE_IN_KEY = re.compile(r"embedding(?:_bag)?s\.([^.]+)\.weight")


def _state_table(param_key: str) -> str:
    """The table (or dense parameter) an optimizer-state key belongs to."""
    match = _TABLE_IN_KEY.search(param_key)
    return match.group(1) if match else param_key.partition(".")[2]


def load_training_state(directory: str | Path, model: nn.Module, optimizer, verified: bool = False) -> list[str]:
    """Load model and optimizer state; return the tables whose optimizer state was re-initialised.

    Optimizer state whose key or shape changed with the plan (a column-wise table
    split differently, a table moved between data-parallel and model-parallel)
    keeps its fresh initial value and the table is named in a warning. ``verified``
    as in :func:`load_model_state`.
    """
    path = Path(directory)
    if not verified:
        verify(path)
    if hasattr(optimizer, "init_state"):
        optimizer.init_state()  # materialise lazy state so DCP has tensors to load into
    model_state = model.state_dict()
    check_model_fits(path, model_state)
    saved = _read_metadata(path).state_dict_metadata
    optim_state = optimizer.state_dict()
    loadable, reset = {}, set()
    for param_key, entries in optim_state["state"].items():
        kept = {}
        for name, value in entries.items():
            entry = saved.get(f"optim.state.{param_key}.{name}")
            if entry is None or (_size(value) is not None and _saved_size(entry) != _size(value)):
                reset.add(_state_table(param_key))
            else:
                kept[name] = value
        if kept:
            loadable[param_key] = kept
    request = {"model": model_state, "optim": {**optim_state, "state": loadable}}
    _load(request, path)
    model.load_state_dict(request["model"])
    optimizer.load_state_dict({**request["optim"], "state": optim_state["state"]})
    if reset:
        warnings.warn(f"checkpoint {path}: optimizer state of {sorted(reset)} does not match this plan (column "
                      f"split or data-parallel/model-parallel placement changed); it was re-initialised",
                      CheckpointWarning, stacklevel=2)
    return sorted(reset)
