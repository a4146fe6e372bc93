"""Full-ranking evaluation: every item scored, seen items excluded, the target ranked.

With W ranks, each rank scores its slice of items (:func:`~bigrec.tasks.retrieval.slices.item_slice`)
for *all* evaluation users (user vectors are all-gathered), keeps its top-K, and
the per-rank top-K lists are all-gathered and merged. Scores are float64 and
ties go to the smaller item id, so the merged lists, and therefore the metrics,
equal those of one rank scoring every item; every rank computes the same numbers
in the same order.

Metrics for each K: ``recall@K`` (= ``hitrate@K`` with one target per row),
``ndcg@K`` (``1/log2(rank+2)`` for a hit at 0-based rank), ``mrr@K``.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.distributed as dist
from torch import nn

from bigrec.models.output import score
from bigrec.tasks.retrieval.slices import DEFAULT_KS, all_gather_rows, item_slice, world

MAX_SCORES = 1 << 25  # float64 scores held at once per rank (256 MiB)


def unwrap_model(module: nn.Module):
    """The recall model inside a DMP / DDP / :class:`RetrievalModule` wrapper."""
    while True:
        if hasattr(module, "item_vectors"):
            return module
        inner = getattr(module, "model", None) or getattr(module, "module", None)
        if inner is None or inner is module:
            raise TypeError(f"{type(module).__name__} holds no recall model")
        module = inner


def slice_top_k(users: torch.Tensor, items: torch.Tensor, item_ids: torch.Tensor, targets: torch.Tensor,
                seen: torch.Tensor, k: int, padding_item: Optional[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` of one slice of items for each user, seen items (but not the target) excluded.

    Args:
        users: ``[U, D]``; items: ``[S, D]`` vectors of ``item_ids`` ``[S]`` (ascending, contiguous).
        targets: ``[U]``; seen: ``[U, L]`` ids (``-1`` = none).

    Returns: scores ``[U, k]`` float64 (``-inf`` fills) and ids ``[U, k]`` (``-1`` fills).
    """
    scores = score(users.double(), items.double())  # [U, S]
    if item_ids.numel():
        first = item_ids[0]
        local = seen - first
        inside = (local >= 0) & (local < item_ids.numel()) & (seen != targets[:, None])
        hits = torch.zeros(scores.shape, dtype=torch.int32, device=scores.device)
        hits.scatter_add_(1, torch.where(inside, local, 0), inside.int())
        scores.masked_fill_(hits > 0, float("-inf"))
        if padding_item is not None:
            scores[:, item_ids == padding_item] = float("-inf")
    take = min(k, item_ids.numel())
    values, index = scores.topk(take, dim=1, sorted=True) if take else (scores[:, :0], scores[:, :0].long())
    ids = item_ids[index]
    ids = torch.where(torch.isinf(values) & (values < 0), torch.full_like(ids, -1), ids)
    if take < k:
        fill = k - take
        values = torch.cat([values, values.new_full((values.shape[0], fill), float("-inf"))], dim=1)
        ids = torch.cat([ids, ids.new_full((ids.shape[0], fill), -1)], dim=1)
    return values, ids


def merge_top_k(values: torch.Tensor, ids: torch.Tensor, k: int) -> torch.Tensor:
    """``[U, C]`` candidate scores/ids -> ``[U, k]`` ids by score, ties to the smaller id."""
    by_id = torch.argsort(torch.where(ids < 0, torch.iinfo(torch.int64).max, ids), dim=1, stable=True)
    values, ids = values.gather(1, by_id), ids.gather(1, by_id)
    order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, :k]
    return ids.gather(1, order)


def ranking_metrics(top_ids: torch.Tensor, targets: torch.Tensor, ks: Sequence[int]) -> dict[str, float]:
    """Recall/HitRate/NDCG/MRR@K from ``[U, max K]`` ranked ids and ``[U]`` targets."""
    match = top_ids == targets[:, None]
    hit = match.any(dim=1)
    rank = torch.where(hit, match.double().argmax(dim=1).double(), torch.full_like(hit, 1e9, dtype=torch.float64))
    out: dict[str, float] = {}
    count = max(targets.shape[0], 1)
    for k in ks:
        inside = rank < k
        out[f"recall@{k}"] = float(inside.double().sum() / count)
        out[f"hitrate@{k}"] = out[f"recall@{k}"]
        out[f"ndcg@{k}"] = float(torch.where(inside, 1.0 / torch.log2(rank + 2.0), 0.0).sum() / count)
        out[f"mrr@{k}"] = float(torch.where(inside, 1.0 / (rank + 1.0), 0.0).sum() / count)
    return out


