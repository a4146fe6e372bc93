"""DIN / MMoE quality (MovieLens-100k and the planted-signal comparisons) and the ranking zoo's throughput.

    python tools/bench/models_ranking.py quality      # -> docs/models.md, section "DIN / MMoE"
    python tools/bench/models_ranking.py throughput   # -> docs/benchmarks.md, section "Ranking zoo: throughput"

``quality`` trains with the real trainer on one rank: DIN (``configs/ranking/din_ml100k.yaml``)
and MMoE (``configs/multitask/mmoe_ml100k.yaml``) on MovieLens-100k, DIN against DeepFM fed
the candidate alone on synthetic behaviour data, and MMoE against a SharedBottom of the same
size on synthetic two-task data at task correlation 0 and 1. Data sets are made as needed
(MovieLens from ``data/raw/ml-100k``).
``throughput`` measures training samples/s of the ten ranking models (DeepFM, the baseline of the
ratios, WideDeep, DCN, DCN-V2, AFM, FiBiNET, EDCN, DIN, DIEN, BST) at 1 and 2 gloo ranks, on one
synthetic data set with Criteo-like fields and behaviour histories side by side, in one run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from models_recall import replace_section  # noqa: E402

HEADING = "DIN / MMoE"
NOTES = """\
**DIN** (`bigrec/models/ranking/din.py`, `model.name: din`): `features`, `behavior_features`
(`{item_id: hist_item_ids, item_cat: hist_cat_ids}`, or a list of histories each paired with the
one feature reading the same table), `attention_units`, `hidden_units`, `activation` (`dice`,
`prelu`, `relu`...), `dropout_rates`, `embedding_dim`. The candidate and its history read one
table (an `EmbeddingCollection`; the candidate is a length-1 sequence). The activation unit scores
each history position with an MLP over `[q, k, q - k, q * k]`; following the paper the scores are
**not** softmax-normalised: the interest vector is the score-weighted *sum* of the history, so the
number of matching behaviours counts. Padding gets a weight of exactly 0 and an empty history a
zero interest vector (tests in `tests/models/test_din.py`). With `dice`, the batch-norm statistics are
per rank, so multi-rank runs differ slightly from one rank (as any batch-norm model under DDP);
the 2-rank parity run of the conformance suite uses `prelu`.

**MMoE** (`bigrec/models/multitask/mmoe.py`, `model.name: mmoe`, `task = "multitask"`, logits
`[B, T]`): `features`, `expert_units`, `num_experts`, `num_tasks`, `expert_activation`,
`gate_activation` (`softmax` over experts), `tower_units`, `task_types`, `expert_dropout_rates`,
`tower_dropout_rates`, `embedding_dim`.
**SharedBottom** (`shared_bottom`): `features`, `hidden_units`, `task_hidden_units`, `num_tasks`,
`task_types`, `activation`, `dropout_rates`, `tower_dropout_rates`, `embedding_dim`. Labels and loss weights come from `task.labels`
/ `task.loss_weights` (`num_tasks` must match the labels); validation reports `<label>/auc` and
`<label>/logloss` per task, and `trainer.early_stopping.metric: conversion/auc` stops on one task.

