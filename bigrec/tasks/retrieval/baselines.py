"""The most-popular baseline on the same full-ranking protocol as the models."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from bigrec.data.stream import list_parquet_files
from bigrec.errors import DataError
from bigrec.tasks.retrieval.metrics import full_ranking
from bigrec.tasks.retrieval.slices import DEFAULT_KS


def item_counts(train: str, num_items: int, item_column: str = "item_id") -> np.ndarray:
    """``[num_items]`` number of training rows whose target is each item."""
    counts = np.zeros(num_items, dtype=np.float64)
    for path in list_parquet_files(train):
        column = pq.read_table(path, columns=[item_column]).column(item_column)
        ids = pc.cast(column, "int64").to_numpy()
        if ids.size and (ids.min() < 0 or ids.max() >= num_items):
            raise DataError(path, f"ids outside [0, {num_items})", column=item_column)
        counts += np.bincount(ids, minlength=num_items)
    return counts


def most_popular_metrics(train: str, evaluate: str, num_items: int, ks: Sequence[int] = DEFAULT_KS,
                         item_column: str = "item_id", history_column: Optional[str] = "hist_item_ids",
                         padding_item: Optional[int] = 0) -> dict[str, float]:
    """Rank items by training popularity (seen items excluded) and score ``evaluate``'s targets."""
    counts = torch.from_numpy(item_counts(train, num_items, item_column))
    columns = [item_column] + ([history_column] if history_column else [])
    table = pa.concat_tables(pq.read_table(p, columns=columns) for p in list_parquet_files(evaluate))
    targets = torch.from_numpy(pc.cast(table.column(item_column), "int64").to_numpy().copy())
    if history_column:
        history = table.column(history_column).to_pylist()
        width = max(1, max((len(h) for h in history), default=1))
        seen = torch.full((len(history), width), -1, dtype=torch.int64)
        for row, items in enumerate(history):
            seen[row, :len(items)] = torch.tensor(items, dtype=torch.int64)
    else:
        seen = torch.full((targets.shape[0], 1), -1, dtype=torch.int64)
    users = torch.ones(targets.shape[0], 1, dtype=torch.float64)
    return full_ranking(users, targets, seen, lambda ids: counts[ids][:, None], num_items, ks, padding_item)
