"""Process-group set-up for torchrun/TorchX launches and plain single-process runs."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Optional

import torch
import torch.distributed as dist

from bigrec.errors import ConfigError


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job (read from torchrun's environment)."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    compute_device: str  # "cpu" | "cuda"

    @property
    def device(self) -> torch.device:
        if self.compute_device == "cuda":
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    @property
    def backend(self) -> str:
        return "nccl" if self.compute_device == "cuda" else "gloo"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environ(cls, compute_device: str = "auto") -> "DistEnv":
        if compute_device == "auto":
            compute_device = "cuda" if torch.cuda.is_available() else "cpu"
        if compute_device not in ("cpu", "cuda"):
            raise ConfigError(f"sharding.compute_device must be auto, cpu or cuda, got '{compute_device}'")
        if compute_device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("sharding.compute_device is 'cuda' but no CUDA device is visible")
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(
            rank=int(os.environ.get("RANK", "0")),
            world_size=world_size,
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
            local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size))),
            compute_device=compute_device,
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def init_process_group(env: DistEnv, timeout_s: float = 600.0) -> dist.ProcessGroup:
    """Initialise the default process group (a 1-rank group when not under torchrun)."""
    if not dist.is_initialized():
        if "MASTER_ADDR" not in os.environ:
            os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
            os.environ.setdefault("MASTER_PORT", str(free_port()))
        if env.compute_device == "cuda":
            torch.cuda.set_device(env.device)
        timeout = timedelta(seconds=timeout_s)
        store, _, _ = next(dist.rendezvous("env://", env.rank, env.world_size, timeout=timeout))
        # After torchrun restarts the workers, the agent's store can still hold the
        # previous attempt's gloo addresses; a per-attempt prefix keeps them apart.
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        store = dist.PrefixStore(f"bigrec/attempt_{attempt}", store)
        dist.init_process_group(backend=env.backend, store=store, rank=env.rank, world_size=env.world_size,
                                timeout=timeout)
    return dist.group.WORLD


def raise_for_all(problem: Optional[str]) -> None:
    """Raise rank 0's ``problem`` (a ConfigError message, or None) on every rank (collective; a barrier too).

    For checks only rank 0 can make (files it owns): the whole job stops with one message.
    """
    if dist.is_initialized() and dist.get_world_size() > 1:
        box = [problem]
        dist.broadcast_object_list(box, src=0)
        problem = box[0]
    if problem:
        raise ConfigError(problem)


def destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
