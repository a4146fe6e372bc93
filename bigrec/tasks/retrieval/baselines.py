"""The most-popular baseline on the same full-ranking protocol as the models."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from bigrec.data.seen import SeenItems, read_ids
from bigrec.features import Schema
from bigrec.tasks.retrieval.metrics import full_ranking
from bigrec.tasks.retrieval.slices import DEFAULT_KS


def item_counts(train: str, schema: Schema, item_feature: str = "item_id") -> np.ndarray:
    """``[num_items]`` number of training rows whose target is each item."""
    return np.bincount(read_ids(train, schema, item_feature), minlength=schema[item_feature].vocab_size)


def most_popular_metrics(train: str, evaluate: str, schema: Schema, seen: Optional[SeenItems],
                         ks: Sequence[int] = DEFAULT_KS, item_feature: str = "item_id",
                         user_feature: str = "user_id", padding_item: Optional[int] = 0) -> dict[str, float]:
    """Rank items by training popularity (each user's ``seen`` items excluded) and score ``evaluate``'s targets."""
    counts = torch.from_numpy(item_counts(train, schema, item_feature).astype(np.float64))
    targets = torch.from_numpy(read_ids(evaluate, schema, item_feature))
    users = torch.from_numpy(read_ids(evaluate, schema, user_feature))
    return full_ranking(torch.ones(targets.shape[0], 1, dtype=torch.float64), targets, users, seen,
                        lambda ids: counts[ids][:, None], schema[item_feature].vocab_size, ks, padding_item)
