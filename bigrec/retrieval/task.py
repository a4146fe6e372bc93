"""The ``retrieval`` task: losses for training, full-ranking metrics for evaluation.

Options (``task.options`` in the run config):

=================== ============ ==========================================================
``loss``            ``auto``     ``full`` softmax over every item, ``sampled`` softmax, or
                                 ``auto``: full up to ``full_softmax_max_items`` items
``full_softmax_max_items`` 100000
``num_negatives``   ``0``        extra sampled negatives per step (sampled softmax)
``negative_sampler`` ``uniform`` ``uniform`` over items or ``popularity`` (online counts)
``log_q``           ``true``     log-Q correction of sampled softmax
``temperature``     model's      logits are ``u·v / temperature``
``padding_item``    ``0``        an id that is never a candidate (``null``: none)
``ks``              5,10,20,50   cut-offs of Recall/NDCG/HitRate/MRR@K
``eval_chunk_users`` ``1024``    users scored per matrix product in evaluation
=================== ============ ==========================================================

**Full softmax with a sharded item table.** Every rank looks up its contiguous
slice of item ids through the model's (sharded) ``EmbeddingCollection``, then
the slices are all-gathered (gradients flow back: the backward all-reduces the
gradient and keeps this rank's slice), so every rank scores its rows against
all items while each row of the table is looked up once per rank-step.

**Sampled softmax** uses the other rows' targets as negatives plus
``num_negatives`` extra ids; the item frequencies behind log-Q are counted
online from the targets seen so far (each rank counts its own rows), which
needs no pass over the data.

The validation/test ``loss`` is the in-batch softmax (no correction); ranking
metrics come from :class:`~bigrec.retrieval.metrics.FullRankingMetrics`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist
from torch import nn

from bigrec.batch import Batch
from bigrec.config import TaskConfig
from bigrec.errors import ConfigError
from bigrec.features import Schema
from bigrec.retrieval.losses import full_softmax_loss, sampled_softmax_loss
from bigrec.tasks import register_task

DEFAULT_KS = (5, 10, 20, 50)


@dataclass(frozen=True)
class RetrievalOptions:
    loss: str = "auto"
    full_softmax_max_items: int = 100_000
    num_negatives: int = 0
    negative_sampler: str = "uniform"
    log_q: bool = True
    temperature: Optional[float] = None
    padding_item: Optional[int] = 0
    ks: tuple = DEFAULT_KS
    eval_chunk_users: int = 1024

    @classmethod
    def from_dict(cls, raw: dict) -> "RetrievalOptions":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"unknown task.options key(s) {unknown} for the retrieval task; valid: {sorted(known)}")
        options = cls(**{k: (tuple(v) if k == "ks" else v) for k, v in raw.items()})
        if options.loss not in ("auto", "full", "sampled"):
            raise ConfigError(f"task.options.loss must be auto, full or sampled, got '{options.loss}'")
        if options.negative_sampler not in ("uniform", "popularity"):
            raise ConfigError(f"task.options.negative_sampler must be uniform or popularity, "
                              f"got '{options.negative_sampler}'")
        if options.num_negatives < 0 or not options.ks or min(options.ks) < 1:
            raise ConfigError("task.options: num_negatives must be >= 0 and ks positive integers")
        if options.temperature is not None and options.temperature <= 0:
            raise ConfigError(f"task.options.temperature must be > 0, got {options.temperature}")
        return options


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def item_slice(num_items: int, rank: int, world_size: int) -> tuple[int, int]:
    """Contiguous item ids ``[start, end)`` that ``rank`` looks up and scores (equal-sized slices)."""
    size = math.ceil(num_items / world_size)
    return min(rank * size, num_items), min((rank + 1) * size, num_items)


class _GatherRows(torch.autograd.Function):
    """All-gather equally sized ``[S, D]`` blocks; backward all-reduces and keeps this rank's block."""

    @staticmethod
    def forward(ctx, rows: torch.Tensor) -> torch.Tensor:
        blocks = [torch.empty_like(rows) for _ in range(dist.get_world_size())]
        dist.all_gather(blocks, rows.contiguous())
        ctx.rank, ctx.size = dist.get_rank(), rows.shape[0]
        return torch.cat(blocks)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.size:(ctx.rank + 1) * ctx.size]


@torch.fx.wrap
def gather_rows(rows: torch.Tensor) -> torch.Tensor:
    """``[S, D]`` per rank -> ``[W*S, D]`` on every rank, differentiable."""
    return _GatherRows.apply(rows)


