"""The planner's answer, readable: per-table placement, per-rank memory and time, imbalance.

All numbers are TorchRec's estimates (``Shard.storage``, ``Shard.perf`` and the
storage reservation for dense parameters and input buffers), summed per rank
the way ``torchrec.distributed.planner.stats.EmbeddingStats`` sums them.
Sizes are GiB, times milliseconds per training iteration.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torchrec.distributed.planner.stats import (
    _calculate_critical_path,
    _compute_mem_usage_and_perf,
    _compute_storage,
)

from bigrec.plan.planner import DryRun
from bigrec.plan.topology import GIB


def _gib(value: float) -> float:
    return round(value / GIB, 4)


def build_report(run: DryRun) -> dict[str, Any]:
    """A JSON-able report: ``summary``, ``tables`` (one entry per table) and ``ranks``."""
    topology, spec = run.topology, run.spec
    reserved_share, dense, kjt = _compute_storage(run.storage_reservation, topology)
    _, used_hbm, used_ddr, perf = _compute_mem_usage_and_perf(topology, run.best_plan, dense, kjt)
    critical = _calculate_critical_path(run.best_plan)
    shards_per_rank = [0] * topology.world_size
    tables = []
    for option in sorted(run.best_plan, key=lambda o: o.module[0]):  # stable: the model's table order
        ranks = [shard.rank for shard in option.shards]
        for rank in ranks:
            shards_per_rank[rank] += 1
        storage, shard_perf = option.total_storage, [shard.perf for shard in option.shards]
        load_factor = option.cache_params.load_factor if option.cache_params else None
        tables.append({
            "module": option.module[0], "table": option.name,
            "rows": int(option.tensor.shape[0]), "dim": int(option.tensor.shape[1]),
            "sharding_type": option.sharding_type, "compute_kernel": option.compute_kernel,
            "cache_load_factor": load_factor if option.compute_kernel == "fused_uvm_caching" else None,
            "ranks": ranks, "shards": [list(shard.size) for shard in option.shards],
            "hbm_gb": _gib(storage.hbm), "ddr_gb": _gib(storage.ddr),
            "time_ms": round(sum(p.total for p in shard_perf), 4),
        })
    ranks_out = []
    for rank in range(topology.world_size):
        capacity = topology.devices[rank].storage
        p = perf[rank]
        ranks_out.append({
            "rank": rank, "host": rank // spec.devices_per_host, "shards": shards_per_rank[rank],
            "hbm_used_gb": _gib(used_hbm[rank]), "hbm_free_gb": _gib(capacity.hbm - used_hbm[rank]),
            "ddr_used_gb": _gib(used_ddr[rank]), "ddr_free_gb": _gib(capacity.ddr - used_ddr[rank]),
            "fwd_compute_ms": round(p.fwd_compute, 4), "fwd_comms_ms": round(p.fwd_comms, 4),
            "bwd_compute_ms": round(p.bwd_compute, 4), "bwd_comms_ms": round(p.bwd_comms, 4),
            "total_ms": round(p.total, 4),
        })
    summary = {
        "topology": spec.to_dict(), "world_size": topology.world_size, "compute_device": spec.device,
        "sparse_optimizer": run.optimizer, "batch_size_per_rank": spec.batch_size_per_rank,
        "num_tables": len(tables),
        "reserved_hbm_share": reserved_share, "dense_reserved_gb": _gib(dense.hbm if spec.device == "cuda" else dense.ddr),
        "input_reserved_gb": _gib(kjt.hbm if spec.device == "cuda" else kjt.ddr),
        "hbm_used_gb": {"max": max(r["hbm_used_gb"] for r in ranks_out), "total": round(sum(r["hbm_used_gb"] for r in ranks_out), 4)},
        "ddr_used_gb": {"max": max(r["ddr_used_gb"] for r in ranks_out), "total": round(sum(r["ddr_used_gb"] for r in ranks_out), 4)},
        "imbalance": {  # max over mean: 1.0 is perfectly balanced
            "time": _max_over_mean([r["total_ms"] for r in ranks_out]),
            "hbm": _max_over_mean([r["hbm_used_gb"] for r in ranks_out]),
            "ddr": _max_over_mean([r["ddr_used_gb"] for r in ranks_out]),
        },
        "max_rank_time_ms": max(r["total_ms"] for r in ranks_out),
        "critical_path_ms": {"comms": round(critical.comms_estimate, 4), "compute": round(critical.comp_estimate, 4)},
        "planner": {"seconds": round(run.seconds, 2), "proposals": run.num_proposals, "plans": run.num_plans,
                    **run.timings},
    }
    return {"summary": summary, "tables": tables, "ranks": ranks_out}


def _max_over_mean(values: list[float]) -> float:
    mean = sum(values) / len(values) if values else 0.0
    return round(max(values) / mean, 4) if mean > 0 else 1.0


def _format_rows(rows: list[tuple]) -> list[str]:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(v).rjust(w) if isinstance(v, (int, float)) else str(v).ljust(w)
                       for v, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _ranks_text(ranks: list[int]) -> str:
    """``0,1,2,3,7`` -> ``0-3,7``."""
    if not ranks:
        return "all"
    runs, start = [], ranks[0]
    for prev, cur in zip(ranks, ranks[1:] + [None]):
        if cur is None or cur != prev + 1:
            runs.append(f"{start}-{prev}" if prev != start else f"{start}")
            start = cur
    return ",".join(runs)


def _shards_text(shards: list[list[int]]) -> str:
    sizes = [f"{r}x{c}" for r, c in shards]
    if len(set(sizes)) == 1 and len(sizes) > 1:
        return f"{len(sizes)} x ({sizes[0]})"
    return ", ".join(sizes)


def format_report(report: dict[str, Any]) -> str:
    """The report as text: summary, one line per table, one line per rank."""
    s = report["summary"]
    topo = s["topology"]
    device_mem = "HBM" if s["compute_device"] == "cuda" else "host memory"
    lines = [
        f"topology {topo['name']}: {topo['hosts']} host(s) x {topo['devices_per_host']} {topo['device_kind']} "
        f"({topo['device']}), HBM {topo['hbm_gb']:g} GiB, host memory {topo['ddr_gb']:g} GiB per rank"
        + (f", UVM caching {topo['uvm_caching']:g}" if topo.get("uvm_caching") else ""),
        f"batch {s['batch_size_per_rank']} per rank, sparse optimizer {s['sparse_optimizer']}, {s['num_tables']} tables; "
        f"reserved per rank: {s['reserved_hbm_share']:.0%} of HBM, dense {s['dense_reserved_gb']:.3f} GiB, "
        f"inputs {s['input_reserved_gb']:.3f} GiB",
        "",
    ]
    table_rows = [("module", "table", "rows x dim", "sharding", "kernel", "ranks", "shards (rows x cols)",
                   "HBM GiB", "host GiB", "time ms")]
    for t in report["tables"]:
        kernel = t["compute_kernel"] + (f"({t['cache_load_factor']:g})" if t["cache_load_factor"] else "")
        table_rows.append((t["module"], t["table"], f"{t['rows']:,}x{t['dim']}", t["sharding_type"], kernel,
                           _ranks_text(t["ranks"]), _shards_text(t["shards"]), f"{t['hbm_gb']:.3f}",
                           f"{t['ddr_gb']:.3f}", f"{t['time_ms']:.3f}"))
    lines += _format_rows(table_rows) + [""]
    rank_rows = [("rank", "host", "shards", "HBM used", "HBM free", "host used", "host free",
                  "fwd comp", "fwd comm", "bwd comp", "bwd comm", "total ms")]
    for r in report["ranks"]:
        rank_rows.append((r["rank"], r["host"], r["shards"], f"{r['hbm_used_gb']:.3f}", f"{r['hbm_free_gb']:.3f}",
                          f"{r['ddr_used_gb']:.3f}", f"{r['ddr_free_gb']:.3f}", f"{r['fwd_compute_ms']:.3f}",
                          f"{r['fwd_comms_ms']:.3f}", f"{r['bwd_compute_ms']:.3f}", f"{r['bwd_comms_ms']:.3f}",
                          f"{r['total_ms']:.3f}"))
    lines += _format_rows(rank_rows) + [""]
    imb = s["imbalance"]
    mem_key = "hbm" if s["compute_device"] == "cuda" else "ddr"
    lines.append(f"per rank: {device_mem} max {s[mem_key + '_used_gb']['max']:.3f} GiB; "
                 f"estimated time max {s['max_rank_time_ms']:.3f} ms "
                 f"(critical path: compute {s['critical_path_ms']['compute']:.3f} ms, "
                 f"comms {s['critical_path_ms']['comms']:.3f} ms)")
    lines.append(f"imbalance (max / mean): time {imb['time']:.3f}, HBM {imb['hbm']:.3f}, host {imb['ddr']:.3f}")
    lines.append(f"planned in {s['planner']['seconds']:.1f} s ({s['planner']['proposals']} proposals)")
    return "\n".join(lines)


def write_json(report: dict[str, Any], path: str | Path) -> None:
    Path(path).write_text(json.dumps(report, indent=2) + "\n")


def write_chart(report: dict[str, Any], path: str | Path) -> None:
    """A PNG: per-rank memory used vs capacity (top) and estimated time per iteration (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    ranks = report["ranks"]
    s = report["summary"]
    x = [r["rank"] for r in ranks]
    cuda = s["compute_device"] == "cuda"
    width = max(8.0, min(24.0, 0.12 * len(ranks) + 6))
    fig, (mem_ax, time_ax) = plt.subplots(2, 1, figsize=(width, 7.5), sharex=True)
    topo = s["topology"]
    if cuda:
        mem_ax.bar(x, [r["hbm_used_gb"] for r in ranks], color="tab:blue", label="HBM used")
        mem_ax.axhline(topo["hbm_gb"], color="tab:blue", linestyle="--", linewidth=1, label="HBM capacity")
    host = [r["ddr_used_gb"] for r in ranks]
    if any(host) or not cuda:
        mem_ax.bar(x, host, bottom=[r["hbm_used_gb"] for r in ranks] if cuda else None, color="tab:orange",
                   label="host memory used")
        if not cuda:
            mem_ax.axhline(topo["ddr_gb"], color="tab:orange", linestyle="--", linewidth=1, label="host capacity")
    mem_ax.set_ylabel("GiB per rank")
    mem_ax.legend(loc="upper right", fontsize=8)
    mem_ax.set_title(f"{topo['name']}: {s['num_tables']} tables on {s['world_size']} ranks, "
                     f"optimizer {s['sparse_optimizer']}\nimbalance (max/mean): memory "
                     f"{s['imbalance']['hbm' if cuda else 'ddr']:.2f}, time {s['imbalance']['time']:.2f}", fontsize=10)
    bottom = [0.0] * len(ranks)
    for key, label in (("fwd_compute_ms", "fwd compute"), ("fwd_comms_ms", "fwd comms"),
                       ("bwd_compute_ms", "bwd compute"), ("bwd_comms_ms", "bwd comms")):
        values = [r[key] for r in ranks]
        time_ax.bar(x, values, bottom=bottom, label=label)
        bottom = [b + v for b, v in zip(bottom, values)]
    time_ax.set_ylabel("estimated ms / iteration")
    time_ax.set_xlabel("rank")
    time_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    time_ax.legend(loc="upper right", fontsize=8, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
