"""Recall benchmarks: MovieLens-100k quality table and training / full-ranking throughput.

    python tools/bench/models_recall.py quality      # -> docs/models.md, section "Recall"
    python tools/bench/models_recall.py throughput   # -> docs/benchmarks.md, section "Recall"

``quality`` trains every model of :data:`QUALITY` with its ``configs/recall/<model>_ml100k.yaml``
and ``<model>_synthetic.yaml`` (one rank, 3 seeds) and scores the most-popular baseline
on the same leave-last-out protocol (Recall/NDCG/MRR@10 on the test split, seen items
excluded); mean and standard deviation over seeds.
``throughput`` measures training samples/s at 1 and 2 gloo ranks on synthetic
sequences, and full-ranking evaluation users/s of SASRec with 1,682 and
1,000,000 items (sampled softmax in training, sharded scoring in evaluation);
ratios are against the 1-rank / 1,682-item runs of the same script.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")


def replace_section(path: Path, heading: str, body: str) -> None:
    """Replace (or append) the ``## heading`` section of a Markdown file."""
    text = path.read_text() if path.exists() else ""
    section = f"## {heading}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(section + "\n", text)
    else:
        text = (text.rstrip() + "\n\n" if text.strip() else "") + section
    path.write_text(text.rstrip() + "\n")


QUALITY = {  # data set -> (data directory, models trained with configs/recall/<model>_<suffix>.yaml)
    "MovieLens-100k": ("data/ml-100k/recall", "ml100k", ("sasrec", "gru4rec", "narm", "dssm")),
    "synthetic Markov sequences": ("data/synthetic/sequences", "synthetic", ("sasrec", "gru4rec", "narm", "dssm")),
}


def _ensure_data(data: Path) -> None:
    from bigrec.data.movielens import prepare_movielens
    from bigrec.data.synthetic_sequences import generate_sequences

    if (data / "schema.json").exists():
        return
    if data.parent.name == "ml-100k":
        prepare_movielens(ROOT / "data/raw/ml-100k", data.parent)
    else:
        generate_sequences(data)  # the defaults of `bigrec data synthetic-sequences`


def _mean_spread(values: list[float]) -> str:
    import statistics

    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.4f}"


RUNS = ROOT / "runs/bench/models_recall"  # one JSON per (data set, model, seed) run
KEYS = ("recall@10", "ndcg@10", "mrr@10")


def run_path(suffix: str, model: str, seed: int) -> Path:
    return RUNS / f"{suffix}_{model}_{seed}.json"


def train_runs(seeds: list[int], epochs: Optional[int], models: Optional[list[str]],
               data_sets: Optional[list[str]]) -> None:
    """Train each selected (data set, model, seed) whose result file is missing (one rank); store the test metrics.

    Runs are independent, so several processes may share the work (``--models``, ``--data``, ``--seeds``).
    """
    from bigrec.config import load_config
    from bigrec.train.distributed import destroy_process_group
    from bigrec.train.trainer import train

    RUNS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as out:
        for path, suffix, names in QUALITY.values():
            if data_sets and suffix not in data_sets:
                continue
            data = ROOT / path
            _ensure_data(data)
            for name in names:
                for seed in seeds:
                    if (models and name not in models) or run_path(suffix, name, seed).exists():
                        continue
                    overrides = [f"trainer.output_dir={out}/{suffix}/{name}{seed}", f"trainer.seed={seed}",
                                 "trainer.progress_bar=false", "sharding.print_plan=false", f"data.path={data}"]
                    config = load_config(ROOT / f"configs/recall/{name}_{suffix}.yaml",
                                         overrides + ([f"trainer.epochs={epochs}"] if epochs else []))
                    started = time.perf_counter()
                    result = train(config)
                    run = {"test": result["test"], "best_epoch": result["best_epoch"],
                           "train_s": time.perf_counter() - started}
                    run_path(suffix, name, seed).write_text(json.dumps(run))
                    print(suffix, name, seed, {k: round(result["test"][k], 4) for k in KEYS}, flush=True)
        destroy_process_group()


def quality_table() -> str:
    """The recall table from every stored run, and most-popular, per data set."""
    from bigrec.features import Schema
    from bigrec.tasks.retrieval.baselines import most_popular_metrics

    lines = ["Leave-last-out, test split, full ranking over all items with the user's earlier items excluded;",
             "mean ± standard deviation over the seeds run (count in the last column), one rank, each model's",
             "`configs/recall/<model>_<data>.yaml` with early stopping on the validation split. Sequence models",
             "train every position in one pass (`train_sequences.parquet`).",
             "Regenerate: `python tools/bench/models_recall.py quality` (runs may be split over processes with",
             "`--models`, `--data`, `--seeds`; stored under `runs/bench/models_recall/`).", ""]
    for title, (path, suffix, names) in QUALITY.items():
        data = ROOT / path
        lines += [f"**{title}**", "", "| model | Recall@10 | NDCG@10 | MRR@10 | best epoch | train time | seeds |",
                  "|---|---|---|---|---|---|---|"]
        for name in names:
            runs = [json.loads(p.read_text()) for p in sorted(RUNS.glob(f"{suffix}_{name}_*.json"))]
            if runs:
                lines.append(f"| {name} | " + " | ".join(_mean_spread([r["test"][k] for r in runs]) for k in KEYS)
                             + f" | {sum(r['best_epoch'] for r in runs) / len(runs):.1f} | "
                             f"{sum(r['train_s'] for r in runs) / len(runs):.0f} s | {len(runs)} |")
        if (data / "schema.json").exists():
            num_items = Schema.load(data / "schema.json")["item_id"].vocab_size
            popular = most_popular_metrics(str(data / "train.parquet"), str(data / "test.parquet"), num_items)
            lines += ["| most-popular | " + " | ".join(f"{popular[k]:.4f}" for k in KEYS) + " | - | - | - |"]
        lines.append("")
    return "\n".join(lines)


