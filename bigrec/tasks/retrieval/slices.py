"""Item slices: which contiguous item ids each rank looks up and scores, and their all-gather."""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

DEFAULT_KS = (5, 10, 20, 50)


def world() -> tuple[int, int]:
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


def all_gather_rows(tensor: torch.Tensor, world_size: int) -> torch.Tensor:
    """Concatenate every rank's ``[n_r, ...]`` tensor in rank order (n_r may differ)."""
    if world_size == 1:
        return tensor
    count = torch.tensor([tensor.shape[0]], dtype=torch.int64, device=tensor.device)
    counts = [torch.zeros_like(count) for _ in range(world_size)]
    dist.all_gather(counts, count)
    sizes = [int(c) for c in counts]
    padded = torch.zeros((max(sizes),) + tuple(tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[:tensor.shape[0]] = tensor
    blocks = [torch.empty_like(padded) for _ in range(world_size)]
    dist.all_gather(blocks, padded)
    return torch.cat([block[:size] for block, size in zip(blocks, sizes)])
