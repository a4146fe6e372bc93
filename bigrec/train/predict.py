"""Evaluation and prediction from a checkpoint, on any number of ranks and any plan.

The checkpoint is checked against the run config first (same model and task
sections, same schema; a clear :class:`ConfigError` otherwise), then the model is
built and sharded for *this* job (its world size, its plan) and the weights are
resharded from the checkpoint by DCP.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.distributed as dist

from bigrec.config import Config
from bigrec.data.stream import make_loader
from bigrec.errors import ConfigError
from bigrec.train import checkpoint
from bigrec.train.trainer import Trainer, prepare


def load_for_inference(config: Config, checkpoint_dir: str | Path) -> Trainer:
    """A :class:`Trainer` in inference mode holding the checkpoint's weights."""
    path = Path(checkpoint_dir)
    checkpoint.verify(path, hashes=False)  # fail fast; the load checks every digest
    prepared = prepare(config)
    checkpoint.check_compatible(path, prepared.schema, config)
    trainer = Trainer(config, prepared, inference=True)
    checkpoint.load_model_state(path, trainer.model)
    return trainer


def evaluate_checkpoint(config: Config, checkpoint_dir: str | Path,
                        splits: Sequence[str] = ("valid", "test")) -> dict[str, dict[str, float]]:
    """``{split: metrics}`` of the checkpoint's model (over all ranks)."""
    trainer = load_for_inference(config, checkpoint_dir)
    _check_splits(trainer, splits)
    return {split: trainer.evaluate(split) for split in splits}


def _check_splits(trainer: Trainer, splits: Sequence[str]) -> None:
    missing = [s for s in splits if s not in trainer.splits]
    if missing:
        raise ConfigError(f"split(s) {missing} are not configured (data.<split> is null); "
                          f"available: {sorted(trainer.splits)}")


@torch.no_grad()
def predict_scores(trainer: Trainer, split: str) -> Optional[pa.Table]:
    """Scores of every row of ``split``: a table on rank 0 (``None`` elsewhere).

    Columns: ``row`` (the row's index in the split, files in sorted order), then what
    the task writes per row (:meth:`prediction_columns`): for label tasks ``score``
    (one task) or ``score_<label>`` (several), the model's per-row extras (e.g.
    ESMM's ``p_cvr``) and the label columns.
    """
    _check_splits(trainer, [split])
    dataset = trainer.splits[split]
    dataset.set_epoch(0)
    trainer.model.eval()
    num_workers = trainer.config.data.num_workers
    row_ids = dataset.row_ids(num_workers)
    rows: list[np.ndarray] = []
    columns: dict[str, list[np.ndarray]] = {}
    for step in trainer._steps(make_loader(dataset, num_workers), len(dataset)):
        rows.append(next(row_ids))
        for name, values in trainer.task.prediction_columns(step).items():
            columns.setdefault(name, []).append(values.reshape(len(rows[-1]), -1).float().cpu().numpy())
    local = (np.concatenate(rows) if rows else np.zeros(0, np.int64),
             {name: np.concatenate(parts) for name, parts in columns.items()})
    parts = [local]
    if dist.is_initialized() and dist.get_world_size() > 1:
        parts = [None] * dist.get_world_size()
        dist.gather_object(local, parts if dist.get_rank() == 0 else None, dst=0)
        if dist.get_rank() != 0:
            return None
    row = np.concatenate([p[0] for p in parts])
    order = np.argsort(row, kind="stable")
    table = {"row": row[order]}
    for name in parts[0][1]:
        values = np.concatenate([p[1][name] for p in parts])[order]
        table[name] = values[:, 0] if values.shape[1] == 1 else list(values)
    return pa.table(table)


def predict(config: Config, checkpoint_dir: str | Path, split: str = "test",
            output: Optional[str | Path] = None) -> Optional[pa.Table]:
    """Score ``split`` with the checkpoint; rank 0 writes ``output`` (Parquet) and returns the table."""
    trainer = load_for_inference(config, checkpoint_dir)
    table = predict_scores(trainer, split)
    if table is not None and output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, str(output))
    return table
