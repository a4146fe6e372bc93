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
``proofs`` runs the planted-signal comparisons, seeds 0, 1, 2: order-aware GRU4Rec /
NARM / SASRec against the order-free YouTube DNN on Markov sequences; MIND K = 4 vs
K = 1 on users with several disjoint interests; Facebook DSSM with mined hard
negatives vs random only on the same interests data.
``throughput`` measures, in one process group per world size (1 and 2 gloo ranks),
training samples/s and full-ranking evaluation users/s of all seven recall models on
synthetic sequences (1,682 items), and of SASRec on 1,000,000 items (sampled softmax
in training, sharded scoring in evaluation); ratios are against DSSM at 1 rank of the
same run, and the load average is printed beside them.
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
                   results: Path, data: Path = ROOT / "data/ml-100k/recall", key: Optional[str] = None) -> dict:
    """Train one (config, seed) on one rank; the result is kept in ``results`` (reused when present).

    ``epochs``: the cap on epochs (``None``: the config's ``trainer.epochs``); ``key`` names the
    cached result (default: the config, plus ``-features`` when overridden).
    """
    import json

    from bigrec.config import load_config
    from bigrec.train.distributed import destroy_process_group
    from bigrec.train.trainer import train

    key = key or f"{config_name}{'-features' if overrides else ''}"
    cached = results / f"{key}-seed{seed}-epochs{epochs or 'config'}.json"
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


PROOF_SETS = {  # data set name -> (generator module, function, keyword arguments)
    "markov": ("bigrec.data.synthetic_sequences", "generate_sequences",
               {"num_users": 2000, "num_items": 500, "num_clusters": 25, "min_length": 6, "max_length": 20,
                "history_len": 20}),
    "interests": ("bigrec.data.synthetic_interests", "generate_interests",
                  {"num_users": 1500, "num_items": 400, "num_clusters": 40, "interests": 4, "min_length": 8,
                   "max_length": 30, "history_len": 30}),
}
PROOFS = (  # (section intro, data set, runs: (row label, config, overrides)); rows of a section differ in one thing
    ("Order: synthetic Markov sequences (`bigrec data synthetic-sequences --users 2000 --items 500 --clusters 25 "
     "--min-length 6 --max-length 20 --history-len 20`: the next item's cluster is the last one's successor "
     "with probability 0.9). Order-aware models against the order-free YouTube DNN (masked history mean).",
     "markov", (("GRU4Rec", "gru4rec_synthetic", []), ("NARM", "narm_synthetic", []),
                ("SASRec", "sasrec_synthetic", []), ("YouTube DNN (order-free)", "youtube_dnn_synthetic", []))),
    ("Several interests: synthetic users with 4 disjoint interests (`bigrec data synthetic-interests --users 1500 "
     "--items 400 --clusters 40 --min-length 8 --max-length 30 --history-len 30`: each user's items come from 4 "
     "of 40 clusters). MIND with K = 4 interest vectors against K = 1 of the same size.",
     "interests", (("MIND, K = 4 interests", "mind_synthetic", []),
                   ("MIND, K = 1 (single vector, same size)", "mind_synthetic", ["model.num_interests=1"]))),
    ("Hard negatives: Facebook DSSM on the same interests data, the same budget (epochs, in-batch and sampled "
     "candidates), margin loss on cosines. The default mines each user's items ranked 30-79 by the previous "
     "epoch's model (the first ~30 are mostly unseen items of the user's own clusters: unlabeled positives) "
     "beside the random negative; hard negatives only (online, the hardest in-batch candidate as the one "
     "negative) and mining from the very top are the recipes the EBR paper warns against.",
     "interests", (("random + offline-mined hard negatives, ranks 30-79 (config default)",
                    "facebook_dssm_synthetic", []),
                   ("random + offline-mined hard negatives, ranks 0-19", "facebook_dssm_synthetic",
                    ["task.options.mined_start=0", "task.options.mined_count=20"]),
                   ("online hard negatives only", "facebook_dssm_synthetic",
                    ["task.options.mining=online", "task.options.hard_negatives=true"]),
                   ("random negatives only", "facebook_dssm_synthetic", ["task.options.mining=online"]))),
)


