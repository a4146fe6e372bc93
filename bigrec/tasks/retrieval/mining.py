"""Offline hard-negative mining: each user's negatives from the model's own top results, once per epoch.

With ``task.options.mining: offline`` (``margin`` loss), every epoch after the
first starts with a pass over the training split in evaluation mode
(:class:`MiningPass`, run by the trainer like an evaluation): each user's vector
(the mean of the user's training rows' vectors) is scored against every item,
the user's training items and the padding id are excluded, and the items ranked
``mined_start .. mined_start + mined_count - 1`` become that user's mined
negatives (:class:`MinedNegatives`, the same table on every rank). In training,
each row then draws one of its user's mined negatives at random (a uniform item
while none are mined, e.g. in the first epoch or for an unknown user) as the hard
negative of the margin loss, beside the random negative.

The table is a checkpointed buffer: a run resumed mid-epoch skips the pass (the
trainer runs epoch passes at the start of an epoch only) and trains the rest of the
epoch on the table it was checkpointed with, as the uninterrupted run does.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from bigrec.data.seen import SeenItems
from bigrec.tasks.retrieval.slices import all_gather_rows, item_slice, world

MAX_SCORES = 1 << 24  # float scores held at once while mining


class MinedNegatives(nn.Module):
    """``[num_users, count]`` mined item ids per user id (``-1``: none yet), and per-row draws from them."""

    def __init__(self, num_users: int, num_items: int, count: int, padding_item: Optional[int]) -> None:
        super().__init__()
        self.num_items = num_items
        self.first_item = 1 if padding_item == 0 else 0
        self.register_buffer("mined", torch.full((num_users, count), -1, dtype=torch.int64))  # checkpointed

    def sample(self, user_ids: torch.Tensor) -> torch.Tensor:
        """``[B]`` user ids -> ``[B]`` one mined negative per row (a uniform item where none is mined)."""
        known = (user_ids >= 0) & (user_ids < self.mined.shape[0])
        rows = self.mined[user_ids.clamp(min=0, max=self.mined.shape[0] - 1)]  # [B, count]
        pick = (torch.rand_like(user_ids, dtype=torch.float32) * rows.shape[1]).long().clamp(max=rows.shape[1] - 1)
        mined = rows.gather(1, pick[:, None]).squeeze(1)
        uniform = self.first_item + (torch.rand_like(user_ids, dtype=torch.float32)
                                     * (self.num_items - self.first_item)).long()
        return torch.where(known & (mined >= 0), mined, uniform.clamp(max=self.num_items - 1))

    @torch.no_grad()
    def store(self, user_ids: torch.Tensor, ids: torch.Tensor) -> None:
        """Replace the table: users ``[U]`` get ``ids [U, count]`` (``-1`` fills), all others none."""
        self.mined.fill_(-1)
        self.mined[user_ids.to(self.mined.device)] = ids.to(self.mined.device)


class MiningPass:
    """An evaluation-mode pass over the training split that fills :class:`MinedNegatives` (see the module doc).

    ``update(step)`` takes a :class:`~bigrec.tasks.retrieval.task.RetrievalStep`;
    ``compute()`` is collective over all ranks (user vectors and item slices are
    all-gathered, so every rank stores the same table) and returns ``{"mined_users": U}``.
    """

    def __init__(self, miner: MinedNegatives, item_vectors: Callable[[torch.Tensor], torch.Tensor],
                 seen: SeenItems, start: int, padding_item: Optional[int]) -> None:
        self.miner = miner
        self.item_vectors = item_vectors
        self.seen = seen
        self.start = start
        self.padding_item = padding_item
        self.users: list[torch.Tensor] = []
        self.user_ids: list[torch.Tensor] = []

    def update(self, step) -> None:
        user = step.user.reshape(step.user.shape[0], -1)  # K interests flattened: a row is one user's vector(s)
        self.users.append(user.float())
        self.user_ids.append(step.user_ids)

    def compute(self) -> dict[str, float]:
        rank, world_size = world()
        count = self.miner.mined.shape[1]
        device = self.miner.mined.device
        users = torch.cat(self.users) if self.users else torch.zeros(0, 1, device=device)
        ids = torch.cat(self.user_ids) if self.user_ids else torch.zeros(0, dtype=torch.int64, device=device)
        start, end = item_slice(self.miner.num_items, rank, world_size)
        items = self.item_vectors(torch.arange(start, end, device=device)).float()  # collective
        items = all_gather_rows(items, world_size)  # [N, D], row i = item i
        users, ids = all_gather_rows(users, world_size), all_gather_rows(ids, world_size)
        keep = ids >= 0
        users, ids = users[keep], ids[keep]
        unique, index = torch.unique(ids, return_inverse=True)
        means = torch.zeros(unique.numel(), users.shape[1], device=device).index_add_(0, index, users)
        means = means / torch.bincount(index, minlength=unique.numel()).clamp(min=1)[:, None].to(means.dtype)
        means = means.reshape(unique.numel(), -1, items.shape[1])  # [U, K, D]
        mined = torch.full((unique.numel(), count), -1, dtype=torch.int64, device=device)
        chunk = max(1, MAX_SCORES // max(items.shape[0], 1))
        for lo in range(0, unique.numel(), chunk):
            mined[lo:lo + chunk] = self._top(means[lo:lo + chunk], items, unique[lo:lo + chunk], count)
        self.miner.store(unique, mined)
        return {"mined_users": float(unique.numel())}

    def _top(self, users: torch.Tensor, items: torch.Tensor, user_ids: torch.Tensor, count: int) -> torch.Tensor:
        """``[U, count]`` items ranked ``start..start+count-1`` for each user, seen items and padding excluded."""
        scores = torch.matmul(users, items.t()).amax(dim=1)  # [U, N], the best interest per item
        rows, seen = self.seen.pairs(user_ids)
        scores[rows, seen.to(scores.device)] = float("-inf")
        if self.padding_item is not None:
            scores[:, self.padding_item] = float("-inf")
        take = min(self.start + count, scores.shape[1])
        values, top = scores.topk(take, dim=1)
        top = torch.where(torch.isinf(values), torch.full_like(top, -1), top)[:, self.start:]
        return torch.nn.functional.pad(top, (0, count - top.shape[1]), value=-1)
