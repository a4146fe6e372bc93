"""Shared pieces of the recall model tests: tiny batches and one-rank training runs of the real trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import pyarrow as pa

from bigrec.batch import Batch
from bigrec.config import config_from_dict
from bigrec.data.convert import table_to_batch
from bigrec.features import Schema


def sequence_schema(num_items: int = 40, max_len: int = 8, embedding_dim: int = 8, num_users: int = 20,
                    labels: Sequence[str] = ()) -> Schema:
    """The synthetic recall layout: ``user_id``, ``item_id`` and ``hist_item_ids`` (items ``1..num_items``)."""
    from bigrec.data.synthetic_sequences import build_schema

    schema = build_schema(num_users, num_items, max_len, embedding_dim=embedding_dim)
    return Schema(list(schema.features), labels=list(labels)) if labels else schema


def sequence_batch(schema: Schema, histories: list[list[int]], targets: list[int],
                   users: Optional[list[int]] = None, labels: Optional[dict[str, list[float]]] = None) -> Batch:
    """One batch of rows ``(user, target, history, labels...)`` of :func:`sequence_schema`'s layout."""
    table = pa.table({"user_id": pa.array(users or list(range(1, len(targets) + 1)), pa.int64()),
                      "item_id": pa.array(targets, pa.int64()),
                      "hist_item_ids": pa.array(histories, pa.list_(pa.int64())),
                      **{name: pa.array(values, pa.float32()) for name, values in (labels or {}).items()}})
    return table_to_batch(table, schema)


def run_config(model: dict, data: Path, out: Path, options: dict, epochs: int = 1, batch_size: int = 128,
               dense_lr: float = 0.005, sparse_lr: float = 0.1):
    """A one-rank run config of the real trainer on ``data`` (early stopping on recall@10)."""
    return config_from_dict({
        "data": {"path": str(data), "batch_size": batch_size, "eval_batch_size": 1024, "shuffle_buffer": 100000},
        "model": model, "task": {"options": options},
        "trainer": {"epochs": epochs, "output_dir": str(out), "progress_bar": False, "log_every": 1000,
                    "dense_optimizer": {"name": "adam", "lr": dense_lr},
                    "sparse_optimizer": {"name": "exact_row_wise_adagrad", "lr": sparse_lr},
                    "early_stopping": {"metric": "recall@10", "mode": "max", "patience": 5}},
        "sharding": {"print_plan": False}})


def popular_recall(data: Path) -> float:
    """Recall@10 of the most-popular baseline on ``data``'s test split (each user's earlier items excluded)."""
    from bigrec.data.seen import SeenItems
    from bigrec.tasks.retrieval.baselines import most_popular_metrics

    schema = Schema.load(Path(data) / "schema.json")
    seen = SeenItems.from_splits([str(Path(data) / "train.parquet"), str(Path(data) / "valid.parquet")], schema)
    return most_popular_metrics(str(Path(data) / "train.parquet"), str(Path(data) / "test.parquet"), schema,
                                seen)["recall@10"]
