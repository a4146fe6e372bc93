"""Full-ranking evaluation: every item scored, seen items excluded, the target ranked.

Each user's seen items (every training interaction, plus the valid item when
testing: :class:`~bigrec.data.seen.SeenItems`, keyed by user id) are excluded,
the same for every model and for the baselines. A target ranks after every
other item scoring at least as high (ties count against it), so constant
scores give metrics near 0 instead of favouring small ids.

With W ranks, each rank scores its slice of items (:func:`~bigrec.tasks.retrieval.slices.item_slice`)
for *all* evaluation users (user vectors are all-gathered) and keeps the K best
scores other than the target's plus the target's own score where it holds the
target; the lists are all-gathered and the target's rank is the count of scores
at or above its own (:func:`target_ranks`, exact below K). Scores are float64,
so every rank computes the same metrics as one rank scoring every item.

Metrics for each K: ``recall@K`` (= ``hitrate@K`` with one target per row),
``ndcg@K`` (``1/log2(rank+2)`` for a hit at 0-based rank), ``mrr@K``.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.distributed as dist
from torch import nn

from bigrec.data.seen import SeenItems
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
                seen: tuple[torch.Tensor, torch.Tensor], k: int,
                padding_item: Optional[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best scores of one slice of items other than each user's target, and the target's score.

    Args:
        users: ``[U, D]`` (or ``[U, K, D]``); items: ``[S, D]`` vectors of ``item_ids`` ``[S]``
            (ascending, contiguous).
        targets: ``[U]``; seen: ``(rows [P], items [P])`` pairs excluded from the ranking
            (user ``rows[p]`` has seen ``items[p]``; a user's own target never is).

    Returns: ``values [U, k]`` float64, best first (``-inf`` fills), and ``target [U]`` the
    target's score where it lies in this slice, else ``-inf``.
    """
    scores = score(users.double(), items.double())  # [U, S]
    target = torch.full((scores.shape[0],), float("-inf"), dtype=scores.dtype, device=scores.device)
    if item_ids.numel():
        first = item_ids[0]
        rows, seen_items = seen
        local = seen_items - first
        inside = (local >= 0) & (local < item_ids.numel()) & (seen_items != targets[rows])
        scores[rows[inside], local[inside]] = float("-inf")
        if padding_item is not None:
            scores[:, item_ids == padding_item] = float("-inf")
        own = targets - first
        mine = torch.nonzero((own >= 0) & (own < item_ids.numel())).squeeze(1)
        target[mine] = scores[mine, own[mine]]
        scores[mine, own[mine]] = float("-inf")  # the target is not its own competitor
    take = min(k, item_ids.numel())
    values = scores.topk(take, dim=1, sorted=True).values if take else scores[:, :0]
    if take < k:
        values = torch.cat([values, values.new_full((values.shape[0], k - take), float("-inf"))], dim=1)
    return values, target


def target_ranks(values: torch.Tensor, target: torch.Tensor, k: int) -> torch.Tensor:
    """``[U]`` 0-based rank of each target, ``k`` for "not among the top ``k``".

    The rank is the number of other items scoring at least as high (ties rank the
    target last). ``values [U, W*k]``: the ``k`` best non-target scores of each of ``W``
    item slices; ``target [U]``. A slice holding ``k`` items at or above the target
    makes the count reach ``k``; otherwise every such item is in its slice's list.
    """
    return (values >= target[:, None]).sum(dim=1).clamp(max=k)


def ranking_metrics(rank: torch.Tensor, ks: Sequence[int]) -> dict[str, float]:
    """Recall/HitRate/NDCG/MRR@K from ``[U]`` 0-based target ranks."""
    rank = rank.double()
    out: dict[str, float] = {}
    count = max(rank.shape[0], 1)
    for k in ks:
        inside = rank < k
        out[f"recall@{k}"] = float(inside.double().sum() / count)
        out[f"hitrate@{k}"] = out[f"recall@{k}"]
        out[f"ndcg@{k}"] = float(torch.where(inside, 1.0 / torch.log2(rank + 2.0), 0.0).sum() / count)
        out[f"mrr@{k}"] = float(torch.where(inside, 1.0 / (rank + 1.0), 0.0).sum() / count)
    return out