def _synthetic(path: Path, items: int, users: int) -> None:
    from bigrec.data.synthetic_sequences import generate_sequences

    if not (path / "schema.json").exists():
        generate_sequences(path, num_users=users, num_items=items, num_clusters=min(50, items), min_length=5,
                           max_length=30, history_len=50)


ONE_PASS = ("sasrec", "gru4rec", "narm")  # sequence models training every position: one row per sequence


def _config(model: dict, data: Path, out: str, options: dict, steps: int):
    from bigrec.config import config_from_dict

    train = "train_sequences.parquet" if model["name"] in ONE_PASS else "train.parquet"
    return config_from_dict({
        "data": {"path": str(data), "train": train, "batch_size": 256, "eval_batch_size": 1024},
        "model": model, "task": {"options": options},
        "trainer": {"epochs": 1, "output_dir": out, "progress_bar": False, "log_every": 10_000,
                    "max_steps_per_epoch": steps, "early_stopping": {"metric": "recall@10"}},
        "sharding": {"print_plan": False}})


MODELS = {
    "sasrec": ({"name": "sasrec", "max_len": 50, "num_heads": 2, "num_layers": 2, "hidden_size": 32},
               {"loss": "full"}),
    "dssm": ({"name": "dssm", "user_features": ["user_id", "hist_item_ids"], "hidden_units": [64, 32],
              "embedding_dim": 32}, {"loss": "sampled", "num_negatives": 256}),
}


def _train_rate(name: str, data: str, out: str, steps: int) -> float:
    from bigrec.train.trainer import train

    model, options = MODELS[name]
    return train(_config(model, Path(data), out, options, steps))["history"][0]["train_samples_per_s"]


def _eval_rate(data: str, out: str, options: dict, steps: int) -> tuple[float, float]:
    """(test users/s of full-ranking evaluation, recall@10) after a short training."""
    import torch.distributed as dist

    from bigrec.train.trainer import Trainer, prepare

    model, _ = MODELS["sasrec"]
    config = _config(model, Path(data), out, options, steps)
    trainer = Trainer(config, prepared := prepare(config))
    trainer.train_epoch(0)
    if dist.is_initialized():
        dist.barrier()
    started = time.perf_counter()
    metrics = trainer.evaluate("test")
    return prepared.splits["test"].total_rows / (time.perf_counter() - started), metrics["recall@10"]


def throughput(steps: int) -> str:
    from bigrec.testing import run_ranks

    work = Path(tempfile.mkdtemp())
    small, large = work / "items_1682", work / "items_1m"
    _synthetic(small, 1682, 5000)
    _synthetic(large, 1_000_000, 3000)
    lines = ["Synthetic Markov sequences, CPU, gloo, one OpenMP thread per rank, batch 256 rows per rank (for the",
             "one-pass sequence models a row is a sequence window: samples/s counts windows, ~17 targets each).",
             "Regenerate: `python tools/bench/models_recall.py throughput`.", "",
             "| model | ranks | train samples/s | vs 1 rank |", "|---|---|---|---|"]
    for name in MODELS:
        one = run_ranks(_train_rate, 1, name, str(small), str(work / f"{name}1"), steps)[0]
        two = run_ranks(_train_rate, 2, name, str(small), str(work / f"{name}2"), steps)[0]
        lines += [f"| {name} | 1 | {one:,.0f} | 1.00 |", f"| {name} | 2 | {two:,.0f} | {two / one:.2f} |"]
    lines += ["", "| SASRec full-ranking eval | ranks | training loss | test users/s | vs 1,682 items, 1 rank |",
              "|---|---|---|---|---|"]
    base = None
    for label, data, options in (("1,682 items", small, {"loss": "full"}),
                                 ("1,000,000 items", large, {"loss": "sampled", "num_negatives": 1024})):
        for ranks in (1, 2):
            rate, _ = run_ranks(_eval_rate, ranks, str(data), str(work / f"eval{ranks}"), options, steps)[0]
            base = base or rate
            lines.append(f"| {label} | {ranks} | {options['loss']} softmax | {rate:,.0f} | {rate / base:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["quality", "throughput"])
    parser.add_argument("--epochs", type=int, default=None, help="quality: at most this many epochs (default: "
                                                                  "each config's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="quality: seeds per model")
    parser.add_argument("--models", nargs="+", help="quality: only these models")
    parser.add_argument("--data", nargs="+", choices=["ml100k", "synthetic"], help="quality: only these data sets")
    parser.add_argument("--steps", type=int, default=60, help="throughput: training steps per run")
    args = parser.parse_args()
    from bigrec.logs import quiet_third_party

    quiet_third_party()
    if args.what == "quality":
        train_runs(args.seeds, args.epochs, args.models, args.data)
        replace_section(ROOT / "docs/models.md", "Recall", quality_table())
    else:
        replace_section(ROOT / "docs/benchmarks.md", "Recall", throughput(args.steps))


if __name__ == "__main__":
    main()
