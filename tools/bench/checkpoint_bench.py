"""Checkpoint save/load time and size for a DeepFM with 10M embedding rows, against plain ``torch.save``.

    python tools/bench/checkpoint_bench.py [--rows-per-table 2500000] [--tables 4] [--dim 16] [--ranks 2]

Each rank builds the real trainer (planner, DMP, fused row-wise Adagrad), then
times, best of ``--repeats``:

* ``save``: :meth:`Trainer.save_step` (DCP shards of model + both optimizers,
  RNG and data position, atomic rename, COMPLETE marker);
* ``load``: a fresh trainer's resume from that checkpoint (verification,
  compatibility checks, ``dcp.load`` with resharding machinery);
* baseline: ``torch.save`` / ``torch.load`` of the same rank's local tensors
  (model and optimizer state) into one file per rank, the floor of what any
  format costs on this disk.

DeepFM adds a 4-wide first-order table per feature, so the model holds
``tables x rows`` rows of ``dim`` plus as many rows of 4.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bigrec.data.synthetic import generate_criteo_like
from bigrec.testing import run_ranks


def _config(data_dir: str, out_dir: str, dim: int, tables: int, resume: str = "none"):
    from bigrec.config import config_from_dict

    return config_from_dict({
        "data": {"path": data_dir, "batch_size": 256, "eval_batch_size": 1024, "validate": False},
        "model": {"name": "deepfm", "features": [f"sparse_{i}" for i in range(tables)] + ["dense_0"],
                  "embedding_dim": dim, "hidden_units": [64, 32]},
        "trainer": {"epochs": 1, "output_dir": out_dir, "progress_bar": False, "resume": resume,
                    "max_steps_per_epoch": 2},
        "sharding": {"sharding_types": ["table_wise"], "print_plan": False},
    })


def _local_tensors(trainer) -> dict:
    """This rank's shards of the model and optimizer state as plain tensors (the baseline's payload)."""
    import torch
    from torch.distributed.checkpoint._nested_dict import flatten_state_dict

    flat, _ = flatten_state_dict({"model": trainer.model.state_dict(), "optim": trainer.optimizer.state_dict()})
    out = {}
    for key, value in flat.items():
        if hasattr(value, "local_shards"):
            for i, shard in enumerate(value.local_shards()):
                out[f"{key}#{i}"] = shard.tensor
        elif isinstance(value, torch.Tensor):
            out[key] = value
    return out


def bench_rank(data_dir: str, out_dir: str, dim: int, tables: int, repeats: int) -> dict:
    import torch
    import torch.distributed as dist

    from bigrec.train.trainer import Trainer, prepare

    config = _config(data_dir, out_dir, dim, tables)
    trainer = Trainer(config, prepare(config))
    trainer.train_epoch(0)  # optimizer state exists
    rank = dist.get_rank()
    times = {"save": [], "load": [], "torch_save": [], "torch_load": []}
    path = None
    for _ in range(repeats):
        dist.barrier()
        started = time.perf_counter()
        path = trainer.save_step()
        times["save"].append(time.perf_counter() - started)
        payload = _local_tensors(trainer)
        baseline = Path(out_dir) / f"baseline-{rank}.pt"
        dist.barrier()
        started = time.perf_counter()
        torch.save(payload, baseline)
        times["torch_save"].append(time.perf_counter() - started)
        dist.barrier()
        started = time.perf_counter()
        torch.load(baseline)
        times["torch_load"].append(time.perf_counter() - started)
    resumed = _config(data_dir, out_dir + "-resume", dim, tables, resume=str(path))
    prepared = prepare(resumed)
    for _ in range(repeats):
        fresh = Trainer(resumed, prepared, inference=True)  # same model and plan, nothing loaded yet
        dist.barrier()
        started = time.perf_counter()
        fresh.resume()
        times["load"].append(time.perf_counter() - started)
        del fresh
    size = sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
    baseline_size = sum((Path(out_dir) / f"baseline-{r}.pt").stat().st_size for r in range(dist.get_world_size()))
    return {"best": {k: min(v) for k, v in times.items()}, "size": size, "baseline_size": baseline_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-per-table", type=int, default=2_500_000)
    parser.add_argument("--tables", type=int, default=4)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        generate_criteo_like(data, rows=4096, cardinalities=[args.rows_per_table] * args.tables, num_dense=1,
                             embedding_dim=args.dim)
        results = run_ranks(bench_rank, args.ranks, str(data), str(Path(tmp) / "run"), args.dim, args.tables,
                            args.repeats)
    # the slowest rank bounds a collective save/load
    best = {k: max(r["best"][k] for r in results) for k in results[0]["best"]}
    rows = args.rows_per_table * args.tables
    print(f"{rows:,} embedding rows of dim {args.dim} (+ {rows:,} first-order rows of dim 4), "
          f"{args.ranks} ranks, table-wise, exact_row_wise_adagrad + Adam")
    print(f"checkpoint size {results[0]['size'] / 2**20:,.0f} MiB; torch.save files "
          f"{results[0]['baseline_size'] / 2**20:,.0f} MiB")
    print("| operation | bigrec (DCP) s | torch.save/load s | ratio |")
    print("|---|---:|---:|---:|")
    for op, base in (("save", "torch_save"), ("load", "torch_load")):
        print(f"| {op} | {best[op]:.2f} | {best[base]:.2f} | {best[op] / best[base]:.2f} |")


if __name__ == "__main__":
    main()
