"""Helpers for tests and benchmarks: N local gloo ranks, tiny synthetic data sets, parity runs.

``run_ranks(fn, world_size, *args)`` starts ``world_size`` processes, sets up the
torchrun-style environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) and
one OpenMP thread per rank, calls ``fn(*args)`` in each and returns the list of
return values by rank. An exception in any rank is re-raised here.

:data:`SYNTHETIC_SETS` maps the name of each synthetic data set that a
``configs/*/*_synthetic.yaml`` reads (the last component of its ``data.path``) to a
function writing a *tiny* copy of it (a few thousand rows, same columns and schema
shape), which the model conformance suite trains every model on.
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


def _tiny_criteo(output_dir: Path, seed: int) -> None:
    from bigrec.data.synthetic import generate_criteo_like

    generate_criteo_like(output_dir, rows=4000, max_cardinality=500, seed=seed, row_group_size=1024)


def _tiny_behavior(output_dir: Path, seed: int) -> None:
    from bigrec.data.synthetic_behavior import generate_behavior

    generate_behavior(output_dir, rows=4000, num_items=300, num_categories=10, num_users=100, max_len=10, seed=seed)


def _tiny_multitask(output_dir: Path, seed: int) -> None:
    from bigrec.data.synthetic_multitask import generate_multitask

    generate_multitask(output_dir, rows=4000, correlation=0.0, seed=seed)


def _tiny_sequences(output_dir: Path, seed: int) -> None:
    from bigrec.data.synthetic_sequences import generate_sequences

    # 800 users: the parity run of one-pass models needs 768 rows of train_sequences.parquet (one per user)
    generate_sequences(output_dir, num_users=800, num_items=200, num_clusters=10, min_length=5, max_length=15,
                       history_len=20, seed=seed)


def _tiny_interests(output_dir: Path, seed: int) -> None:
    from bigrec.data.synthetic_interests import generate_interests

    generate_interests(output_dir, num_users=300, num_items=200, num_clusters=20, interests=3, min_length=5,
                       max_length=15, history_len=20, seed=seed)


def _tiny_order(output_dir: Path, seed: int) -> None:
    from bigrec.data.synthetic_order import generate_order

    generate_order(output_dir, rows=4000, num_items=200, num_categories=6, num_users=50, max_len=10, overflow=4,
                   seed=seed)


def _tiny_selection_bias(output_dir: Path, seed: int) -> None:
    from bigrec.data.synthetic_selection_bias import generate_selection_bias

    generate_selection_bias(output_dir, rows=4000, num_users=200, num_items=200, embedding_dim=8, seed=seed,
                            row_group_size=1024)


def _tiny_fields(signal: str) -> Callable[[Path, int], None]:
    def write(output_dir: Path, seed: int) -> None:
        from bigrec.data.synthetic_fields import generate_fields

        generate_fields(output_dir, rows=4000, signal=signal, seed=seed, row_group_size=1024)

    return write


SYNTHETIC_SETS: dict[str, Callable[[Path, int], None]] = {
    "criteo": _tiny_criteo,
    "behavior": _tiny_behavior,
    "multitask": _tiny_multitask,
    "sequences": _tiny_sequences,
    "interests": _tiny_interests,
    "order": _tiny_order,
    "selection_bias": _tiny_selection_bias,
    **{f"fields_{signal}": _tiny_fields(signal) for signal in ("cross", "pair", "memorise")},
}


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


def train_from_seed(config, steps: int, seed: int = 1234) -> dict:
    """One rank's part of a sharded-vs-unsharded comparison (call it inside ``run_ranks``).

    Builds the real :class:`~bigrec.train.trainer.Trainer` for ``config``, copies in the
    weights of an unsharded model built with ``seed`` (identical on every rank and
    world size), trains ``steps`` steps and returns the global mean loss of each
    step, the validation metrics and each table's ``(sharding type, ranks)``.
    """
    import torch.distributed as dist

    from bigrec.data.stream import make_loader
    from bigrec.models import build_model
    from bigrec.train.state import load_full_state
    from bigrec.train.trainer import Trainer, prepare

    trainer = Trainer(config, prepare(config))
    torch.manual_seed(seed)
    reference = trainer.task.wrap(build_model(config.model.name, trainer.schema, config.model.params))
    load_full_state(trainer.model, reference.state_dict())
    trainer.model.train()
    losses = []
    for output in trainer._steps(make_loader(trainer.splits["train"]), steps):
        loss = output[0].detach().clone()
        dist.all_reduce(loss)
        losses.append(loss.item() / dist.get_world_size())
    placement = {table: (entry.sharding_type, sorted(entry.ranks or []))
                 for module_plan in trainer.plan.plan.values() for table, entry in module_plan.items()}
    return {"losses": losses, "valid": trainer.evaluate("valid"), "placement": placement}

