"""In-process helpers for model tests: train an unsharded model on Parquet data and score it."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from bigrec.data.convert import columns_of, table_to_batch
from bigrec.features import Schema
from bigrec.models import build_model
from bigrec.config import DataConfig, TaskConfig
from bigrec.tasks import build_task


def batches(data_dir: Path, split: str, schema: Schema, batch_size: int):
    table = pq.read_table(Path(data_dir) / f"{split}.parquet", columns=columns_of(schema))
    return [table_to_batch(table.slice(s, batch_size), schema) for s in range(0, table.num_rows, batch_size)]


def fit_and_evaluate(data_dir: Path, name: str, params: dict, epochs: int = 1, batch_size: int = 256,
                     lr: float = 3e-3, seed: int = 0, task: Optional[TaskConfig] = None,
                     train: str = "train") -> dict[str, float]:
    """Train model ``name`` with Adam on the ``train`` split, return its test metrics (``auc``, ``recall@10``...)."""
    return fit_and_score(data_dir, name, params, epochs, batch_size, lr, seed, task, train)[1]


def fit_and_score(data_dir: Path, name: str, params: dict, epochs: int = 1, batch_size: int = 256,
                  lr: float = 3e-3, seed: int = 0, task: Optional[TaskConfig] = None, train: str = "train"
                  ) -> tuple[torch.nn.Module, dict[str, float]]:
    """Train model ``name``; return the trained model (eval mode) and its test metrics."""
    module, label_task = fit(data_dir, name, params, epochs, batch_size, lr, seed, task, train=train)
    schema = Schema.load(Path(data_dir) / "schema.json")
    metrics = label_task.make_metrics(module, torch.device("cpu"), "test")
    with single_thread(), torch.no_grad():
        for batch in batches(data_dir, "test", schema, 4096):
            metrics.update(module(batch)[1])
    return module.model, metrics.compute()


@contextlib.contextmanager
def single_thread():
    """One OpenMP thread: these models are small, and threads competing with other processes
    on a busy 2-core machine made a step ~30x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def fit(data_dir: Path, name: str, params: dict, epochs: int = 1, batch_size: int = 256, lr: float = 3e-3,
        seed: int = 0, task: Optional[TaskConfig] = None, train_filter: Optional[str] = None, train: str = "train"):
    """Train model ``name`` with Adam on the ``train`` split (``train_sequences``: one-pass windows; only the
    rows whose label ``train_filter`` is 1, when given); return ``(task module in eval mode, task)``."""
    schema = Schema.load(Path(data_dir) / "schema.json")
    torch.manual_seed(seed)
    model = build_model(name, schema, params)
    label_task = build_task(model, schema, task or TaskConfig(), DataConfig(path=str(data_dir)))
    module = label_task.wrap(model)
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    table = pq.read_table(Path(data_dir) / f"{train}.parquet", columns=columns_of(schema))
    if train_filter is not None:
        table = table.filter(pc.equal(table.column(train_filter), 1))
    train = [table_to_batch(table.slice(s, batch_size), schema) for s in range(0, table.num_rows, batch_size)]
    module.train()
    with single_thread():
        for _ in range(epochs):
            for batch in train:
                loss, _ = module(batch)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    return module.eval(), label_task


def predict(module, data_dir: Path, split: str = "test") -> dict[str, np.ndarray]:
    """Every row's prediction columns (``bigrec predict``'s) of ``split``, concatenated."""
    schema = Schema.load(Path(data_dir) / "schema.json")
    parts: dict[str, list] = {}
    with single_thread(), torch.no_grad():
        for batch in batches(data_dir, split, schema, 4096):
            for column, values in module.task.prediction_columns(module(batch)[1]).items():
                parts.setdefault(column, []).append(values.numpy())
    return {column: np.concatenate(values) for column, values in parts.items()}
