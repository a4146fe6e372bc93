"""DIEN / BST quality: mean and spread over seeds, against DIN, on order-dependent synthetic data.

    python tools/bench/models_sequence.py [--results DIR] [--seeds 3] [--models DIN "DIEN (AUGRU)" ...]
                                          [--epochs N] [--print-only]

Trains with the real trainer on one rank, on synthetic order data (``bigrec data synthetic-order``:
the label is decided by which of two related categories the user clicked *last*): DIN
(``din_synthetic.yaml``, given DIEN's and BST's epochs and patience), DIEN with each ``gru_type``
(``dien_synthetic.yaml``) and BST (``bst_synthetic.yaml``). Each run is repeated with
``trainer.seed`` 0..seeds-1 (the data stay fixed). Resumable: each run's result is saved as
``DIR/order/<model>/seed<k>.json`` (its trainer output, TensorBoard included, next to it) and
skipped when present; the order data set is written once to ``DIR/order_data``. The table gives
the test mean and standard deviation and is written into ``docs/models.md`` (section "DIEN / BST")
unless ``--print-only``. The MovieLens-100k rows of DIN, DIEN and BST are made with the other
ranking models by ``tools/bench/ranking_ml100k.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from models_ranking import ROOT, _run  # noqa: E402
from models_recall import replace_section  # noqa: E402

HEADING = "DIEN / BST"
ORDER_DATA = {"rows": 60_000, "num_items": 500, "num_categories": 10, "max_len": 12, "overflow": 6}
NOTES = """\
**DIEN** (`bigrec/models/ranking/dien.py`, `model.name: dien`): `features`, `behavior_features` (as DIN),
`interest_units` (width of both GRUs), `gru_type` (`AUGRU`, `AIGRU`, `AGRU`), `hidden_units`, and
`attention_units`, `auxiliary_units`, `activation`, `dropout_rates`, `embedding_dim`, `max_len`. A GRU
extracts one interest state per behaviour; the auxiliary loss `next_behavior` (in
`ModelOutput.aux_losses`, weighted by `task.aux_loss_weights: {next_behavior: w}`, returned by the
task's step among the loss terms as `aux/next_behavior` and written to TensorBoard as
`train/aux/next_behavior` every `trainer.log_every` steps, next to `train/loss/label` and `train/loss`) asks each state to score the next clicked item above an item sampled from the
item table (ids hashed from the row's ids and the step: the same on any number of ranks). Softmax
attention of the candidate over the states drives the evolution GRU, whose padded steps never update
its state. **BST** (`bigrec/models/ranking/bst.py`, `model.name: bst`): `features`,
`behavior_features`, `num_heads`, `num_layers`, `hidden_size`, `dropout_rate`, and `hidden_units`,
`activation`, `dropout_rates`, `feedforward_size`, `embedding_dim`, `max_len`. The candidate is
appended to the right-aligned history (most recent next to it), learned positions count back from
it, padding is masked as a key in every attention; the MLP reads all transformer outputs and the
other features. Both keep the most recent `max_len` behaviours (tests in
`tests/models/test_dien.py`, `test_bst.py`, `test_sequence_ranking.py`).

Order data (`bigrec data synthetic-order`): categories come in related pairs; the label says
whether the most recent behaviour of the candidate's pair has the candidate's own category.
Both categories occur either way, so order-free pooling (DIN) cannot see the signal.
Budget: `dien_synthetic.yaml` and `bst_synthetic.yaml` train up to 10 epochs with early stopping
(patience 2) and restore the best epoch; DIN gets the same here. With 4 epochs and patience 1 DIEN
seeds were cut off while their validation AUC was still rising (one AUGRU seed stopped at 4 epochs).
"""


CONFIGS = ROOT / "configs/ranking"
SAME_BUDGET = ["trainer.epochs=10", "trainer.early_stopping.patience=2"]  # din_synthetic.yaml's are for its own data
RUNS = {  # data -> model label -> (config, overrides)
    "order": {"DIN": ("din_synthetic", SAME_BUDGET),
              **{f"DIEN ({g})": ("dien_synthetic", [f"model.gru_type={g}"]) for g in ("AUGRU", "AIGRU", "AGRU")},
              "BST": ("bst_synthetic", [])},
}
RESULTS = ROOT / "runs/bench/models_sequence"
DATA_LABELS = {"order": "synthetic order"}


def _summary(results: list[dict], metric: str) -> str:
    values = [r["test"][metric] for r in results]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {spread:.4f}"


def _data_path(data: str, results_dir: Path) -> Path:
    """The data set's directory, made once per results directory."""
    order = results_dir / "order_data"
    if not (order / "schema.json").exists():
        from bigrec.data.synthetic_order import generate_order

        generate_order(order, **ORDER_DATA)
    return order


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def run_one(data: str, label: str, seed: int, results_dir: Path, epochs: int | None) -> dict:
    """Train one (data, model, seed) run, or read its saved result; return {test, best_epoch, epochs, minutes}."""
    path = results_dir / data / _slug(label) / f"seed{seed}.json"
    if path.exists():
        return json.loads(path.read_text())
    config, overrides = RUNS[data][label]
    extra = [f"trainer.epochs={epochs}"] if epochs else []
    started = time.perf_counter()
    out = path.with_suffix("")
    result = _run(CONFIGS / f"{config}.yaml", extra + overrides + [f"data.path={_data_path(data, results_dir)}",
                                                                   f"trainer.seed={seed}"], str(out), full=True)
    record = {"test": result["test"], "best_epoch": result["best_epoch"], "epochs": len(result["history"]),
              "valid": [h.get("valid", {}).get("auc") for h in result["history"]],
              "minutes": (time.perf_counter() - started) / 60}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    return record


def quality(seeds: int, epochs: int | None, results_dir: Path = RESULTS, datasets: tuple[str, ...] = ("order",),
            models: list[str] | None = None) -> str:
    """Run (or read) every selected run; return the Markdown section body."""
    rows = []
    for data in datasets:
        for label in RUNS[data]:
            if models and label not in models:
                continue
            results = [run_one(data, label, seed, results_dir, epochs) for seed in range(seeds)]
            print(data, label, _summary(results, "auc"), "epochs", [r["epochs"] for r in results], flush=True)
            rows.append((data, label, RUNS[data][label][0], results))
    bayes = json.loads((_data_path("order", results_dir) / "schema.json").read_text())["metadata"]["bayes_auc_estimate"]
    sizes = ", ".join(f"{k}={v}" for k, v in ORDER_DATA.items())
    lines = [NOTES, f"Regenerated by `python tools/bench/models_sequence.py` (real trainer, 1 rank, {seeds} seeds "
             f"each: mean ± standard deviation of the test split; order data `generate_order({sizes})`, "
             f"Bayes AUC ~{bayes}; epochs run per seed, early stopping on valid AUC with patience 2, test "
             "metrics of the best epoch).", "",
             "| data | model | config | test AUC | test logloss | epochs run | minutes per run |",
             "|---|---|---|---|---|---|---|"]
    for data, label, config, results in rows:
        minutes = statistics.mean(r["minutes"] for r in results)
        lines.append(f"| {DATA_LABELS[data]} | {label} | `{config}.yaml` | {_summary(results, 'auc')} | "
                     f"{_summary(results, 'logloss')} | {', '.join(str(r['epochs']) for r in results)} | "
                     f"{minutes:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="directory of per-run results (runs found there are skipped)")
    parser.add_argument("--seeds", type=int, default=3, help="runs per model (trainer.seed 0..N-1)")
    parser.add_argument("--models", nargs="+", default=None, help="row labels to run (default: all)")
    parser.add_argument("--epochs", type=int, default=None, help="override every config's epochs")
    parser.add_argument("--print-only", action="store_true", help="print the table, do not edit docs/")
    args = parser.parse_args()
    from bigrec.logs import quiet_third_party

    quiet_third_party()
    body = quality(args.seeds, args.epochs, args.results, models=args.models)
    print(body)
    if not args.print_only:
        replace_section(ROOT / "docs/models.md", HEADING, body)


if __name__ == "__main__":
    main()