def _proof_data(name: str, root: Path) -> Path:
    """Generate (once) the proofs' data set ``name`` under ``root``."""
    import importlib

    module, function, kwargs = PROOF_SETS[name]
    path = root / name
    if not (path / "schema.json").exists():
        getattr(importlib.import_module(module), function)(path, **kwargs)
    return path


def proofs(epochs: int, results: Path) -> str:
    lines = [f"Leave-last-out, full ranking, {epochs} epoch(s) per run (early stopping on valid recall@10), "
             "configs/recall/<model>_synthetic.yaml with the overrides named,",
             f"mean ± standard deviation over seeds {', '.join(map(str, SEEDS))}, 1 rank. Regenerate: "
             f"`python tools/bench/models_recall.py proofs --epochs {epochs} --results DIR` (runs kept in DIR are "
             "reused)."]
    with tempfile.TemporaryDirectory() as out:
        for intro, data_name, runs in PROOFS:
            data = _proof_data(data_name, results / "data")
            lines += ["", intro, "", "| run | Recall@10 | NDCG@10 | MRR@10 | best epoch | train time |",
                      "|---|---|---|---|---|---|"]
            for label, config_name, overrides in runs:
                key = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
                rows = [_train_quality(label, config_name, overrides, seed, epochs, out, results, data, key)
                        for seed in SEEDS]
                lines.append(_table_row(label, rows))
    return "\n".join(lines)


def _synthetic(path: Path, items: int, users: int) -> None:
    from bigrec.data.synthetic_sequences import generate_sequences

    if not (path / "schema.json").exists():
        generate_sequences(path, num_users=users, num_items=items, num_clusters=min(50, items), min_length=5,
                           max_length=30, history_len=50)


SPEED_MODELS = ("dssm", "facebook_dssm", "youtube_dnn", "gru4rec", "narm", "sasrec", "mind")
LARGE = ("sasrec", ["task.options.loss=sampled", "task.options.num_negatives=1024"])  # the 1,000,000-item run


def _rates(runs: list, steps: int, out: str) -> list[tuple[float, float]]:
    """On every rank of one process group: ``(train samples/s, test users/s)`` per ``(model, data, overrides)``.

    Each run trains ``steps`` steps of configs/recall/<model>_synthetic.yaml (batch 256 per rank), then times
    the full-ranking evaluation of the test split.
    """
    import torch.distributed as dist

    from bigrec.config import load_config
    from bigrec.train.trainer import Trainer, prepare

    rates = []
    for index, (name, data, overrides) in enumerate([runs[0]] + list(runs)):  # the first one again: a warm-up
        config = load_config(ROOT / f"configs/recall/{name}_synthetic.yaml", [
            f"data.path={data}", "data.batch_size=256", "trainer.epochs=1", f"trainer.max_steps_per_epoch={steps}",
            f"trainer.output_dir={out}/{index}", "trainer.progress_bar=false", "trainer.log_every=100000",
            "sharding.print_plan=false", *overrides])
        trainer = Trainer(config, prepared := prepare(config))
        train_rate = trainer.train_epoch(0)
        dist.barrier()
        started = time.perf_counter()
        trainer.evaluate("test")
        rates.append((train_rate, prepared.splits["test"].total_rows / (time.perf_counter() - started)))
    return rates[1:]