def full_ranking(users: torch.Tensor, targets: torch.Tensor, user_ids: torch.Tensor, seen: Optional[SeenItems],
                 item_vectors: Callable[[torch.Tensor], torch.Tensor], num_items: int,
                 ks: Sequence[int] = DEFAULT_KS, padding_item: Optional[int] = 0,
                 chunk_users: int = 1024) -> dict[str, float]:
    """Full-ranking metrics of this rank's users; collective over all ranks.

    ``users [U_r, D]`` (or ``[U_r, K, D]``), ``targets [U_r]``, ``user_ids [U_r]`` are this
    rank's rows; ``seen`` the items each user id has seen (excluded; ``None``: nothing is);
    ``item_vectors(ids [S]) -> [S, D]`` looks items up (a collective for a sharded table:
    every rank calls it exactly once).
    """
    rank, world_size = world()
    users, targets, user_ids = (all_gather_rows(t, world_size) for t in (users, targets, user_ids))
    start, end = item_slice(num_items, rank, world_size)
    item_ids = torch.arange(start, end, device=users.device)
    items = item_vectors(item_ids).to(users.dtype)
    k = max(ks)
    values, target = [], []
    chunk = max(1, min(chunk_users, MAX_SCORES // max(item_ids.numel(), 1)))  # bounds the [chunk, S] scores
    nothing = (targets[:0], targets[:0])
    for lo in range(0, users.shape[0], chunk):
        hi = lo + chunk
        pairs = seen.pairs(user_ids[lo:hi]) if seen is not None else nothing
        v, t = slice_top_k(users[lo:hi], items, item_ids, targets[lo:hi], pairs, k, padding_item)
        values.append(v)
        target.append(t)
    values = torch.cat(values) if values else torch.zeros(0, k, dtype=torch.float64, device=users.device)
    target = torch.cat(target) if target else torch.zeros(0, dtype=torch.float64, device=users.device)
    if world_size > 1:  # [U, k] per rank -> [U, W*k]; the target's score comes from the rank holding it
        all_values = [torch.empty_like(values) for _ in range(world_size)]
        dist.all_gather(all_values, values)
        values = torch.cat(all_values, dim=1)
        dist.all_reduce(target, op=dist.ReduceOp.MAX)
    return ranking_metrics(target_ranks(values, target, k), ks)


class FullRankingMetrics:
    """Accumulates evaluation rows; ``compute()`` runs :func:`full_ranking` (all ranks).

    ``update(step)`` per evaluation batch, ``step`` a :class:`~bigrec.tasks.retrieval.task.RetrievalStep`;
    ``seen``: the items each user has seen before the evaluated split (excluded).
    """

    def __init__(self, item_vectors: Callable[[torch.Tensor], torch.Tensor], num_items: int,
                 device: torch.device, seen: Optional[SeenItems], ks: Sequence[int] = DEFAULT_KS,
                 padding_item: Optional[int] = 0, chunk_users: int = 1024) -> None:
        self.item_vectors = item_vectors
        self.num_items = num_items
        self.device = device
        self.seen = seen.to(device) if seen is not None else None
        self.ks = tuple(ks)
        self.padding_item = padding_item
        self.chunk_users = chunk_users
        self.rows: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.loss_sum = torch.zeros(2, dtype=torch.float64, device=device)

    def update(self, step) -> None:
        loss, _, users, targets, user_ids = step
        self.rows.append((users, targets, user_ids))
        self.loss_sum += torch.stack([loss.double() * targets.shape[0],
                                      torch.tensor(float(targets.shape[0]), dtype=torch.float64, device=loss.device)])

    def compute(self) -> dict[str, float]:
        if self.rows:
            users, targets, user_ids = (torch.cat(parts) for parts in zip(*self.rows))
        else:
            users = torch.zeros(0, 1, device=self.device)
            targets = user_ids = torch.zeros(0, dtype=torch.int64, device=self.device)
        totals = self.loss_sum.clone()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(totals)
        out = full_ranking(users, targets, user_ids, self.seen, self.item_vectors, self.num_items, self.ks,
                           self.padding_item, self.chunk_users)
        out["loss"] = float(totals[0] / totals[1].clamp(min=1))
        return out
