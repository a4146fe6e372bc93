"""Every config value checked against its declared type and range when the config is read.

Types come from the config dataclasses' annotations (``int``, ``float``, ``bool``,
``str``, ``list[str]``, ``dict``, ``Optional[...]``); ranges and choices from
:data:`LIMITS`, keyed ``<dataclass>.<field>`` so that a rule holds wherever the
dataclass is used (both optimizers share ``OptimizerConfig.lr``). A bad value is
one line naming the key, the value and what is expected::

    trainer.epochs is 'abc', expected an integer >= 1
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from bigrec.errors import ConfigError


@dataclass(frozen=True)
class Limit:
    """Allowed values beyond the type: ``low <= v`` (``low < v`` if ``open_low``), ``v <= high``, or choices."""

    low: Optional[float] = None
    open_low: bool = False
    high: Optional[float] = None
    choices: Optional[Sequence[str]] = None

    def allows(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        return self.high is None or value <= self.high

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(self.choices)
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.open_low else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"<= {self.high:g}")
        return " and ".join(parts)


POSITIVE, NON_NEGATIVE = Limit(low=0, open_low=True), Limit(low=0)
LIMITS: dict[str, Limit] = {
    "DataConfig.batch_size": Limit(low=1),
    "DataConfig.eval_batch_size": Limit(low=1),
    "DataConfig.num_workers": NON_NEGATIVE,
    "DataConfig.shuffle_buffer": NON_NEGATIVE,
    "TaskConfig.loss_weights": NON_NEGATIVE,  # each element
    "OptimizerConfig.lr": POSITIVE,
    "OptimizerConfig.weight_decay": NON_NEGATIVE,
    "OptimizerConfig.eps": POSITIVE,
    "EarlyStoppingConfig.mode": Limit(choices=("max", "min")),
    "EarlyStoppingConfig.patience": NON_NEGATIVE,
    "TrainerConfig.epochs": Limit(low=1),
    "TrainerConfig.seed": NON_NEGATIVE,
    "TrainerConfig.lr_schedule": Limit(choices=("constant", "linear_decay", "cosine")),
    "TrainerConfig.warmup_steps": NON_NEGATIVE,
    "TrainerConfig.max_steps_per_epoch": Limit(low=1),
    "TrainerConfig.log_every": Limit(low=1),
    "TrainerConfig.checkpoint_every_steps": NON_NEGATIVE,
    "TrainerConfig.keep_last": NON_NEGATIVE,
    "ShardingConfig.compute_device": Limit(choices=("auto", "cpu", "cuda")),
}

_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list",
          dict: "a mapping"}


def _matches(value: Any, kind: Any) -> bool:
    """Does ``value`` (as YAML parsed it) have type ``kind``?"""
    origin = typing.get_origin(kind)
    if origin is typing.Union:
        return any(_matches(value, arg) for arg in typing.get_args(kind))
    if kind is type(None):
        return value is None
    if origin is list:
        (element,) = typing.get_args(kind)
        return isinstance(value, list) and all(_matches(v, element) for v in value)
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind is Any:
        return True
    return isinstance(value, origin or kind)


def _describe(kind: Any, limit: Optional[Limit]) -> str:
    """``an integer >= 1``, ``a list of numbers, each >= 0, or null``, ``one of max, min``."""
    origin = typing.get_origin(kind)
    if origin is typing.Union:
        options = [_describe(arg, limit) for arg in typing.get_args(kind) if arg is not type(None)]
        return " or ".join(options) + (", or null" if type(None) in typing.get_args(kind) else "")
    if limit is not None and limit.choices is not None:
        return limit.describe()
    if origin is list:
        element = _describe(typing.get_args(kind)[0], None)
        plural = {"an integer": "integers", "a number": "numbers", "a string": "strings"}.get(element, element)
        return f"a list of {plural}" + (f", each {limit.describe()}" if limit else "")
    return _NAMES.get(kind, getattr(kind, "__name__", str(kind))) + (f" {limit.describe()}" if limit else "")


def check_value(cls: type, name: str, value: Any, key: str) -> Any:
    """Return ``value`` if it fits field ``name`` of dataclass ``cls``; a ConfigError naming ``key`` otherwise."""
    kind = typing.get_type_hints(cls)[name]
    limit = LIMITS.get(f"{cls.__name__}.{name}")
    values = value if isinstance(value, list) else [value]
    if not _matches(value, kind) or (limit is not None and not all(v is None or limit.allows(v) for v in values)):
        raise ConfigError(f"{key} is {value!r}, expected {_describe(kind, limit)}")
    return float(value) if kind is float else value
