"""Tasks: losses, metrics and predictions, chosen by the task kind a model declares.

=============== ===================================== =====================================
model ``task``  task class                            output of the model
=============== ===================================== =====================================
``ranking``     :class:`~bigrec.tasks.labels.LabelTask` ``ModelOutput(logits [B])``
``multitask``   :class:`~bigrec.tasks.labels.LabelTask` ``ModelOutput(logits [B, T])``
``retrieval``   :class:`~bigrec.tasks.retrieval.RetrievalTask` ``RecallOutput``
=============== ===================================== =====================================

The mapping is this module's :data:`TASKS`; nothing registers itself on import.
The protocol every task implements is in :mod:`bigrec.tasks.base`.
"""

from __future__ import annotations

from typing import Optional

from bigrec.config import DataConfig, TaskConfig
from bigrec.errors import ConfigError
from bigrec.features import Schema
from bigrec.tasks.base import Metrics, Task
from bigrec.tasks.labels import LabelTask
from bigrec.tasks.retrieval import RetrievalTask

TASKS = {"ranking": LabelTask, "multitask": LabelTask, "retrieval": RetrievalTask}


def build_task(model, schema: Schema, config: TaskConfig, data: Optional[DataConfig] = None) -> Task:
    """The task object for ``model`` (``model.task`` picks the class in :data:`TASKS`).

    ``data``: the run's data config, for tasks that read more than the batches (the
    retrieval task's item catalogue and seen items); planning passes none.
    """
    kind = getattr(model, "task", None)
    if kind not in TASKS:
        raise ConfigError(f"model {type(model).__name__} declares task '{kind}', which has no task "
                          f"implementation; known: {sorted(TASKS)}")
    return TASKS[kind].from_config(model, schema, config, data)


__all__ = ["TASKS", "LabelTask", "Metrics", "RetrievalTask", "Task", "build_task"]
