"""Sharding: sharders, planner topology and constraints, plan printing and plan files.

On CPU TorchRec's default embedding-bag sharder offers only table-wise,
column-wise, table-column-wise and data-parallel; row-wise sharding is exact on
CPU too, so bigrec's sharders offer the full CUDA list everywhere. For
``EmbeddingCollection`` on CPU, data-parallel and the dense kernel are broken in
fbgemm's CPU kernels, so they are never offered there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn
from torchrec.distributed.embedding import EmbeddingCollectionSharder
from torchrec.distributed.embedding_types import EmbeddingComputeKernel
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.model_parallel import DataParallelWrapper
from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
from torchrec.distributed.planner.stats import NoopEmbeddingStats
from torchrec.distributed.planner.types import Stats
from torchrec.distributed.types import (
    CacheParams,
    EmbeddingModuleShardingPlan,
    EnumerableShardingSpec,
    ModuleSharder,
    ParameterSharding,
    ShardingPlan,
    ShardingType,
    ShardMetadata,
)
from torchrec.modules.embedding_modules import EmbeddingBagCollection, EmbeddingCollection

from bigrec.config import ShardingConfig
from bigrec.errors import ConfigError, read_json_file
from bigrec.train.plan_check import check_plan_file
from bigrec.models.embeddings import embedding_tables

ALL_SHARDING_TYPES = [t.value for t in ShardingType]
FUSED = EmbeddingComputeKernel.FUSED.value


class BagSharder(EmbeddingBagCollectionSharder):
    """EBC sharder offering row-wise, table-row-wise and grid sharding on CPU too."""

    def sharding_types(self, compute_device_type: str) -> list[str]:
        return super().sharding_types("cuda" if compute_device_type == "cpu" else compute_device_type)


class SequenceSharder(EmbeddingCollectionSharder):
    """EC sharder that never offers the CPU-broken data-parallel / dense-kernel paths."""

    def sharding_types(self, compute_device_type: str) -> list[str]:
        types = super().sharding_types(compute_device_type)
        if compute_device_type == "cpu":
            types = [t for t in types if t != ShardingType.DATA_PARALLEL.value]
        return types

    def compute_kernels(self, sharding_type: str, compute_device_type: str) -> list[str]:
        kernels = super().compute_kernels(sharding_type, compute_device_type)
        if compute_device_type == "cpu":
            kernels = [k for k in kernels if k != EmbeddingComputeKernel.DENSE.value]
        return kernels


def make_sharders() -> list[ModuleSharder[nn.Module]]:
    return [BagSharder(), SequenceSharder()]


class SingleRankWrapper(DataParallelWrapper):
    """DMP's data-parallel wrapper for a job of one rank: no DDP around the dense part.

    DDP over a one-process group still buckets every gradient and runs an all-reduce
    per step (a thread hand-off to gloo); with one rank the gradients need no sync.
    """

    def wrap(self, dmp: nn.Module, env: Any, device: torch.device) -> None:
        dmp._dmp_wrapped_module.to(device)


def data_parallel_wrapper(world_size: int) -> Optional[DataParallelWrapper]:
    """The wrapper for ``DistributedModelParallel`` (None: TorchRec's DDP wrapper)."""
    return SingleRankWrapper() if world_size == 1 else None


KERNELS = [k.value for k in EmbeddingComputeKernel]
UVM_CACHING = EmbeddingComputeKernel.FUSED_UVM_CACHING.value


def table_feature_counts(module: nn.Module) -> dict[str, int]:
    """``table -> number of features reading it`` (the length of its pooling-factor list)."""
    counts = {}
    for child in module.modules():
        if isinstance(child, EmbeddingBagCollection):
            configs = child.embedding_bag_configs()
        elif isinstance(child, EmbeddingCollection):
            configs = child.embedding_configs()
        else:
            continue
        counts.update({c.name: len(c.feature_names) for c in configs})
    return counts


# Search-space pruning for large clusters (``prune_for_world_size``): splitting a table's rows
# over N ranks pays only when every shard keeps a fair number of rows, and replicating a
# table on every rank only when it is tiny. Each row-wise option of a table costs the
# planner one estimate per rank, so on 128 ranks this is what keeps planning fast.
MIN_ROWS_PER_SHARD = 1024
MAX_REPLICATED_ROWS = 10_000
ROW_SPLITTING = ("row_wise", "table_row_wise", "grid_shard")


def pruned_sharding_types(rows: int, world_size: int) -> list[str]:
    """Sharding types worth considering for a ``rows``-row table on ``world_size`` ranks.

    Kept in TorchRec's enum order: the planner breaks ties between equal estimates
    (e.g. table-wise vs one-shard column-wise) by that order.
    """
    dropped = set()
    if rows < MIN_ROWS_PER_SHARD * world_size:
        dropped |= set(ROW_SPLITTING)
    if rows > MAX_REPLICATED_ROWS:
        dropped.add(ShardingType.DATA_PARALLEL.value)
    return [t for t in ALL_SHARDING_TYPES if t not in dropped]


def cpu_sharding_types(rows: int, world_size: int) -> list[str]:
    """The default sharding types of a table on CPU ranks.

    TorchRec's planner models GPU costs; on CPU (gloo, one host) splitting a small
    table's rows over ranks buys nothing and adds bucketing and all-to-all traffic.
    A table of at most ``MAX_REPLICATED_ROWS`` rows is kept whole on one rank
    (table-wise: it rides the module's one all-to-all, with the fused kernel and the
    exact fused optimizer). Data-parallel would avoid the all-to-all, but its dense
    kernel runs TorchRec's Python optimizer instead of fbgemm's, and on MovieLens-100k
    it lost 0.005 test AUC (``docs/benchmarks.md``); it is also broken for
    ``EmbeddingCollection`` tables on CPU. Larger tables keep the planner's choice
    among :func:`pruned_sharding_types`, except on one rank, where every table is
    table-wise (a row or grid split of a one-rank job only adds bucketing and a second
    sharded lookup).
    """
    if rows <= MAX_REPLICATED_ROWS or world_size == 1:
        return [ShardingType.TABLE_WISE.value]
    return pruned_sharding_types(rows, world_size)


def make_constraints(module: nn.Module, config: ShardingConfig, default_kernels: Optional[list[str]] = None,
                     cache_load_factor: Optional[float] = None,
                     prune_for_world_size: Optional[int] = None,
                     cpu_world_size: Optional[int] = None) -> dict[str, ParameterConstraints]:
    """Per-table planner constraints from ``sharding.sharding_types`` and ``sharding.tables``.

    Per-table keys: ``sharding_types``, ``compute_kernels`` (``fused``, ``fused_uvm``,
    ``fused_uvm_caching``, ``dense``...), ``cache_load_factor`` (share of rows cached in
    HBM by ``fused_uvm_caching``), ``pooling_factor`` (one number for every feature of
    the table) or ``pooling_factors`` (one per feature), ``min_partition`` (smallest
    column-wise shard width), and any other ``ParameterConstraints`` field.
    ``default_kernels`` / ``cache_load_factor`` apply to tables that name none;
    ``prune_for_world_size`` restricts tables that name no sharding types to
    :func:`pruned_sharding_types`; ``cpu_world_size`` (planning for CPU ranks) gives
    tables with no ``sharding.tables`` entry :func:`cpu_sharding_types` when
    ``sharding.sharding_types`` is not set.
    """
    tables = embedding_tables(module)
    feature_counts = table_feature_counts(module)
    unknown = sorted(set(config.tables) - set(tables))
    if unknown:
        raise ConfigError(f"sharding.tables names unknown table(s) {unknown}; the model's tables: {sorted(tables)}")
    constraints = {}
    for name in tables:
        per_table = dict(config.tables.get(name) or {})
        types = per_table.pop("sharding_types", config.sharding_types)
        if types is None and prune_for_world_size:
            types = pruned_sharding_types(tables[name][1], prune_for_world_size)
        elif types is None and cpu_world_size and name not in config.tables:
            types = cpu_sharding_types(tables[name][1], cpu_world_size)
        kernels = per_table.pop("compute_kernels", default_kernels)
        load_factor = per_table.pop("cache_load_factor", cache_load_factor)
        if "pooling_factor" in per_table:
            per_table["pooling_factors"] = [float(per_table.pop("pooling_factor"))] * feature_counts[name]
        if types is not None:
            bad = sorted(set(types) - set(ALL_SHARDING_TYPES))
            if bad:
                raise ConfigError(f"table '{name}': unknown sharding type(s) {bad}; use {ALL_SHARDING_TYPES}")
        if kernels is not None:
            bad = sorted(set(kernels) - set(KERNELS))
            if bad:
                raise ConfigError(f"table '{name}': unknown compute kernel(s) {bad}; use {KERNELS}")
        factors = per_table.get("pooling_factors")
        if factors is not None and len(factors) != feature_counts[name]:
            raise ConfigError(f"table '{name}': {len(factors)} pooling_factors for {feature_counts[name]} feature(s)")
        if load_factor is not None:
            if not 0.0 < float(load_factor) <= 1.0:
                raise ConfigError(f"table '{name}': cache_load_factor must be in (0, 1], got {load_factor}")
            per_table["cache_params"] = CacheParams(load_factor=float(load_factor))
        try:
            constraints[name] = ParameterConstraints(sharding_types=types, compute_kernels=kernels, **per_table)
        except TypeError as exc:
            raise ConfigError(f"sharding.tables.{name}: {exc}") from None
    return constraints


def make_topology(world_size: int, compute_device: str, local_world_size: Optional[int] = None,
                  **capacities: Any) -> Topology:
    return Topology(world_size=world_size, compute_device=compute_device,
                    local_world_size=local_world_size or world_size, **capacities)


def make_planner(module: nn.Module, topology: Topology, batch_size: int, config: ShardingConfig,
                 constraints: Optional[dict[str, ParameterConstraints]] = None,
                 stats: Optional[list[Stats]] = None, timeout_seconds: Optional[int] = None) -> EmbeddingShardingPlanner:
    """TorchRec's planner for ``topology``; ``stats`` receive the chosen plan with its estimates.

    ``timeout_seconds`` bounds the proposal search (after enumeration); the best plan
    found by then is returned.
    """
    return EmbeddingShardingPlanner(
        topology=topology,
        batch_size=batch_size,
        constraints=constraints if constraints is not None else make_constraints(module, config),
        stats=stats if stats is not None else [NoopEmbeddingStats()],
        debug=False,
        timeout_seconds=timeout_seconds,
    )


def plan_sharding(module: nn.Module, world_size: int, compute_device: str, batch_size: int,
                  config: ShardingConfig, local_world_size: Optional[int] = None,
                  process_group: Optional[torch.distributed.ProcessGroup] = None) -> ShardingPlan:
    """Run TorchRec's planner; with a process group, rank 0 plans and broadcasts.

    On CPU, tables the config says nothing about get :func:`cpu_sharding_types`.
    """
    constraints = make_constraints(module, config, cpu_world_size=world_size if compute_device == "cpu" else None)
    planner = make_planner(module, make_topology(world_size, compute_device, local_world_size), batch_size, config,
                           constraints)
    if process_group is not None:
        return planner.collective_plan(module, make_sharders(), process_group)
    return planner.plan(module, make_sharders())


# ------------------------------------------------------------------ plan files
def plan_to_dict(plan: ShardingPlan) -> dict:
    """JSON-able form: ``{module path: {table: {sharding_type, compute_kernel, ranks, shards}}}``."""
    out: dict = {}
    for path, module_plan in plan.plan.items():
        out[path] = {}
        for table, sharding in module_plan.items():
            shards = []
            if sharding.sharding_spec is not None:
                shards = [{"offsets": list(s.shard_offsets), "sizes": list(s.shard_sizes), "placement": str(s.placement)}
                          for s in sharding.sharding_spec.shards]
            out[path][table] = {"sharding_type": sharding.sharding_type, "compute_kernel": sharding.compute_kernel,
                                "ranks": list(sharding.ranks or []), "shards": shards}
    return out


def plan_from_dict(data: dict, device_type: str) -> ShardingPlan:
    """Inverse of :func:`plan_to_dict`; shard placements are moved to ``device_type``."""
    plan = {}
    for path, tables in data.items():
        module_plan = EmbeddingModuleShardingPlan()
        for table, entry in tables.items():
            spec = None
            if entry["shards"]:
                spec = EnumerableShardingSpec([
                    ShardMetadata(shard_offsets=s["offsets"], shard_sizes=s["sizes"],
                                  placement=_placement(s["placement"], device_type))
                    for s in entry["shards"]])
            module_plan[table] = ParameterSharding(sharding_type=entry["sharding_type"],
                                                   compute_kernel=entry["compute_kernel"],
                                                   ranks=entry["ranks"], sharding_spec=spec)
        plan[path] = module_plan
    return ShardingPlan(plan)


def _placement(placement: str, device_type: str) -> str:
    rank = placement.split("/")[0]  # "rank:3"
    index = int(rank.split(":")[1])
    return f"{rank}/{device_type}:{index}" if device_type == "cuda" else f"{rank}/{device_type}"


def save_plan(plan: ShardingPlan, path: str | Path, world_size: int, extra: Optional[dict] = None) -> None:
    payload = {"world_size": world_size, "plan": plan_to_dict(plan), **(extra or {})}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(payload, indent=2) + "\n")


def load_plan(path: str | Path, module: nn.Module, world_size: int, device_type: str) -> ShardingPlan:
    """Load a plan file and check it field by field against this model and job (a ConfigError otherwise)."""
    payload = read_json_file(path, ConfigError, "plan")
    check_plan_file(payload, str(path), embedding_tables(module), {False: BagSharder(), True: SequenceSharder()},
                    world_size, device_type)
    return plan_from_dict(payload["plan"], device_type)


def describe_plan(plan: ShardingPlan) -> str:
    """A readable table: one line per table with type, kernel, ranks and shard sizes."""
    rows = [("module", "table", "sharding", "kernel", "ranks", "shards (rows x cols)")]
    for path, module_plan in plan.plan.items():
        for table, sharding in module_plan.items():
            shards = sharding.sharding_spec.shards if sharding.sharding_spec else []
            sizes = ", ".join(f"{s.shard_sizes[0]}x{s.shard_sizes[1]}" for s in shards) or "replicated"
            ranks = ",".join(str(r) for r in (sharding.ranks or [])) or "all"
            rows.append((path, table, sharding.sharding_type, sharding.compute_kernel, ranks, sizes))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