def _targets_per_row(data: Path, name: str) -> float:
    """Training targets per training row: 1, or for a one-pass model (GRU4Rec, NARM, SASRec, reading
    ``train_sequences.parquet``) the targets of all windows (every training row with a history) per window."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from bigrec.config import load_config

    train = load_config(ROOT / f"configs/recall/{name}_synthetic.yaml").data.train
    if "sequences" not in str(train):
        return 1.0
    histories = pq.read_table(data / "train.parquet", columns=["hist_item_ids"]).column("hist_item_ids")
    targets = pc.sum(pc.greater(pc.list_value_length(histories), 0)).as_py()
    return targets / pq.ParquetFile(data / "train_sequences.parquet").metadata.num_rows


def throughput(steps: int) -> str:
    from bigrec.testing import run_ranks

    work = Path(tempfile.mkdtemp())
    small, large = work / "items_1682", work / "items_1m"
    _synthetic(small, 1682, 5000)
    _synthetic(large, 1_000_000, 1000)
    runs = [(name, str(small), []) for name in SPEED_MODELS] + [(LARGE[0], str(large), LARGE[1])]
    load = os.getloadavg()
    rates = {ranks: run_ranks(_rates, ranks, runs, steps, str(work / f"ranks{ranks}"))[0] for ranks in (1, 2)}
    after = os.getloadavg()
    base_train, base_eval = rates[1][0]  # DSSM, 1 rank
    lines = ["Synthetic Markov sequences (`bigrec data synthetic-sequences`: 5,000 users, 1,682 items, histories "
             "up to 50), CPU, gloo, one OpenMP thread per rank, batch 256 rows per rank, "
             f"{steps} training steps per run, then the full-ranking evaluation of the test split (every item "
             "scored; at 2 ranks each rank scores its slice of the item table). configs/recall/<model>_synthetic"
             ".yaml; the one-pass sequence models (GRU4Rec, NARM, SASRec) read one row per sequence window, so "
             "their samples/s counts windows and targets/s the next-item targets they hold. The first run of each "
             "process group is run twice and its first timing dropped (warm-up). The 1,000,000-item row is SASRec "
             "with sampled softmax (1,024 sampled negatives) on 1,000 users. All rows come from one run, two "
             "process groups (1 and 2 ranks, every model in each); ratios are to DSSM at 1 rank of the same run.",
             f"Load average (1 min) {load[0]:.2f} at the start, {after[0]:.2f} at the end, on {os.cpu_count()} "
             "cores. Regenerate: `python tools/bench/models_recall.py throughput`. On a shared machine the rows are "
             "rough (other jobs come and go between runs; 2-rank speed-ups above 2 are such noise), and the "
             "one-pass models' epoch (one window per user) ends before the step cap: ~20 steps at 1 rank, ~10 "
             "at 2.", "",
             "| model | items | ranks | train samples/s | train targets/s | train vs DSSM 1 rank (targets) | "
             "eval users/s | eval vs DSSM 1 rank |", "|---|---|---|---|---|---|---|---|"]
    for index, (name, data, _) in enumerate(runs):
        per_row = _targets_per_row(Path(data), name)
        for ranks in (1, 2):
            train_rate, eval_rate = rates[ranks][index]
            items = "1,000,000" if data == str(large) else "1,682"
            lines.append(f"| {name} | {items} | {ranks} | {train_rate:,.0f} | {train_rate * per_row:,.0f} | "
                         f"{train_rate * per_row / base_train:.2f} | {eval_rate:,.0f} | {eval_rate / base_eval:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["quality", "proofs", "throughput"])
    parser.add_argument("--epochs", type=int, default=None,
                        help="quality: cap on epochs per run (default each config's trainer.epochs)")
    parser.add_argument("--synthetic", action="store_true",
                        help="quality: add the synthetic Markov-sequence table")
    parser.add_argument("--results", type=Path, default=None,
                        help="quality, proofs: keep each run's result here and reuse those present (default: none kept)")
    parser.add_argument("--steps", type=int, default=60, help="throughput: training steps per run")
    args = parser.parse_args()
    from bigrec.logs import quiet_third_party

    quiet_third_party()
    if args.what == "quality":
        with tempfile.TemporaryDirectory() as scratch:
            body = quality(args.epochs, args.results or Path(scratch), args.synthetic)
        replace_section(ROOT / "docs/models.md", "Recall", body)
    elif args.what == "proofs":
        with tempfile.TemporaryDirectory() as scratch:
            body = proofs(args.epochs or 10, args.results or Path(scratch))
        replace_section(ROOT / "docs/models.md", "Recall: planted signals", body)
    else:
        replace_section(ROOT / "docs/benchmarks.md", "Recall", throughput(args.steps))


if __name__ == "__main__":
    main()
