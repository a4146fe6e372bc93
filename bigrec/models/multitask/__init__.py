"""Multi-task models (``task = "multitask"``, ``ModelOutput(logits [B, T])``).

Their experts, gates and towers are the shared blocks of :mod:`bigrec.models.experts`;
``task_types`` (one of ``binary`` / ``regression`` per task) is read by the task.
"""

from __future__ import annotations

from typing import Optional, Sequence

from bigrec.errors import ConfigError
from bigrec.models.output import TASK_TYPES


def check_task_types(model: str, num_tasks: Optional[int], task_types: Optional[Sequence[str]]) -> tuple[int, list[str]]:
    """``(T, task_types)`` from either argument (both given: they must agree); default all binary."""
    if task_types is not None:
        task_types = [str(t) for t in task_types]
        bad = [t for t in task_types if t not in TASK_TYPES]
        if bad:
            raise ConfigError(f"{model}: task_types {bad} are not among {TASK_TYPES}")
        if num_tasks is not None and num_tasks != len(task_types):
            raise ConfigError(f"{model}: num_tasks={num_tasks} but task_types has {len(task_types)} entries")
        num_tasks = len(task_types)
    num_tasks = 2 if num_tasks is None else int(num_tasks)
    if num_tasks < 1:
        raise ConfigError(f"{model}: num_tasks must be >= 1, got {num_tasks}")
    return num_tasks, task_types or ["binary"] * num_tasks
