"""Optimizers: a fused sparse optimizer applied in backward, a dense one, and the LR schedule."""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import nn
from torchrec import optim as trec_optim
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizer, KeyedOptimizerWrapper
from torchrec.optim.optimizers import in_backward_optimizer_filter

from bigrec.config import OptimizerConfig, TrainerConfig
from bigrec.errors import ConfigError
from bigrec.models.embeddings import embedding_tables

SPARSE_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "exact_sgd": trec_optim.SGD,
    "exact_adagrad": trec_optim.Adagrad,
    "exact_row_wise_adagrad": trec_optim.RowWiseAdagrad,
    "adam": trec_optim.Adam,
    "partial_row_wise_adam": trec_optim.PartialRowWiseAdam,
    "lamb": trec_optim.LAMB,
}
CPU_SPARSE_OPTIMIZERS = ("exact_sgd", "exact_adagrad", "exact_row_wise_adagrad")
DENSE_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "adagrad": torch.optim.Adagrad,
    "sgd": torch.optim.SGD,
}


def _kwargs(config: OptimizerConfig, name: str) -> dict:
    kwargs = {"lr": config.lr}
    if name != "exact_sgd" and name != "sgd":
        kwargs["eps"] = config.eps
    if config.weight_decay:
        kwargs["weight_decay"] = config.weight_decay
    return kwargs


def embedding_parameters(module: nn.Module) -> list[nn.Parameter]:
    """Weights of every TorchRec embedding table in ``module``."""
    paths = {path for path, *_ in embedding_tables(module).values()}
    return [p for path in sorted(paths) for p in module.get_submodule(path).parameters()]


def check_sparse_optimizer(config: OptimizerConfig, compute_device: str) -> str:
    """The optimizer's canonical name; a ConfigError if it is unknown or has no kernel on the device."""
    name = config.name.lower()
    if name not in SPARSE_OPTIMIZERS:
        raise ConfigError(f"trainer.sparse_optimizer.name '{config.name}' is not one of {sorted(SPARSE_OPTIMIZERS)}")
    if compute_device == "cpu" and name not in CPU_SPARSE_OPTIMIZERS:
        raise ConfigError(f"sparse optimizer '{name}' has no CPU kernel in fbgemm; on CPU use one of "
                          f"{list(CPU_SPARSE_OPTIMIZERS)} (Adam for embeddings needs CUDA)")
    return name


def attach_sparse_optimizer(module: nn.Module, config: OptimizerConfig, compute_device: str) -> None:
    """Attach the fused embedding optimizer with ``apply_optimizer_in_backward``.

    Done before planning, so the planner counts the optimizer state's memory.
    """
    name = check_sparse_optimizer(config, compute_device)
    params = embedding_parameters(module)
    if params:
        apply_optimizer_in_backward(SPARSE_OPTIMIZERS[name], params, _kwargs(config, name))


def check_dense_optimizer(config: OptimizerConfig) -> str:
    """The dense optimizer's registered name (ConfigError listing the known ones)."""
    name = config.name.lower()
    if name not in DENSE_OPTIMIZERS:
        raise ConfigError(f"trainer.dense_optimizer.name '{config.name}' is not one of {sorted(DENSE_OPTIMIZERS)}")
    return name


def make_dense_optimizer(model: nn.Module, config: OptimizerConfig) -> KeyedOptimizer:
    name = check_dense_optimizer(config)
    params = dict(in_backward_optimizer_filter(model.named_parameters()))
    # one fused kernel per step over all parameters (same update as the per-tensor loop, on CPU and CUDA)
    return KeyedOptimizerWrapper(params, lambda p: DENSE_OPTIMIZERS[name](p, **_kwargs(config, name), fused=True))


def make_optimizer(sharded_model: nn.Module, config: OptimizerConfig) -> CombinedOptimizer:
    """The sharded model's fused (sparse) optimizer combined with the dense one."""
    return CombinedOptimizer([("sparse", sharded_model.fused_optimizer),
                              ("dense", make_dense_optimizer(sharded_model, config))])


def lr_factor(trainer: TrainerConfig, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the base learning rates at step ``s`` (warm-up, then the schedule)."""

    def factor(step: int) -> float:
        if trainer.warmup_steps and step < trainer.warmup_steps:
            return (step + 1) / trainer.warmup_steps
        progress = min(1.0, (step - trainer.warmup_steps) / max(1, total_steps - trainer.warmup_steps))
        if trainer.lr_schedule == "constant":
            return 1.0
        if trainer.lr_schedule == "linear_decay":
            return 1.0 - progress
        if trainer.lr_schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        raise ConfigError(f"trainer.lr_schedule '{trainer.lr_schedule}' is not constant, linear_decay or cosine")

    factor(0)  # validate the name before training starts
    return factor


class LrSchedule:
    """Scales every param group's learning rate (sparse and dense) by ``factor(step)``."""

    def __init__(self, optimizer: torch.optim.Optimizer, factor: Callable[[int], float]) -> None:
        self.optimizer = optimizer
        self.factor = factor
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.step_count = 0
        self._scale: Optional[float] = None
        self._apply()

    def _apply(self) -> None:
        scale = self.factor(self.step_count)
        if scale == self._scale:
            return  # a constant schedule writes the param groups once, not every step
        self._scale = scale
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * scale

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def lrs(self) -> dict[str, float]:
        return {"sparse": self.base_lrs[0] * self.factor(self.step_count) if self.base_lrs else 0.0,
                "dense": self.base_lrs[-1] * self.factor(self.step_count) if self.base_lrs else 0.0}

    def state_dict(self) -> dict:
        return {"step_count": self.step_count}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step_count"])
        self._scale = None  # the optimizer's groups were just loaded: write them again
        self._apply()
