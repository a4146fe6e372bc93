"""In-process helpers for model tests: train an unsharded model on Parquet data and score it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pyarrow.parquet as pq
import torch

from bigrec.data.convert import columns_of, table_to_batch
from bigrec.features import Schema
from bigrec.models import build_model
from bigrec.config import TaskConfig
from bigrec.tasks import build_task


def batches(data_dir: Path, split: str, schema: Schema, batch_size: int):
    table = pq.read_table(Path(data_dir) / f"{split}.parquet", columns=columns_of(schema))
    return [table_to_batch(table.slice(s, batch_size), schema) for s in range(0, table.num_rows, batch_size)]


def fit_and_evaluate(data_dir: Path, name: str, params: dict, epochs: int = 1, batch_size: int = 256,
                     lr: float = 3e-3, seed: int = 0, train: str = "train",
                     options: Optional[dict] = None) -> dict[str, float]:
    """Train model ``name`` with Adam on ``train``, return its test metrics (``auc`` or ``<label>/auc``...).

    ``options``: the task's ``task.options`` (e.g. a retrieval loss).

    Runs on one thread: these models are small, and OpenMP threads competing with other
    processes on a busy 2-core machine made a step ~30x slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit_and_evaluate(data_dir, name, params, epochs, batch_size, lr, seed, train, options or {})
    finally:
        torch.set_num_threads(threads)


def _fit_and_evaluate(data_dir: Path, name: str, params: dict, epochs: int, batch_size: int, lr: float,
                      seed: int, train_split: str, options: dict) -> dict[str, float]:
    schema = Schema.load(Path(data_dir) / "schema.json")
    torch.manual_seed(seed)
    model = build_model(name, schema, params)
    task = build_task(model, schema, TaskConfig(options=options))
    module = task.wrap(model)
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    train = batches(data_dir, train_split, schema, batch_size)
    module.train()
    for _ in range(epochs):
        for batch in train:
            loss, _ = module(batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    module.eval()
    metrics = task.make_metrics(module, torch.device("cpu"))
    with torch.no_grad():
        for batch in batches(data_dir, "test", schema, 4096):
            metrics.update(module(batch)[1])
    return metrics.compute()
