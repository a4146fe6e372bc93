"""Retrieval losses, chosen by name (``task.options.loss``) from :data:`LOSSES`.

Every loss is an ``nn.Module`` with two methods the retrieval task calls per step:

* ``candidate_ids(user_ids [B]) -> [M]`` the item ids the model must look up this step (the
  whole corpus slice of this rank, sampled negatives, a mined negative per row, or none);
* ``forward(output, targets, candidate_ids) -> []`` the loss from the model's
  :class:`~bigrec.models.output.RecallOutput`.

===================== ===========================================================================
``full``              softmax over every item (each rank looks up its slice of the corpus, the
                      slices are all-gathered with gradients)
``sampled``           softmax over in-batch targets plus ``num_negatives`` sampled ids, with one
                      log-Q correction for the mixed proposal (Yi et al., 2019)
``margin``            pairwise / triplet margin loss ``relu(margin - s(u, v+) + s(u, v-))`` on
                      ``random_negatives`` random negatives per row (their mean) or the hardest
                      among in-batch and sampled candidates (online mining), plus with
                      ``mining: offline`` a second term on a negative mined per user from the
                      model's top results once per epoch (embedding-based retrieval, Huang et
                      al., 2020; see ``mining.py``)
``bpr_max``           GRU4Rec's BPR-max over in-batch and sampled negatives, each weighted by its
                      softmax among the row's negatives, plus ``bpr_reg`` score regularisation
``top1_max``          GRU4Rec's TOP1-max over the same softmax-weighted negatives
===================== ===========================================================================

One-pass sequence models give a user vector per history position
(``RecallOutput.position_targets``); :func:`flatten_positions` makes every real position
a row before any loss sees it (:func:`position_loss`).

Scores are dot products divided by the temperature; a user with K interest vectors
``[B, K, D]`` scores an item by its best interest (:func:`bigrec.models.output.score`).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from bigrec.models.output import RecallOutput, paired_score, score
from bigrec.tasks.retrieval.mining import MinedNegatives
from bigrec.tasks.retrieval.slices import all_gather_rows, gather_rows, item_slice, world


def full_softmax_loss(user: torch.Tensor, items: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0,
                      invalid: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Cross-entropy of each row's target among all items.

    Args:
        user: ``[B, D]`` or ``[B, K, D]`` user vectors.
        items: ``[N, D]`` vectors of items ``0..N-1`` (row ``i`` is item ``i``).
        targets: ``[B]`` target item ids.
        invalid: ``[N]`` bool, items that are never candidates (padding id).

    Returns: ``[]`` mean loss.
    """
    logits = score(user, items) / temperature  # [B, N]
    if invalid is not None:
        logits = logits.masked_fill(invalid[None, :], float("-inf"))
    return F.cross_entropy(logits, targets)


