"""bigrec's training speed against a plain-PyTorch DeepFM, where a step goes, and 2 ranks vs 1.

    python tools/bench/speed_bench.py ml100k    [--batch-size 256] [--steps 200]
    python tools/bench/speed_bench.py synthetic [--batch-size 2048] [--steps 60] [--rows 300000]
    python tools/bench/speed_bench.py scaling   [--data ml100k|synthetic] [--batch-size 512]
    python tools/bench/speed_bench.py profile   [--data ml100k|synthetic] [--batch-size 256] [--top 15]

``ml100k`` / ``synthetic``: one rank, one thread, the real trainer (planner, DMP, the
step loop the trainer uses on this device) and :mod:`plain_deepfm` read the same
``Batch`` stream in one process; timed windows alternate (bigrec, plain) three times
and the best of each counts, per wall second and per CPU second of the process (on a
loaded machine the CPU-second rates hold still where wall-second rates swing).
``scaling``: 1-rank and 2-rank trainer runs alternate, three of each (wall seconds:
an idle machine is needed; the CPU milliseconds per 1,000 samples, summed over the
ranks, say what a second rank adds in work, which the load moves much less).
``profile``: torch.profiler over training steps, self CPU time per category.
MovieLens-100k is read from ``data/ml-100k/ranking`` (``make data``; the environment
variable ``BIGREC_BENCH_ML100K`` points elsewhere); the synthetic set (26 tables,
>= 10M rows) is generated into a temporary directory. ``BIGREC_BENCH_SET`` holds
config overrides for the trainer (e.g. ``"trainer.pipeline=true"``).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bigrec.data.synthetic import default_cardinalities, generate_criteo_like  # noqa: E402
from bigrec.testing import run_ranks  # noqa: E402

ML100K = os.environ.get("BIGREC_BENCH_ML100K", "data/ml-100k/ranking")
ML100K_PARAMS = {"features": ["user_id", "item_id", "gender", "age", "occupation", "zip3", "genres", "year"],
                 "hidden_units": [256, 128], "embedding_dim": 16}
SYNTHETIC_PARAMS = {"hidden_units": [512, 256, 64], "embedding_dim": 16}
SYNTHETIC_MAX_ROWS = 4_500_000  # 26 tables spread geometrically from 10 rows to this: 11.1M rows in all
WARMUP = 10
OVERRIDES: list[str] = [o for o in os.environ.get("BIGREC_BENCH_SET", "").split() if o]  # e.g. trainer.pipeline=false


def trainer_config(data_dir: str, out_dir: str, batch_size: int, params: dict):
    from bigrec.config import apply_overrides, config_from_dict

    return config_from_dict(apply_overrides({
        "data": {"path": data_dir, "batch_size": batch_size, "validate": False, "valid": None, "test": None},
        "model": {"name": "deepfm", **params},
        "trainer": {"epochs": 1, "output_dir": out_dir, "progress_bar": False},
        "sharding": {"print_plan": False},
    }, OVERRIDES))


def endless(dataset) -> Iterator:
    """The split's batches, epoch after epoch (as the trainer reads them)."""
    from bigrec.data.stream import make_loader

    for epoch in itertools.count():
        dataset.set_position(epoch, 0)
        yield from make_loader(dataset)


def timed(run_steps, steps: int) -> tuple[float, float]:
    """Wall and CPU seconds (this process, all its threads) of ``steps`` steps; with one thread per
    process, CPU seconds hardly move with the machine's load, wall seconds do."""
    wall, cpu = time.perf_counter(), time.process_time()
    run_steps(steps)
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(data_dir: str, out_dir: str, batch_size: int, steps: int, params: dict, repeats: int,
            baseline: bool, naive_baseline: bool = False) -> dict:
    """On each rank: alternate timed windows of the trainer and (with ``baseline``) the plain model
    (and, with ``naive_baseline``, the plain model with dense table gradients and one Adam)."""
    import torch

    from bigrec.train.trainer import Trainer, prepare
    from plain_deepfm import PlainDeepFM, PlainTrainer

    config = trainer_config(data_dir, out_dir, batch_size, params)
    trainer = Trainer(config, prepare(config))
    trainer.model.train()
    world = trainer.env.world_size
    bigrec_batches = endless(trainer.splits["train"])

    def bigrec_steps(n: int) -> None:
        for _ in trainer._steps(bigrec_batches, n):  # what Trainer.train_epoch does per step, less logging
            trainer.schedule.step()
            trainer.preemption.poll()

    runs = {"bigrec": bigrec_steps}
    if baseline:
        variants = {"plain": True, **({"plain_dense": False} if naive_baseline else {})}
        for name, sparse in variants.items():
            torch.manual_seed(0)
            runs[name] = _plain_steps(PlainTrainer(PlainDeepFM(trainer.schema, params.get("features"),
                                                               params["hidden_units"], params["embedding_dim"],
                                                               sparse=sparse)),
                                      endless(prepare(config).splits["train"]))
    for run in runs.values():
        run(WARMUP)
    rates = {name: [] for name in runs}
    cpu_rates = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            wall, cpu = timed(run, steps)
            rates[name].append(steps * batch_size * world / wall)
            cpu_rates[name].append(steps * batch_size * world / cpu)
    trainer.close()
    plan = {t: (s.sharding_type, s.compute_kernel) for m in trainer.plan.plan.values() for t, s in m.items()}
    return {"rates": rates, "cpu_rates": cpu_rates, "plan": plan}


def _plain_steps(plain, batches: Iterator):
    return lambda n: [plain.step(b) for b in itertools.islice(batches, n)]


