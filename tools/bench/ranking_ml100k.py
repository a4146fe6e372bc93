"""MovieLens-100k ranking table for the ten ranking models -> docs/models.md, section "Ranking: MovieLens-100k".

    python tools/bench/ranking_ml100k.py [--models deepfm,afm] [--seeds 0,1,2] [--results DIR] [--print-only]

Each (model, seed) is one run of the real trainer on one rank with ``configs/ranking/<model>_ml100k.yaml``
(``trainer.seed`` set to the seed; the split and budget are the configs': 5 epochs, early stopping on
validation AUC, patience 2). A run's test metrics go to ``<results>/<model>-seed<seed>-<hash>.json``,
``hash`` being that of the config file's text and the ``--set`` overrides, so a run already there is
skipped and a changed config is run again. The table is made from every result present for the
current configs (whatever ``--models`` ran this time), so several invocations (e.g. the sequence
models on another day) fill one table. Data: ``data/ml-100k/ranking`` (made from ``data/raw/ml-100k``
when absent, as ``make data`` does).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from models_recall import _spread, replace_section  # noqa: E402

HEADING = "Ranking: MovieLens-100k"
MODELS = ("deepfm", "widedeep", "dcn", "dcnv2", "afm", "fibinet", "edcn", "din", "dien", "bst")
CONFIGS = ROOT / "configs/ranking"
DATA = ROOT / "data/ml-100k/ranking"
METRICS = ("auc", "logloss")


def _key(model: str, overrides: list[str]) -> str:
    """Short hash of the model's config text and the overrides: a changed config is a new run."""
    text = (CONFIGS / f"{model}_ml100k.yaml").read_text() + "\n".join(overrides)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def _result_path(results: Path, model: str, seed: int, overrides: list[str]) -> Path:
    return results / f"{model}-seed{seed}-{_key(model, overrides)}.json"


def run_one(model: str, seed: int, overrides: list[str], results: Path) -> dict:
    """Train ``model`` with seed ``seed`` on one rank (or read its saved result); the result row."""
    from bigrec.config import load_config
    from bigrec.train.distributed import destroy_process_group
    from bigrec.train.trainer import train

    path = _result_path(results, model, seed, overrides)
    if path.exists():
        return json.loads(path.read_text())
    with tempfile.TemporaryDirectory() as out:
        config = load_config(CONFIGS / f"{model}_ml100k.yaml",
                             overrides + [f"trainer.seed={seed}", f"data.path={DATA}", f"trainer.output_dir={out}",
                                          "trainer.progress_bar=false", "sharding.print_plan=false"])
        started = time.perf_counter()
        try:
            result = train(config)
        finally:
            destroy_process_group()
    row = {"model": model, "seed": seed, "overrides": overrides, "test": result["test"],
           "best_epoch": result["best_epoch"], "seconds": round(time.perf_counter() - started, 1)}
    results.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(row) + "\n")
    return row


def table(seeds: list[int], overrides: list[str], results: Path, previous: dict[str, str]) -> str:
    """The Markdown table over every model with saved results for the current configs and ``seeds``; a model
    without results here keeps its ``previous`` row (made where its results are)."""
    lines = ["MovieLens-100k ranking split (rating >= 4 is a click; each user's last 10% of ratings is test, the",
             "10% before it valid). Real trainer, 1 rank, one thread, `configs/ranking/<model>_ml100k.yaml` (5 epochs,",
             "early stopping on validation AUC, patience 2; test metrics of the best epoch), mean ± standard",
             f"deviation over seeds {', '.join(map(str, seeds))} (`trainer.seed`; the split is fixed).",
             "Every config has DeepFM's data, batch (512), epochs and dense optimizer (Adam 0.001); AFM's embeddings "
             "train at row-wise Adagrad 0.1 instead of 0.05 (without a deep part it was still improving at epoch 5; "
             "see its config for what else was tried). BST feeds the MLP the candidate token's transformer output "
             "(`pooling: candidate`; the paper's flattened tokens overfit: 0.787, best epoch 2) and DIN reads the 20 "
             "most recent behaviours (all 50: 0.791); both use relu (see their configs).",
             "Regenerate: `python tools/bench/ranking_ml100k.py` (`--models a,b` runs some; results are kept "
             "under `runs/ranking_ml100k/` and reused).", "",
             "| model | test AUC | test logloss | best epochs | seeds |", "|---|---|---|---|---|"]
    for model in MODELS:
        runs = [json.loads(p.read_text()) for p in (_result_path(results, model, s, overrides) for s in seeds)
                if p.exists()]
        if not runs:
            lines.append(previous.get(model, f"| {model} | not run | | | 0 |"))
            continue
        tests = [run["test"] for run in runs]
        lines.append(f"| {model} | " + " | ".join(_spread([t[m] for t in tests]) for m in METRICS)
                     + f" | {', '.join(str(run['best_epoch']) for run in runs)} | {len(runs)} |")
    return "\n".join(lines)


def _rows_in_docs() -> dict[str, str]:
    """``model -> its row`` of the table now in docs/models.md."""
    text = (ROOT / "docs/models.md").read_text()
    section = text.split(f"## {HEADING}", 1)[1].split("\n## ", 1)[0] if f"## {HEADING}" in text else ""
    return {line.split("|")[1].strip(): line for line in section.splitlines()
            if line.startswith("| ") and line.split("|")[1].strip() in MODELS}


def _ensure_data() -> None:
    if not (DATA / "schema.json").exists():
        from bigrec.data.movielens import prepare_movielens

        prepare_movielens(ROOT / "data/raw/ml-100k", ROOT / "data/ml-100k")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated trainer seeds")
    parser.add_argument("--results", type=Path, default=ROOT / "runs/ranking_ml100k",
                        help="directory of per-run results (a run found there is not run again)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a dotted config override applied to every run (part of the result key)")
    parser.add_argument("--print-only", action="store_true", help="print the table, do not edit docs/")
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"--models: unknown {unknown}; valid: {', '.join(MODELS)}")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    from bigrec.logs import quiet_third_party

    quiet_third_party()
    _ensure_data()
    for model in models:
        for seed in seeds:
            row = run_one(model, seed, args.overrides, args.results)
            print(f"{model} seed {seed}: auc {row['test']['auc']:.4f} logloss {row['test']['logloss']:.4f} "
                  f"best epoch {row['best_epoch']} ({row['seconds']} s)", flush=True)
    body = table(seeds, args.overrides, args.results, _rows_in_docs())
    print(body)
    if not args.print_only:
        replace_section(ROOT / "docs/models.md", HEADING, body)


if __name__ == "__main__":
    main()