def sampled_softmax_loss(user: torch.Tensor, positives: torch.Tensor, positive_ids: torch.Tensor,
                         negatives: torch.Tensor, negative_ids: torch.Tensor, log_q_positive: torch.Tensor,
                         log_q_negative: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Softmax over in-batch positives plus extra negatives, log-Q corrected.

    Row ``b``'s label is candidate ``b`` (its own target); another candidate with
    the same item id (an accidental hit) is masked out.

    Args:
        user: ``[B, D]`` (or ``[B, K, D]``); positives: ``[B, D]`` target vectors; positive_ids: ``[B]``.
        negatives: ``[M, D]`` extra negatives (``M`` may be 0); negative_ids: ``[M]``.
        log_q_positive: ``[B]``, log_q_negative: ``[M]`` log expected counts (zeros: no correction).

    Returns: ``[]`` mean loss.
    """
    candidates = torch.cat([positives, negatives], dim=0)  # [B + M, D]
    ids = torch.cat([positive_ids, negative_ids])
    log_q = torch.cat([log_q_positive, log_q_negative])
    logits = score(user, candidates) / temperature - log_q[None, :]  # [B, B + M]
    rows = torch.arange(user.shape[0], device=user.device)
    own = rows[:, None] == torch.arange(ids.shape[0], device=user.device)[None, :]
    accidental = (ids[None, :] == positive_ids[:, None]) & ~own
    logits = logits.masked_fill(accidental, float("-inf"))
    return F.cross_entropy(logits, rows)


class FullSoftmax(nn.Module):
    """Softmax over the whole corpus; ``candidate_ids`` are this rank's slice of it."""

    def __init__(self, num_items: int, temperature: float, padding_item: Optional[int], **_: object) -> None:
        super().__init__()
        self.temperature = temperature
        rank, self.world_size = world()
        size = math.ceil(num_items / self.world_size)
        start, end = item_slice(num_items, rank, self.world_size)
        slice_ids = torch.full((size,), padding_item if padding_item is not None else 0, dtype=torch.int64)
        slice_ids[:end - start] = torch.arange(start, end)
        self.register_buffer("slice_ids", slice_ids, persistent=False)
        all_ids = torch.arange(size * self.world_size)
        invalid = all_ids >= num_items
        if padding_item is not None:
            invalid |= all_ids == padding_item
        self.register_buffer("invalid", invalid, persistent=False)

    def candidate_ids(self, user_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.slice_ids

    def forward(self, output: RecallOutput, targets: torch.Tensor, candidate_ids: torch.Tensor) -> torch.Tensor:
        items = gather_rows(output.candidates) if self.world_size > 1 else output.candidates
        return full_softmax_loss(output.user, items, targets, self.temperature, self.invalid)


class SampledCandidates(nn.Module):
    """Sampled negatives and the global item counts behind log-Q.

    ``counts`` (a checkpointed buffer) counts every rank's targets (all-gathered per
    step), add-one smoothed, so the popularity estimate is the same on every rank and
    survives a resume.
    """

    def __init__(self, num_items: int, num_negatives: int, negative_sampler: str,
                 padding_item: Optional[int]) -> None:
        super().__init__()
        self.num_items = num_items
        self.num_negatives = num_negatives
        self.negative_sampler = negative_sampler
        self.first_item = 1 if padding_item == 0 else 0
        counts = torch.ones(num_items, dtype=torch.float64)
        if padding_item is not None:
            counts[padding_item] = 0.0
        self.register_buffer("counts", counts)

    @torch.no_grad()
    def observe(self, targets: torch.Tensor) -> None:
        """Count this step's targets of every rank."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            targets = all_gather_rows(targets, dist.get_world_size())
        self.counts.index_add_(0, targets, torch.ones_like(targets, dtype=self.counts.dtype))

    def sample(self) -> torch.Tensor:
        """``[M]`` negative ids (``M = num_negatives``; empty when it is 0)."""
        if not self.num_negatives:
            return self.counts.new_zeros(0, dtype=torch.int64)
        if self.negative_sampler == "popularity":
            return torch.multinomial(self.counts.float(), self.num_negatives, replacement=True)
        return torch.randint(self.first_item, self.num_items, (self.num_negatives,), device=self.counts.device)

    def log_expected_counts(self, ids: torch.Tensor, batch_size: int) -> torch.Tensor:
        """``log E[count of item j among the B + M candidates]`` for ``ids`` ``[n]``.

        In-batch candidates are B draws from the target distribution ``p`` (estimated by
        ``counts``); the extra negatives are M draws from the sampler ``r`` (uniform or
        ``p``). One correction for the mixed proposal: ``log(B p_j + M r_j)``.
        """
        p = self.counts / self.counts.sum()
        expected = batch_size * p[ids]
        if self.num_negatives:
            if self.negative_sampler == "popularity":
                expected = expected + self.num_negatives * p[ids]
            else:
                expected = expected + self.num_negatives / (self.num_items - self.first_item)
        return torch.log(expected)


class SampledSoftmax(nn.Module):
    """In-batch plus sampled negatives with the mixed-proposal log-Q correction."""

    def __init__(self, num_items: int, temperature: float, padding_item: Optional[int], num_negatives: int = 0,
                 negative_sampler: str = "uniform", log_q: bool = True, **_: object) -> None:
        super().__init__()
        self.temperature = temperature
        self.log_q = log_q
        self.sampler = SampledCandidates(num_items, num_negatives, negative_sampler, padding_item)

    def candidate_ids(self, user_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.sampler.sample()

    def forward(self, output: RecallOutput, targets: torch.Tensor, candidate_ids: torch.Tensor) -> torch.Tensor:
        self.sampler.observe(targets)
        dtype = output.target.dtype
        if self.log_q:
            log_q_positive = self.sampler.log_expected_counts(targets, targets.shape[0]).to(dtype)
            log_q_negative = self.sampler.log_expected_counts(candidate_ids, targets.shape[0]).to(dtype)
        else:
            log_q_positive = torch.zeros(targets.shape[0], dtype=dtype, device=targets.device)
            log_q_negative = torch.zeros(candidate_ids.shape[0], dtype=dtype, device=targets.device)
        return sampled_softmax_loss(output.user, output.target, targets, output.candidates, candidate_ids,
                                    log_q_positive, log_q_negative, self.temperature)


class MarginLoss(nn.Module):
    """Triplet margin loss ``relu(margin - s(u, v+) + s(u, v-))`` on random and hard negatives.

    ``hard_negatives``: the negative is the highest-scoring candidate that is not the
    row's own target (in-batch targets plus ``num_negatives`` sampled ids: online hard
    negative mining); otherwise ``random_negatives`` distinct random such candidates,
    the row's loss the mean of their triplets. ``mining="offline"`` adds a
    second triplet per row, weighted ``mined_weight``, on a negative drawn from the row's user's mined negatives
    (:class:`~bigrec.tasks.retrieval.mining.MinedNegatives`, filled once per epoch; the
    last ``B`` candidate ids are those draws). Scores are raw dot products (cosines for
    normalised towers), not divided by the temperature.
    """

    def __init__(self, num_items: int, temperature: float, padding_item: Optional[int], num_negatives: int = 0,
                 negative_sampler: str = "uniform", margin: float = 0.1, hard_negatives: bool = False,
                 mining: str = "online", mined_count: int = 10, num_users: int = 0, mined_weight: float = 1.0,
                 random_negatives: int = 1, **_: object) -> None:
        super().__init__()
        self.margin = margin
        self.random_negatives = int(random_negatives)
        self.mined_weight = mined_weight
        self.hard_negatives = hard_negatives
        self.sampler = SampledCandidates(num_items, num_negatives, negative_sampler, padding_item)
        self.miner = MinedNegatives(num_users, num_items, mined_count, padding_item) if mining == "offline" else None

    def candidate_ids(self, user_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        sampled = self.sampler.sample()
        if self.miner is None:
            return sampled
        return torch.cat([sampled, self.miner.sample(user_ids)])

    def forward(self, output: RecallOutput, targets: torch.Tensor, candidate_ids: torch.Tensor) -> torch.Tensor:
        self.sampler.observe(targets)
        positive = paired_score(output.user, output.target)  # [B]
        candidates = output.candidates
        if self.miner is not None:  # the last B candidates are the rows' mined negatives
            sampled = candidate_ids.shape[0] - targets.shape[0]
            mined_ids, mined = candidate_ids[sampled:], candidates[sampled:]
            candidate_ids, candidates = candidate_ids[:sampled], candidates[:sampled]
        ids = torch.cat([targets, candidate_ids])
        scores = score(output.user, torch.cat([output.target, candidates]))  # [B, B + M]
        own = ids[None, :] == targets[:, None]
        if self.hard_negatives:
            picked = scores.masked_fill(own, float("-inf")).max(dim=1, keepdim=True)
            negative, valid = picked.values, torch.isfinite(picked.values)  # [B, 1]
        else:  # random_negatives distinct random candidates per row, never the row's own item
            noise = torch.rand(scores.shape, device=scores.device).masked_fill(own, -1.0)
            drawn = noise.topk(min(self.random_negatives, scores.shape[1]), dim=1)
            negative, valid = scores.gather(1, drawn.indices), drawn.values >= 0  # [B, n]
        triplets = F.relu(self.margin - positive[:, None] + negative).masked_fill(~valid, 0.0)
        losses = triplets.sum(dim=1) / valid.sum(dim=1).clamp(min=1)  # a row without a negative adds 0
        if self.miner is not None:
            hard = F.relu(self.margin - positive + paired_score(output.user, mined))
            losses = losses + self.mined_weight * torch.where(mined_ids != targets, hard, torch.zeros_like(hard))
        return losses.mean()


class SoftmaxWeightedRanking(SampledSoftmax):
    """GRU4Rec's ranking losses (Hidasi & Karatzoglou, 2018): BPR-max and TOP1-max.

    The candidates are those of :class:`SampledSoftmax` (no log-Q): each row's negatives
    are the other rows' targets plus ``num_negatives`` sampled ids (its own item
    excluded wherever it appears); each negative ``j`` is weighted
    by ``w_j = softmax_j(s_j)`` over the row's negatives, so the loss focuses on the
    negatives that score highest. With ``r`` the target's score (scores divided by
    the temperature):

    * ``bpr_max``: ``-log sum_j w_j sigmoid(r - s_j) + bpr_reg * sum_j w_j s_j^2``;
    * ``top1_max``: ``sum_j w_j (sigmoid(s_j - r) + sigmoid(s_j^2))``.

    A row without any negative adds 0. Returns the mean over rows.
    """

    def __init__(self, num_items: int, temperature: float, padding_item: Optional[int], kind: str,
                 num_negatives: int = 0, negative_sampler: str = "uniform", bpr_reg: float = 1.0,
                 **_: object) -> None:
        super().__init__(num_items, temperature, padding_item, num_negatives, negative_sampler, log_q=False)
        self.kind = kind
        self.bpr_reg = bpr_reg

    def forward(self, output: RecallOutput, targets: torch.Tensor, candidate_ids: torch.Tensor) -> torch.Tensor:
        self.sampler.observe(targets)
        positive = paired_score(output.user, output.target)[:, None] / self.temperature  # [N, 1]
        scores = score(output.user, torch.cat([output.target, output.candidates])) / self.temperature  # [N, N + M]
        negative = torch.cat([targets, candidate_ids])[None, :] != targets[:, None]
        weights = torch.softmax(scores.masked_fill(~negative, float("-inf")), dim=1).nan_to_num(0.0)
        if self.kind == "bpr_max":
            ranked = (weights * torch.sigmoid(positive - scores)).sum(dim=1)
            losses = -torch.log(ranked + 1e-24) + self.bpr_reg * (weights * scores.square()).sum(dim=1)
        else:
            losses = (weights * (torch.sigmoid(scores - positive) + torch.sigmoid(scores.square()))).sum(dim=1)
        return torch.where(negative.any(dim=1), losses, torch.zeros_like(losses)).mean()


def flatten_positions(output: RecallOutput) -> tuple[RecallOutput, torch.Tensor]:
    """One-pass sequence output -> one row per real position.

    ``user [B, L, (K,) D]``, ``target [B, L, D]`` and ``position_targets [B, L]`` become
    ``user [N, (K,) D]``, ``target [N, D]`` and target ids ``[N]`` for the N positions
    whose target is not ``-1`` (padding never reaches a loss).
    """
    keep = output.position_targets >= 0
    rows = RecallOutput(output.user[keep], output.target[keep], output.candidates, output.aux_losses, output.extras)
    return rows, output.position_targets[keep]


@torch.fx.wrap
def global_mean_weight(rows: torch.Tensor) -> torch.Tensor:
    """``[]`` ``W * n / n_total``: scales this rank's mean over its ``n`` rows to its share of the global mean.

    With one-pass sequence training ranks hold different numbers of rows; after the
    data-parallel gradient average over ``W`` ranks the weighted per-rank means equal
    the mean over all rows of all ranks, as one rank training the global batch. 0 when
    this rank has no row.
    """
    count = torch.tensor(float(rows.shape[0]), dtype=torch.float64, device=rows.device)
    _, world_size = world()
    total = count.clone()
    if world_size > 1:
        dist.all_reduce(total)
    return (world_size * count / total.clamp(min=1.0)).float()


def position_loss(loss_fn: nn.Module, output: RecallOutput, candidate_ids: torch.Tensor) -> torch.Tensor:
    """``loss_fn`` over every real position of a one-pass output, as this rank's share of the global mean.

    A batch without any real position (only empty histories) gives 0, not the NaN of a
    mean over nothing. (Called here, not from the task: ``torch.fx.wrap`` patches calls
    made in the declaring module only.)
    """
    rows, targets = flatten_positions(output)
    weight = global_mean_weight(targets)
    loss = loss_fn(rows, targets, candidate_ids)
    return torch.where(weight > 0, loss * weight, torch.zeros_like(loss))


LOSSES = {"full": FullSoftmax, "sampled": SampledSoftmax, "margin": MarginLoss,
          "bpr_max": partial(SoftmaxWeightedRanking, kind="bpr_max"),
          "top1_max": partial(SoftmaxWeightedRanking, kind="top1_max")}