def full_ranking(users: torch.Tensor, targets: torch.Tensor, seen: torch.Tensor,
                 item_vectors: Callable[[torch.Tensor], torch.Tensor], num_items: int,
                 ks: Sequence[int] = DEFAULT_KS, padding_item: Optional[int] = 0,
                 chunk_users: int = 1024) -> dict[str, float]:
    """Full-ranking metrics of this rank's users; collective over all ranks.

    ``users [U_r, D]``, ``targets [U_r]``, ``seen [U_r, L]`` are this rank's rows;
    ``item_vectors(ids [S]) -> [S, D]`` looks items up (a collective for a sharded
    table: every rank calls it exactly once).
    """
    rank, world_size = world()
    users, targets, seen = (all_gather_rows(t, world_size) for t in (users, targets, seen))
    start, end = item_slice(num_items, rank, world_size)
    item_ids = torch.arange(start, end, device=users.device)
    items = item_vectors(item_ids).to(users.dtype)
    k = max(ks)
    values, ids = [], []
    chunk = max(1, min(chunk_users, MAX_SCORES // max(item_ids.numel(), 1)))  # bounds the [chunk, S] scores
    for lo in range(0, users.shape[0], chunk):
        hi = lo + chunk
        v, i = slice_top_k(users[lo:hi], items, item_ids, targets[lo:hi], seen[lo:hi], k, padding_item)
        values.append(v)
        ids.append(i)
    values = torch.cat(values) if values else torch.zeros(0, k, dtype=torch.float64)
    ids = torch.cat(ids) if ids else torch.zeros(0, k, dtype=torch.int64)
    if world_size > 1:  # [U, k] per rank -> [U, W*k], then merged
        all_values = [torch.empty_like(values) for _ in range(world_size)]
        all_ids = [torch.empty_like(ids) for _ in range(world_size)]
        dist.all_gather(all_values, values)
        dist.all_gather(all_ids, ids)
        values, ids = torch.cat(all_values, dim=1), torch.cat(all_ids, dim=1)
    return ranking_metrics(merge_top_k(values, ids, k), targets, ks)


class FullRankingMetrics:
    """Accumulates evaluation rows; ``compute()`` runs :func:`full_ranking` (all ranks).

    ``update(step)`` per evaluation batch, ``step`` a :class:`~bigrec.tasks.retrieval.task.RetrievalStep`.
    """

    def __init__(self, item_vectors: Callable[[torch.Tensor], torch.Tensor], num_items: int,
                 device: torch.device, ks: Sequence[int] = DEFAULT_KS, padding_item: Optional[int] = 0,
                 chunk_users: int = 1024) -> None:
        self.item_vectors = item_vectors
        self.num_items = num_items
        self.device = device
        self.ks = tuple(ks)
        self.padding_item = padding_item
        self.chunk_users = chunk_users
        self.rows: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.loss_sum = torch.zeros(2, dtype=torch.float64, device=device)

    def update(self, step) -> None:
        loss, _, users, targets, seen = step
        self.rows.append((users, targets, seen))
        self.loss_sum += torch.stack([loss.double() * targets.shape[0],
                                      torch.tensor(float(targets.shape[0]), dtype=torch.float64, device=loss.device)])

    def compute(self) -> dict[str, float]:
        if self.rows:
            users, targets, seen = (torch.cat(parts) for parts in zip(*self.rows))
        else:
            users = torch.zeros(0, 1, device=self.device)
            targets = torch.zeros(0, dtype=torch.int64, device=self.device)
            seen = torch.zeros(0, 1, dtype=torch.int64, device=self.device)
        totals = self.loss_sum.clone()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(totals)
        out = full_ranking(users, targets, seen, self.item_vectors, self.num_items, self.ks, self.padding_item,
                           self.chunk_users)
        out["loss"] = float(totals[0] / totals[1].clamp(min=1))
        return out