Data: `bigrec data synthetic-behavior` (label = the candidate's category occurs in the history;
the candidate alone carries no signal), `bigrec data synthetic-multitask --correlation RHO` (two
tasks along directions with cosine RHO, after the MMoE paper), `bigrec data movielens-impressions`
(rated items plus one sampled unrated item per rating; `click` = rated, `conversion` = rating >= 4;
rated rows keep the ranking split, unrated samples go to train/valid/test 80/10/10 at random).
"""
DIN_SYNTHETIC = ROOT / "configs/ranking/din_synthetic.yaml"
MMOE_SYNTHETIC = ROOT / "configs/multitask/mmoe_synthetic.yaml"
# baselines: the model section of the config replaced by these
DEEPFM_CANDIDATE = {"name": "deepfm", "features": ["user_id", "item_id", "item_cat"], "hidden_units": [64, 32],
                    "embedding_dim": 8}
SHARED_BOTTOM = {"name": "shared_bottom", "hidden_units": [128], "task_hidden_units": [8], "num_tasks": 2,
                 "embedding_dim": 8}


def _config(config_path, overrides: list[str], model: dict | None = None):
    """The YAML config with ``model`` (when given) replacing its model section, then ``overrides``."""
    import yaml

    from bigrec.config import apply_overrides, config_from_dict

    raw = yaml.safe_load(Path(config_path).read_text())
    if model is not None:
        raw["model"] = dict(model)
    return config_from_dict(apply_overrides(raw, overrides), source=str(config_path))


def _run(config_path: Path, overrides: list[str], out: str, model: dict | None = None, full: bool = False) -> dict:
    """Train one config on this process (1 rank); return the test metrics (``full``: the whole fit result)."""
    from bigrec.train.distributed import destroy_process_group
    from bigrec.train.trainer import train

    config = _config(config_path, overrides + [f"trainer.output_dir={out}", "trainer.progress_bar=false",
                                               "sharding.print_plan=false"], model)
    try:
        result = train(config)
        return result if full else result["test"]
    finally:
        destroy_process_group()


def _ensure_data(tmp: Path) -> dict[str, Path]:
    from bigrec.data.movielens_impressions import prepare_impressions
    from bigrec.data.synthetic_behavior import generate_behavior
    from bigrec.data.synthetic_multitask import generate_multitask

    ranking, impressions = ROOT / "data/ml-100k/ranking", ROOT / "data/ml-100k/impressions"
    if not (ranking / "schema.json").exists():
        from bigrec.data.movielens import prepare_movielens

        prepare_movielens(ROOT / "data/raw/ml-100k", ROOT / "data/ml-100k")
    if not (impressions / "schema.json").exists():
        prepare_impressions(ROOT / "data/raw/ml-100k", impressions)
    paths = {"ranking": ranking, "impressions": impressions, "behavior": tmp / "behavior"}
    generate_behavior(paths["behavior"], rows=100_000)
    for rho in (0.0, 1.0):
        paths[f"multitask_{rho}"] = tmp / f"multitask_{rho}"
        generate_multitask(paths[f"multitask_{rho}"], rows=100_000, correlation=rho)
    return paths


def quality(epochs: int | None) -> str:
    extra = [f"trainer.epochs={epochs}"] if epochs else []
    with tempfile.TemporaryDirectory() as tmp:
        data = _ensure_data(Path(tmp))
        din_ml = _run(ROOT / "configs/ranking/din_ml100k.yaml", extra + [f"data.path={data['ranking']}"], f"{tmp}/a")
        deepfm_ml = _run(ROOT / "configs/ranking/deepfm_ml100k.yaml", extra + [f"data.path={data['ranking']}"],
                         f"{tmp}/a2")
        mmoe_ml = _run(ROOT / "configs/multitask/mmoe_ml100k.yaml", extra + [f"data.path={data['impressions']}"],
                       f"{tmp}/b")
        behavior = [f"data.path={data['behavior']}"]
        din_syn = _run(DIN_SYNTHETIC, extra + behavior, f"{tmp}/c")
        deepfm_syn = _run(DIN_SYNTHETIC, extra + behavior, f"{tmp}/d", DEEPFM_CANDIDATE)
        multitask = {}
        for rho in (0.0, 1.0):
            path = [f"data.path={data[f'multitask_{rho}']}"]
            multitask[rho] = (_run(MMOE_SYNTHETIC, extra + path, f"{tmp}/e{rho}"),
                              _run(MMOE_SYNTHETIC, extra + path, f"{tmp}/f{rho}", SHARED_BOTTOM))
    lines = [
        NOTES,
        "Regenerated by `python tools/bench/models_ranking.py quality` (real trainer, 1 rank, the configs "
        "named below; test split of each data set).",
        "",
        "| data | model | test AUC |",
        "|---|---|---|",
        f"| MovieLens-100k ranking split | DIN (`din_ml100k.yaml`) | {din_ml['auc']:.4f} |",
        f"| MovieLens-100k ranking split | DeepFM (`deepfm_ml100k.yaml`, no history) | {deepfm_ml['auc']:.4f} |",
        f"| MovieLens-100k impressions | MMoE (`mmoe_ml100k.yaml`) | click {mmoe_ml['click/auc']:.4f}, "
        f"conversion {mmoe_ml['conversion/auc']:.4f} |",
        f"| synthetic behaviour | DIN (`din_synthetic.yaml`) | {din_syn['auc']:.4f} |",
        f"| synthetic behaviour | DeepFM fed the candidate alone | {deepfm_syn['auc']:.4f} |",
    ]
    for rho, (mmoe, shared) in multitask.items():
        for name, result in (("MMoE, 8 experts x 16 (`mmoe_synthetic.yaml`)", mmoe),
                             ("SharedBottom, bottom 128 (same size)", shared)):
            lines.append(f"| synthetic two-task, correlation {rho:g} | {name} | task1 {result['task1/auc']:.4f}, "
                         f"task2 {result['task2/auc']:.4f}, mean {result['auc']:.4f} |")
    return "\n".join(lines)


# ------------------------------------------------------------- throughput
THROUGHPUT_HEADING = "Ranking zoo: throughput"
RANKING_MODELS = ("deepfm", "widedeep", "dcn", "dcnv2", "afm", "fibinet", "edcn", "din", "dien", "bst")
BEHAVIOR = {"item_id": "hist_item_ids", "item_cat": "hist_cat_ids"}
THROUGHPUT_BATCH = 256


def _criteo_with_history(out: Path, rows: int) -> list[str]:
    """Criteo-like fields (13 dense, 26 sparse) and the behaviour columns side by side, one row each.

    Writes ``out`` (train/valid/test.parquet and schema.json; the label is the Criteo-like one) and
    returns the non-history features every model reads.
    """
    import pyarrow.parquet as pq

    from bigrec.data.parquet_io import write_schema
    from bigrec.data.synthetic import generate_criteo_like
    from bigrec.data.synthetic_behavior import generate_behavior
    from bigrec.features import Schema

    criteo = generate_criteo_like(out / "criteo", rows, max_cardinality=10_000)
    behavior = generate_behavior(out / "behavior", rows)
    for split in ("train", "valid", "test"):
        table = pq.read_table(out / "criteo" / f"{split}.parquet")
        extra = pq.read_table(out / "behavior" / f"{split}.parquet")
        for name in extra.column_names:
            if name not in criteo.labels:
                table = table.append_column(name, extra.column(name))
        pq.write_table(table, out / f"{split}.parquet")
    write_schema(Schema(features=criteo.features + behavior.features, labels=criteo.labels,
                        metadata={"rows": criteo.metadata["rows"]}), out)
    return [f.name for f in criteo.features] + [f.name for f in behavior.features if f.name not in BEHAVIOR.values()]


def throughput_model(name: str, features: list[str]) -> dict:
    """``name``'s synthetic-config model section on the shared data: every model reads ``features``
    (DIN, DIEN, BST also the histories of item_id and item_cat), dim 16, MLP [128, 64] where it has one."""
    import yaml

    model = yaml.safe_load((ROOT / f"configs/ranking/{name}_synthetic.yaml").read_text())["model"]
    for key in ("features", "wide_features", "deep_features", "behavior_features"):
        model.pop(key, None)
    model["embedding_dim"] = 16
    if "hidden_units" in model:
        model["hidden_units"] = [128, 64]
    if name == "widedeep":
        model.update(wide_features=[f for f in features if not f.startswith("dense")], deep_features=features)
    else:
        model["features"] = features
    if name in ("din", "dien", "bst"):
        model["behavior_features"] = dict(BEHAVIOR)
    return model


def _steps(specs: list[tuple[str, dict]], data: str, out: str, steps: int, rounds: int = 5) -> list[float]:
    """Per rank, in one process group: build the real trainer of each (name, model section), train 5
    warm-up steps each, then ``rounds`` rounds of ``steps // rounds`` timed steps of every model in
    turn (interleaved, so a burst of load on the shared machine hits all models alike); the median
    over rounds of each model's global samples/s."""
    import itertools
    import statistics

    from bigrec.data.stream import make_loader
    from bigrec.train.trainer import Trainer, prepare

    per_round, warmup = max(1, steps // rounds), 5
    trainers, runs = [], []
    for index, (name, model) in enumerate(specs):
        config = _config(ROOT / "configs/ranking/deepfm_synthetic.yaml",
                         [f"data.path={data}", f"data.batch_size={THROUGHPUT_BATCH}", f"trainer.output_dir={out}/{index}-{name}",
                          "trainer.progress_bar=false", "sharding.print_plan=false", "data.validate=false"], model)
        trainer = Trainer(config, prepare(config))
        trainer.model.train()
        run = trainer._steps(make_loader(trainer.splits["train"]), warmup + rounds * per_round)
        for _ in itertools.islice(run, warmup):
            pass
        trainers.append(trainer)
        runs.append(run)
    rates: list[list[float]] = [[] for _ in specs]
    for _ in range(rounds):
        for index, run in enumerate(runs):
            started = time.perf_counter()
            for _ in itertools.islice(run, per_round):
                pass
            rates[index].append(per_round * THROUGHPUT_BATCH * trainers[index].env.world_size
                                / (time.perf_counter() - started))
    for trainer in trainers:
        trainer.close()
    return [statistics.median(r) for r in rates]


def throughput(steps: int) -> str:
    from bigrec.testing import run_ranks

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        features = _criteo_with_history(data, rows=max(20_000, 3 * steps * THROUGHPUT_BATCH * 2))
        specs = [(name, throughput_model(name, features)) for name in RANKING_MODELS]
        load_before = os.getloadavg()
        rates = {world: run_ranks(_steps, world, specs, str(data), f"{tmp}/run{world}", steps)[0] for world in (1, 2)}
        load_after = os.getloadavg()
    lines = [f"`python tools/bench/models_ranking.py throughput --steps {steps}`: real trainer (planner, DMP, "
             f"TrainPipelineSparseDist), {THROUGHPUT_BATCH} rows per rank per step, one thread per rank; all ten "
             "models live in one process group per world size, each takes 5 warm-up steps, then 5 rounds of "
             f"{steps // 5} timed steps of every model in turn; samples/s is the median over the rounds. Same data and tables for all: Criteo-like fields (13 dense, 26 sparse up to 10,000 ids) "
             "plus user_id, item_id, item_cat, dim 16, MLP [128, 64] where the model has one; DIN, DIEN and BST also "
             "read histories of item_id and item_cat (up to 20). Ratios are to DeepFM at the same number of ranks, "
             f"in the same run. Load average (1, 5, 15 min) {', '.join(f'{x:.1f}' for x in load_before)} before, "
             f"{', '.join(f'{x:.1f}' for x in load_after)} after, on a shared 2-core machine.", "",
             "| model | 1 rank samples/s | ratio to DeepFM | 2 ranks samples/s | ratio to DeepFM |",
             "|---|---:|---:|---:|---:|"]
    for index, name in enumerate(RANKING_MODELS):
        one, two = rates[1][index], rates[2][index]
        lines.append(f"| {name} | {one:,.0f} | {one / rates[1][0]:.2f} | {two:,.0f} | {two / rates[2][0]:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["quality", "throughput"])
    parser.add_argument("--epochs", type=int, default=None, help="override every config's epochs")
    parser.add_argument("--steps", type=int, default=100, help="timed steps per model and world size (throughput)")
    parser.add_argument("--print-only", action="store_true", help="print the table, do not edit docs/")
    args = parser.parse_args()
    if args.what == "quality":
        body, target = quality(args.epochs), ROOT / "docs/models.md"
    else:
        body, target = throughput(args.steps), ROOT / "docs/benchmarks.md"
    print(body)
    if not args.print_only:
        replace_section(target, HEADING if args.what == "quality" else THROUGHPUT_HEADING, body)


if __name__ == "__main__":
    main()
