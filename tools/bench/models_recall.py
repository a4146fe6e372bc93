"""Recall benchmarks: MovieLens-100k quality table and training / full-ranking throughput.

    python tools/bench/models_recall.py quality      # -> docs/models.md, section "Recall"
    python tools/bench/models_recall.py proofs       # -> docs/models.md, section "Recall: planted signals"
    python tools/bench/models_recall.py throughput   # -> docs/benchmarks.md, section "Recall"

``quality`` trains the seven recall models (SASRec, GRU4Rec, NARM, DSSM, YouTube DNN,
Facebook DSSM, MIND) with ``configs/recall/<model>_ml100k.yaml`` (each config's epochs
and early stopping unless ``--epochs`` caps them; one rank, seeds 0, 1, 2) and scores
the most-popular baseline on the same leave-last-out protocol (Recall/NDCG/MRR@10 on
the test split, full ranking, each user's train and valid items excluded);
``--synthetic`` adds the sequence models and DSSM on synthetic Markov sequences
(``configs/recall/*_synthetic.yaml``).
``proofs`` runs the planted-signal comparisons on synthetic users with several
disjoint interests (MIND K = 4 vs K = 1; Facebook DSSM with offline / online hard
negatives vs random only), seeds 0, 1, 2.
``throughput`` measures training samples/s at 1 and 2 gloo ranks on synthetic
sequences, and full-ranking evaluation users/s of SASRec with 1,682 and
1,000,000 items (sampled softmax in training, sharded scoring in evaluation);
ratios are against the 1-rank / 1,682-item runs of the same script.
"""

from __future__ import annotations

import argparse
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


QUALITY_RUNS = (  # (row label, config, overrides)
    ("sasrec", "sasrec_ml100k", []),
    ("gru4rec", "gru4rec_ml100k", []),
    ("narm", "narm_ml100k", []),
    ("dssm", "dssm_ml100k", []),
    ("youtube_dnn", "youtube_dnn_ml100k", []),
    ("facebook_dssm", "facebook_dssm_ml100k", []),
    ("mind", "mind_ml100k", []),
)
SYNTHETIC_RUNS = tuple((name, f"{name}_synthetic", []) for name in ("sasrec", "gru4rec", "narm", "dssm"))
SEEDS = (0, 1, 2)


def _train_quality(label: str, config_name: str, overrides: list, seed: int, epochs: Optional[int], out: str,
                   results: Path, data: Path = ROOT / "data/ml-100k/recall") -> dict:
    """Train one (config, seed) on one rank; the result is kept in ``results`` (reused when present).

    ``epochs``: the cap on epochs (``None``: the config's ``trainer.epochs``).
    """
    import json

    from bigrec.config import load_config
    from bigrec.train.distributed import destroy_process_group
    from bigrec.train.trainer import train

    cached = results / f"{config_name}{'-features' if overrides else ''}-seed{seed}-epochs{epochs or 'config'}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    config = load_config(ROOT / f"configs/recall/{config_name}.yaml",
                         overrides + ([f"trainer.epochs={epochs}"] if epochs else []) + [f"trainer.seed={seed}",
                                      f"trainer.output_dir={out}/{config_name}-{seed}", "trainer.progress_bar=false",
                                      "sharding.print_plan=false", f"data.path={data}"])
    started = time.perf_counter()
    result = train(config)
    destroy_process_group()
    row = {"label": label, "seed": seed, "test": result["test"], "best_epoch": result["best_epoch"],
           "seconds": time.perf_counter() - started}
    results.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(row) + "\n")
    return row


def _spread(values: list[float], digits: int = 4) -> str:
    """``mean ± standard deviation`` (sample, n - 1) of ``values``."""
    import statistics

    mean = statistics.fmean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {spread:.{digits}f}"


def _table_row(label: str, runs: list[dict]) -> str:
    """``| label | Recall@10 | NDCG@10 | MRR@10 | best epochs | train time |`` over the seeds' runs."""
    tests = [run["test"] for run in runs]
    return (f"| {label} | " + " | ".join(_spread([t[m] for t in tests]) for m in ("recall@10", "ndcg@10", "mrr@10"))
            + f" | {', '.join(str(run['best_epoch']) for run in runs)} | "
            f"{_spread([run['seconds'] for run in runs], 0)} s |")


