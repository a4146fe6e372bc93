"""Copy full (unsharded) weights into a sharded model, whatever its plan."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed._shard.sharded_tensor import ShardedTensor
from torch.distributed.tensor import DTensor


def _copy_into(target: torch.Tensor, source: torch.Tensor, key: str) -> None:
    if isinstance(target, ShardedTensor):
        for shard in target.local_shards():
            region = tuple(slice(o, o + s) for o, s in zip(shard.metadata.shard_offsets,
                                                           shard.metadata.shard_sizes))
            shard.tensor.detach().copy_(source[region])
    elif isinstance(target, DTensor):
        from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

        shape, offset = compute_local_shape_and_global_offset(target.shape, target.device_mesh, target.placements)
        region = tuple(slice(o, o + s) for o, s in zip(offset, shape))
        target.to_local().detach().copy_(source[region])
    else:
        if target.shape != source.shape:
            raise ValueError(f"'{key}': shape {tuple(source.shape)} does not match {tuple(target.shape)}")
        target.detach().copy_(source)


def load_full_state(sharded_model: nn.Module, full_state: dict[str, torch.Tensor]) -> None:
    """Write ``full_state`` (e.g. an unsharded model's ``state_dict()``) into ``sharded_model``.

    Keys must match ``sharded_model.state_dict()``; every rank passes the same
    full tensors and keeps the slices its plan gives it.
    """
    state = sharded_model.state_dict()
    missing = sorted(set(state) - set(full_state))
    if missing:
        raise KeyError(f"full state lacks {missing[:5]}{'...' if len(missing) > 5 else ''}")
    with torch.no_grad():
        for key, target in state.items():
            _copy_into(target, full_state[key].to(target.device if not isinstance(target, ShardedTensor)
                                                  else full_state[key].device), key)
    sharded_model.load_state_dict(state)
