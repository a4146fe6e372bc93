"""Each user's seen items: what full-ranking evaluation, the baselines, export and retrieval exclude.

A user's seen items are the targets of every row of the splits *before* the
evaluated one, keyed by user id: the training interactions when validating,
the training interactions plus the valid item when testing
(:func:`splits_before`). Unlike a history column (capped at its ``max_len``, and
absent for some models), this is the user's whole history, the same for every
model and for the baselines. The evaluated target itself is never excluded
(a repeat consumption still counts).

Stored as CSR over sorted user ids (``user_ids [U]``, ``offsets [U+1]``,
``items [T]``), so looking up a chunk of evaluation users is a binary search
and a jagged gather.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pyarrow.parquet as pq
import torch

from bigrec.batch import select_jagged
from bigrec.data.convert import check_arrow_schema, check_values, ids_and_lengths
from bigrec.data.stream import list_parquet_files, open_parquet
from bigrec.errors import ConfigError
from bigrec.features import Schema, SparseFeature

_BEFORE = {"train": (), "valid": ("train",)}


def splits_before(split: str) -> tuple[str, ...]:
    """Splits whose targets a user has seen when ``split`` is evaluated: ``valid`` -> train; ``test`` -> train, valid."""
    return _BEFORE.get(split, ("train", "valid"))


def read_ids(spec: str, schema: Schema, name: str) -> np.ndarray:
    """``[N]`` int64 values of the single-valued id feature ``name`` over the files of ``spec`` (policy applied)."""
    feature = schema[name]
    if not isinstance(feature, SparseFeature) or feature.multi_valued:
        raise ConfigError(f"'{name}' must be a single-valued id feature to key seen items, it is a "
                          f"{feature.kind} feature")
    columns = Schema([feature])
    parts = []
    for path in list_parquet_files(spec):
        check_arrow_schema(columns, open_parquet(path).schema_arrow, path)
        table = pq.read_table(path, columns=[name])
        check_values(table, columns, path)
        parts.append(ids_and_lengths(table, feature, np.ones(table.num_rows, dtype=np.int32))[0])
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


@dataclass
class SeenItems:
    """Sorted distinct item ids per user.

    Attributes: ``user_ids [U]`` ascending, ``offsets [U+1]``, ``items [T]`` (user ``user_ids[u]``
    has ``items[offsets[u]:offsets[u+1]]``, ascending).
    """

    user_ids: torch.Tensor
    offsets: torch.Tensor
    items: torch.Tensor

    @classmethod
    def from_pairs(cls, users: np.ndarray, items: np.ndarray) -> "SeenItems":
        """From ``[N]`` (user, item) interaction pairs (repeats collapse)."""
        pairs = np.unique(np.stack([users.astype(np.int64), items.astype(np.int64)], axis=1), axis=0)
        user_ids, counts = np.unique(pairs[:, 0], return_counts=True)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(torch.from_numpy(user_ids), torch.from_numpy(offsets), torch.from_numpy(pairs[:, 1].copy()))

    @classmethod
    def from_splits(cls, specs: Sequence[str], schema: Schema, user_feature: str = "user_id",
                    item_feature: str = "item_id") -> "SeenItems":
        """The targets (``item_feature``) of every row of the splits ``specs`` (files, dirs or globs), by user."""
        if user_feature not in schema:
            raise ConfigError(f"excluding each user's seen items needs the user id feature '{user_feature}' in the "
                              f"schema (task.options.user_feature names it)")
        users = [read_ids(spec, schema, user_feature) for spec in specs]
        items = [read_ids(spec, schema, item_feature) for spec in specs]
        empty = np.zeros(0, dtype=np.int64)
        return cls.from_pairs(np.concatenate(users) if users else empty, np.concatenate(items) if items else empty)

    def to(self, device: torch.device) -> "SeenItems":
        return SeenItems(self.user_ids.to(device), self.offsets.to(device), self.items.to(device))

    def pairs(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(rows [P], items [P])``: item ``items[p]`` was seen by ``users[rows[p]]``, for ``users [n]``.

        Users without seen items (or unknown) contribute nothing.
        """
        users = users.to(self.user_ids.device).long()
        if self.user_ids.numel() == 0:
            return users[:0], self.items[:0]
        position = torch.searchsorted(self.user_ids, users).clamp(max=self.user_ids.numel() - 1)
        known = self.user_ids[position] == users
        items, counts = select_jagged(self.items, self.offsets.diff(), position[known])
        rows = torch.repeat_interleave(torch.arange(users.numel(), device=users.device)[known], counts.long())
        return rows, items

    def lists(self, users: torch.Tensor) -> list[list[int]]:
        """Each user's seen item ids, ascending."""
        rows, items = self.pairs(users)
        out: list[list[int]] = [[] for _ in range(users.numel())]
        for row, item in zip(rows.tolist(), items.tolist()):
            out[row].append(item)
        return out