def quality(epochs: Optional[int], results: Path, synthetic_table: bool = False) -> str:
    budget = (f"at most {epochs} epoch(s) per run" if epochs else "each config's `trainer.epochs`") + \
        " with its early stopping on valid NDCG@10 (the test score is the best epoch's)"
    lines = ["Leave-last-out on MovieLens-100k (943 test users, 1,682 items), full ranking over every item. Every",
             "item of the user's training interactions and the valid item are excluded from the ranking (the same",
             "for every model and the baseline); a target ranks after every item scoring at least as high as it",
             f"(ties count against it). configs/recall/<model>_ml100k.yaml, {budget}, one rank, one",
             f"core (`OMP_NUM_THREADS=1`), mean ± standard deviation over seeds {', '.join(map(str, SEEDS))}.",
             f"Regenerate: `python tools/bench/models_recall.py quality{f' --epochs {epochs}' if epochs else ''} "
             "--results runs/bench/recall_quality` (resumable).", "",
             "| model | Recall@10 | NDCG@10 | MRR@10 | best epoch | train time |", "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as out:
        for label, config_name, overrides in QUALITY_RUNS:
            runs = [_train_quality(label, config_name, overrides, seed, epochs, out, results) for seed in SEEDS]
            lines.append(_table_row(label, runs))
        lines.append(_popular_row(ROOT / "data/ml-100k/recall"))
        if not synthetic_table:
            return "\n".join(lines)
        synthetic = ROOT / "data/synthetic/sequences"
        if not (synthetic / "schema.json").exists():
            from bigrec.data.synthetic_sequences import generate_sequences

            generate_sequences(synthetic)  # the defaults of `bigrec data synthetic-sequences`
        lines += ["", "Synthetic Markov sequences (`bigrec data synthetic-sequences`: 5,000 users, 1,000 items; the "
                      "next item's cluster follows the last one's), configs/recall/*_synthetic.yaml, the same "
                      "protocol; DSSM reads the mean of the history (the order-free baseline):", "",
                  "| model | Recall@10 | NDCG@10 | MRR@10 | best epoch | train time |", "|---|---|---|---|---|---|"]
        for label, config_name, overrides in SYNTHETIC_RUNS:
            runs = [_train_quality(label, config_name, overrides, seed, epochs, out, results, synthetic)
                    for seed in SEEDS]
            lines.append(_table_row(label, runs))
        lines.append(_popular_row(synthetic))
    return "\n".join(lines)


def _popular_row(data: Path) -> str:
    from bigrec.data.seen import SeenItems
    from bigrec.features import Schema
    from bigrec.tasks.retrieval.baselines import most_popular_metrics

    schema = Schema.load(data / "schema.json")
    seen = SeenItems.from_splits([str(data / "train.parquet"), str(data / "valid.parquet")], schema)
    popular = most_popular_metrics(str(data / "train.parquet"), str(data / "test.parquet"), schema, seen)
    return (f"| most-popular (deterministic) | {popular['recall@10']:.4f} | {popular['ndcg@10']:.4f} | "
            f"{popular['mrr@10']:.4f} | - | - |")


PROOF_RUNS = (  # (row label, config, overrides): pairs differ only in the mechanism
    ("MIND, K = 4 interests", "mind_synthetic", []),
    ("MIND, K = 1 (single vector, same size)", "mind_synthetic", ["model.num_interests=1"]),
    ("Facebook DSSM, random + offline-mined hard negatives", "facebook_dssm_synthetic", []),
    ("Facebook DSSM, random + online hard negatives", "facebook_dssm_synthetic",
     ["task.options.mining=online", "task.options.hard_negatives=true"]),
    ("Facebook DSSM, random negatives only", "facebook_dssm_synthetic", ["task.options.mining=online"]),
)


def proofs(epochs: int) -> str:
    from bigrec.config import load_config
    from bigrec.data.synthetic_interests import generate_interests
    from bigrec.train.distributed import destroy_process_group
    from bigrec.train.trainer import train

    lines = ["Synthetic users with 4 disjoint interests (`bigrec data synthetic-interests`: 1,500 users, 400",
             "items in 40 clusters, each user's items from 4 of them), leave-last-out, "
             f"{epochs} epoch(s) per run (early stopping),",
             "configs/recall/<model>_synthetic.yaml with the overrides named, mean ± standard deviation over seeds "
             f"{', '.join(map(str, SEEDS))}, 1 rank.",
             "Regenerate: `python tools/bench/models_recall.py proofs --epochs N`.", "",
             "| run | Recall@10 | NDCG@10 | MRR@10 | best epoch | train time |", "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as out:
        data = Path(out) / "interests"
        generate_interests(data, num_users=1500, num_items=400, num_clusters=40, interests=4, min_length=8,
                           max_length=30, history_len=30)
        for index, (label, config_name, overrides) in enumerate(PROOF_RUNS):
            runs = []
            for seed in SEEDS:
                config = load_config(ROOT / f"configs/recall/{config_name}.yaml",
                                     overrides + [f"trainer.epochs={epochs}", f"trainer.seed={seed}",
                                                  f"trainer.output_dir={out}/{index}-{seed}", f"data.path={data}",
                                                  "trainer.progress_bar=false", "sharding.print_plan=false"])
                started = time.perf_counter()
                result = train(config)
                destroy_process_group()
                runs.append({"test": result["test"], "best_epoch": result["best_epoch"],
                             "seconds": time.perf_counter() - started})
            lines.append(_table_row(label, runs))
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
    parser.add_argument("what", choices=["quality", "proofs", "throughput"])
    parser.add_argument("--epochs", type=int, default=None,
                        help="quality: cap on epochs per run (default each config's trainer.epochs)")
    parser.add_argument("--synthetic", action="store_true",
                        help="quality: add the synthetic Markov-sequence table")
    parser.add_argument("--results", type=Path, default=None,
                        help="quality: keep each run's result here and reuse those present (default: none kept)")
    parser.add_argument("--steps", type=int, default=60, help="throughput: training steps per run")
    args = parser.parse_args()
    from bigrec.logs import quiet_third_party

    quiet_third_party()
    if args.what == "quality":
        with tempfile.TemporaryDirectory() as scratch:
            body = quality(args.epochs, args.results or Path(scratch), args.synthetic)
        replace_section(ROOT / "docs/models.md", "Recall", body)
    elif args.what == "proofs":
        replace_section(ROOT / "docs/models.md", "Recall: planted signals", proofs(args.epochs or 10))
    else:
        replace_section(ROOT / "docs/benchmarks.md", "Recall", throughput(args.steps))


if __name__ == "__main__":
    main()
