"""Run a function on N local gloo ranks (tests and benchmarks).

``run_ranks(fn, world_size, *args)`` starts ``world_size`` processes, sets up the
torchrun-style environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) and
one OpenMP thread per rank, calls ``fn(*args)`` in each and returns the list of
return values by rank. An exception in any rank is re-raised here.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable

import torch
import torch.multiprocessing as mp

from bigrec.train.distributed import free_port


def _entry(local_rank: int, fn: Callable, world_size: int, port: int, out_dir: str, args: tuple,
           threads: int) -> None:
    os.environ.update({"RANK": str(local_rank), "LOCAL_RANK": str(local_rank), "WORLD_SIZE": str(world_size),
                       "LOCAL_WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(port), "OMP_NUM_THREADS": str(threads)})
    torch.set_num_threads(threads)
    try:
        result: Any = ("ok", fn(*args))
    except BaseException as exc:  # noqa: BLE001 - shipped to the parent
        result = ("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
    finally:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    Path(out_dir, f"{local_rank}.pkl").write_bytes(pickle.dumps(result))


def run_ranks(fn: Callable, world_size: int, *args: Any, threads: int = 1) -> list[Any]:
    """Call ``fn(*args)`` on ``world_size`` spawned ranks; return results by rank."""
    with tempfile.TemporaryDirectory() as out_dir:
        mp.start_processes(_entry, args=(fn, world_size, free_port(), out_dir, args, threads),
                           nprocs=world_size, join=True, start_method="spawn")
        results = [pickle.loads(Path(out_dir, f"{r}.pkl").read_bytes()) for r in range(world_size)]
    errors = [f"rank {r}: {value}" for r, (status, value) in enumerate(results) if status == "error"]
    if errors:
        raise RuntimeError("\n".join(errors))
    return [value for _, value in results]
