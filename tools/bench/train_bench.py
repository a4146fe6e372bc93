"""DeepFM training throughput on Criteo-like data: 1 rank vs 2 gloo ranks, peak RSS per rank.

    python tools/bench/train_bench.py [--rows 400000] [--steps 150] [--batch-size 2048]

Both runs use the real trainer (planner, DMP, TrainPipelineSparseDist) on the
same file in one script, so the 2-rank/1-rank ratio is meaningful on a noisy
machine. Global batch = batch-size x ranks; samples/s counts all ranks.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from bigrec.data.synthetic import generate_criteo_like
from bigrec.testing import run_ranks


def train_steps(data_dir: str, out_dir: str, batch_size: int, steps: int, model_params: dict) -> dict:
    from bigrec.config import config_from_dict
    from bigrec.data.stream import make_loader
    from bigrec.train.trainer import Trainer, prepare

    config = config_from_dict({
        "data": {"path": data_dir, "batch_size": batch_size, "validate": False, "valid": None, "test": None},
        "model": {"name": "deepfm", **model_params},
        "trainer": {"epochs": 1, "output_dir": out_dir, "progress_bar": False},
        "sharding": {"print_plan": False},
    })
    trainer = Trainer(config, prepare(config))
    trainer.model.train()
    warmup = 10
    started = None
    loader = make_loader(trainer.splits["train"])
    for step, _ in enumerate(trainer._steps(loader, steps + warmup)):
        if step == warmup - 1:
            started = time.perf_counter()
    seconds = time.perf_counter() - started
    return {"samples_per_s": steps * batch_size * trainer.env.world_size / seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=2048)
    args = parser.parse_args()
    params = {"hidden_units": [512, 256, 64], "embedding_dim": 16}
    with tempfile.TemporaryDirectory() as tmp:
        generate_criteo_like(tmp, rows=args.rows, valid_fraction=0.0, test_fraction=0.0)
        rows = {}
        for world_size, threads in ((1, 1), (1, 2), (2, 1)):
            results = run_ranks(train_steps, world_size, tmp, str(Path(tmp) / f"run{world_size}"),
                                args.batch_size, args.steps, params, threads=threads)
            rows[(world_size, threads)] = (results[0]["samples_per_s"], [r["peak_rss_mb"] for r in results])
    base = rows[(1, 1)][0]
    print(f"DeepFM {params}, Criteo-like data (13 dense, 26 sparse, tables up to 100k rows), "
          f"{args.batch_size} rows per rank per step, {args.steps} timed steps")
    print("| ranks | threads per rank | samples/s | ratio to 1 rank x 1 thread | peak RSS per rank (MB) |")
    print("|---:|---:|---:|---:|---|")
    for (world_size, threads), (rate, rss) in rows.items():
        print(f"| {world_size} | {threads} | {rate:,.0f} | {rate / base:.2f} | "
              f"{', '.join(f'{m:,.0f}' for m in rss)} |")


if __name__ == "__main__":
    main()