class RetrievalModule(nn.Module):
    """A recall model plus its loss, in the form TorchRec's pipelines drive.

    ``forward(batch)`` returns ``(loss, (loss detached,))`` in training and
    ``(loss, (loss detached, user [B, D], target ids [B], seen ids [B, L]))`` in
    evaluation (the input of :class:`~bigrec.retrieval.metrics.FullRankingMetrics`).
    """

    def __init__(self, model, options: RetrievalOptions) -> None:
        super().__init__()
        self.model = model
        self.options = options
        self.rank, self.world_size = _world()
        num_items = model.num_items
        self.full = options.loss == "full" or (options.loss == "auto" and num_items <= options.full_softmax_max_items)
        self.temperature = float(options.temperature or getattr(model, "temperature", 1.0))
        padding = options.padding_item
        self.first_item = 1 if padding == 0 else 0
        # full softmax: this rank's slice of ids, padded to the common slice size
        size = math.ceil(num_items / self.world_size)
        start, end = item_slice(num_items, self.rank, self.world_size)
        slice_ids = torch.full((size,), padding if padding is not None else 0, dtype=torch.int64)
        slice_ids[:end - start] = torch.arange(start, end)
        self.register_buffer("slice_ids", slice_ids, persistent=False)
        all_ids = torch.arange(size * self.world_size)
        invalid = all_ids >= num_items
        if padding is not None:
            invalid |= all_ids == padding
        self.register_buffer("invalid", invalid, persistent=False)
        self.register_buffer("no_ids", torch.zeros(0, dtype=torch.int64), persistent=False)
        # online item counts behind log-Q (add-one smoothed)
        self.register_buffer("counts", torch.ones(num_items, dtype=torch.float64), persistent=False)
        if padding is not None:
            self.counts[padding] = 0.0

    # ------------------------------------------------------------ training
    def _negatives(self) -> torch.Tensor:
        num, options = self.options.num_negatives, self.options
        if options.negative_sampler == "popularity":
            return torch.multinomial(self.counts.float(), num, replacement=True)
        return torch.randint(self.first_item, self.model.num_items, (num,), device=self.counts.device)

    def _sampled_loss(self, vectors, targets: torch.Tensor, negative_ids: torch.Tensor) -> torch.Tensor:
        if not self.options.log_q:
            zeros = torch.zeros_like(self.counts, dtype=vectors.user.dtype)
            return sampled_softmax_loss(vectors.user, vectors.target, targets, vectors.candidates, negative_ids,
                                        zeros[targets], zeros[negative_ids], self.temperature)
        probability = self.counts / self.counts.sum()
        log_q_positive = torch.log(probability[targets] * targets.shape[0])
        if self.options.negative_sampler == "popularity":
            log_q_negative = torch.log(probability[negative_ids] * negative_ids.shape[0])
        else:
            valid = self.model.num_items - self.first_item
            log_q_negative = torch.full_like(negative_ids, math.log(max(self.options.num_negatives, 1) / valid),
                                             dtype=torch.float64)
        dtype = vectors.user.dtype
        return sampled_softmax_loss(vectors.user, vectors.target, targets, vectors.candidates, negative_ids,
                                    log_q_positive.to(dtype), log_q_negative.to(dtype), self.temperature)

    def forward(self, batch: Batch):
        targets = self.model.target_ids(batch)
        if not self.training:
            vectors = self.model(batch, self.no_ids)
            zeros = torch.zeros(targets.shape[0], dtype=vectors.user.dtype, device=targets.device)
            loss = sampled_softmax_loss(vectors.user, vectors.target, targets, vectors.candidates, self.no_ids,
                                        zeros, zeros[:0], self.temperature)
            return loss, (loss.detach(), vectors.user.detach(), targets, self.model.seen_ids(batch))
        with torch.no_grad():
            self.counts.index_add_(0, targets, torch.ones_like(targets, dtype=self.counts.dtype))
        if self.full:
            vectors = self.model(batch, self.slice_ids)
            items = vectors.candidates
            if self.world_size > 1:
                items = gather_rows(items)
            loss = full_softmax_loss(vectors.user, items, targets, self.temperature, self.invalid)
        else:
            negative_ids = self._negatives() if self.options.num_negatives else self.no_ids
            vectors = self.model(batch, negative_ids)
            loss = self._sampled_loss(vectors, targets, negative_ids)
        return loss, (loss.detach(),)


class RetrievalTask:
    """The task object of ``task = "retrieval"`` models (see :mod:`bigrec.tasks`)."""

    def __init__(self, model, schema: Schema, options: RetrievalOptions) -> None:
        self.schema = schema
        self.options = options
        self.num_items = model.num_items

    @classmethod
    def from_config(cls, model, schema: Schema, config: TaskConfig) -> "RetrievalTask":
        return cls(model, schema, RetrievalOptions.from_dict(dict(config.options or {})))

    def wrap(self, model) -> RetrievalModule:
        return RetrievalModule(model, self.options)

    def make_metrics(self, sharded_model: nn.Module, device: torch.device):
        from bigrec.retrieval.metrics import FullRankingMetrics, unwrap_model

        model = unwrap_model(sharded_model)
        return FullRankingMetrics(model.item_vectors, self.num_items, device, ks=self.options.ks,
                                  padding_item=self.options.padding_item,
                                  chunk_users=self.options.eval_chunk_users)


register_task("retrieval", RetrievalTask.from_config)