def synthetic_data(directory: str, rows: int) -> str:
    generate_criteo_like(directory, rows=rows, valid_fraction=0.0, test_fraction=0.0,
                         max_cardinality=SYNTHETIC_MAX_ROWS)
    return directory


def data_set(name: str, tmp: str, rows: int) -> tuple[str, dict]:
    if name == "ml100k":
        return ML100K, ML100K_PARAMS
    return synthetic_data(str(Path(tmp) / "synthetic"), rows), SYNTHETIC_PARAMS


def compare(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir, params = data_set(args.command, tmp, args.rows)
        [result] = run_ranks(measure, 1, data_dir, str(Path(tmp) / "run"), args.batch_size, args.steps, params,
                             args.repeats, True, args.naive_baseline)
    print(f"{args.command}: {args.batch_size} rows per step, 1 rank x 1 thread, {args.steps} steps per window, "
          f"best of {args.repeats} alternating; load average {os.getloadavg()[0]:.1f}")
    print("| trainer | samples/s per wall second (best) | all windows | ratio to plain "
          "| samples/s per CPU second (best) | ratio to plain |\n|---|---:|---|---:|---:|---:|")
    wall, cpu = result["rates"], result["cpu_rates"]
    labels = {"plain": "plain PyTorch (sparse Adagrad tables, fused Adam dense)",
              "plain_dense": "plain PyTorch, naive (dense gradients, one Adam over all)", "bigrec": "bigrec"}
    for name in [n for n in labels if n in wall]:
        label = labels[name]
        print(f"| {label} | {max(wall[name]):,.0f} | {', '.join(f'{r:,.0f}' for r in wall[name])} "
              f"| {max(wall[name]) / max(wall['plain']):.2f} | {max(cpu[name]):,.0f} "
              f"| {max(cpu[name]) / max(cpu['plain']):.2f} |")
    if "plain_dense" in wall:
        print(f"bigrec / naive plain PyTorch: {max(wall['bigrec']) / max(wall['plain_dense']):.2f} per wall second, "
              f"{max(cpu['bigrec']) / max(cpu['plain_dense']):.2f} per CPU second")
    print("plan:", result["plan"])


def scaling(args: argparse.Namespace) -> None:
    best = {1: 0.0, 2: 0.0, "plain": 0.0}
    cpu_ms = {1: float("inf"), 2: float("inf"), "plain": float("inf")}  # CPU ms per 1,000 samples, all ranks
    with tempfile.TemporaryDirectory() as tmp:
        data_dir, params = data_set(args.data, tmp, args.rows)
        for repeat in range(args.repeats):
            for world in (1, 2):
                results = run_ranks(measure, world, data_dir, str(Path(tmp) / f"run{world}-{repeat}"),
                                    args.batch_size, args.steps, params, 1, world == 1)
                best[world] = max(best[world], results[0]["rates"]["bigrec"][0])
                cpu_ms[world] = min(cpu_ms[world], sum(1e6 / r["cpu_rates"]["bigrec"][0] for r in results))
                if world == 1:
                    best["plain"] = max(best["plain"], results[0]["rates"]["plain"][0])
                    cpu_ms["plain"] = min(cpu_ms["plain"], 1e6 / results[0]["cpu_rates"]["plain"][0])
    print(f"{args.data}: {args.batch_size} rows per rank per step, one thread per rank, {args.steps} steps, "
          f"best of {args.repeats} alternating runs; load average {os.getloadavg()[0]:.1f}")
    print("| run | samples/s (best) | ratio to 1 rank | ratio to plain | CPU ms per 1,000 samples (all ranks) |\n"
          "|---|---:|---:|---:|---:|")
    for name, key in (("plain PyTorch, 1 thread", "plain"), ("bigrec, 1 rank", 1), ("bigrec, 2 ranks", 2)):
        print(f"| {name} | {best[key]:,.0f} | {best[key] / best[1]:.2f} | {best[key] / best['plain']:.2f} "
              f"| {cpu_ms[key]:.1f} |")


def profile(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir, params = data_set(args.data, tmp, args.rows)
        [table] = run_ranks(profile_rank, 1, data_dir, str(Path(tmp) / "run"), args.batch_size, args.steps, params,
                            args.top)
    print(f"{args.data}: one bigrec step of {args.batch_size} rows (1 rank x 1 thread), mean over {args.steps} "
          f"profiled steps; load average {os.getloadavg()[0]:.1f}")
    print(table)


def profile_rank(data_dir: str, out_dir: str, batch_size: int, steps: int, params: dict, top: int) -> str:
    from profile_step import profile_trainer
    from bigrec.train.trainer import Trainer, prepare

    config = trainer_config(data_dir, out_dir, batch_size, params)
    trainer = Trainer(config, prepare(config))
    try:
        return profile_trainer(trainer, steps, WARMUP, top)
    finally:
        trainer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["ml100k", "synthetic", "scaling", "profile"])
    parser.add_argument("--data", choices=["ml100k", "synthetic"], default="ml100k")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=300_000, help="rows of the synthetic data set")
    parser.add_argument("--top", type=int, default=15, help="profile: events listed by self CPU time")
    parser.add_argument("--naive-baseline", action="store_true",
                        help="ml100k/synthetic: also time plain PyTorch with dense table gradients and one Adam")
    args = parser.parse_args()
    big = args.command == "synthetic" or (args.command != "ml100k" and args.data == "synthetic")
    args.batch_size = args.batch_size or (2048 if big else 256)
    args.steps = args.steps or (40 if big else 200)
    if big:
        print(f"synthetic data: 26 tables, {sum(default_cardinalities(SYNTHETIC_MAX_ROWS)):,} rows in all")
    {"ml100k": compare, "synthetic": compare, "scaling": scaling, "profile": profile}[args.command](args)


if __name__ == "__main__":
    main()
