"""Sharded checkpoints with ``torch.distributed.checkpoint`` (DCP).

A checkpoint directory holds DCP shards of ``{"model", "optim"}``, plus
``schema.json``, ``config.yaml`` and ``plan.json`` so it can be read without the
run that wrote it. It is written under a temporary name and renamed once every
rank has finished, so a torn write is never mistaken for a checkpoint.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import yaml
from torch import nn

from bigrec.config import Config
from bigrec.features import Schema

COMPLETE_MARKER = "COMPLETE"


def save_checkpoint(directory: str | Path, model: nn.Module, optimizer=None, *, schema: Schema,
                    config: Config, plan: Optional[dict] = None, extra: Optional[dict] = None) -> Path:
    """Write a checkpoint to ``directory`` atomically (collective: every rank calls it)."""
    final = Path(directory)
    staging = final.with_name(final.name + ".tmp")
    rank = dist.get_rank() if dist.is_initialized() else 0
    if rank == 0 and staging.exists():
        shutil.rmtree(staging)
    if dist.is_initialized():
        dist.barrier()
    state = {"model": model.state_dict()}
    if optimizer is not None:
        state["optim"] = optimizer.state_dict()
    dcp.save(state, checkpoint_id=str(staging))
    if rank == 0:
        schema.save(staging / "schema.json")
        (staging / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        if plan is not None:
            (staging / "plan.json").write_text(json.dumps(plan, indent=2) + "\n")
        (staging / "meta.json").write_text(json.dumps(extra or {}, indent=2) + "\n")
        (staging / COMPLETE_MARKER).write_text("ok\n")
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    if dist.is_initialized():
        dist.barrier()
    return final


def load_model_state(directory: str | Path, model: nn.Module) -> None:
    """Load the model weights of a checkpoint into ``model`` (any sharding, any world size)."""
    state = {"model": model.state_dict()}
    dcp.load(state, checkpoint_id=str(directory))
    model.load_state_dict(state["model"])
