"""Multi-task benchmarks (SharedBottom, ESMM, MMoE, PLE; loss weighting) -> docs/models.md, section "Multi-task".

    python tools/bench/models_multitask.py [--seeds 3] [--print-only]

Every figure is the mean and spread (sample standard deviation) over ``--seeds`` seeds.

1. Task correlation (synthetic two-task data at correlation 0, 0.5, 1; data and model seed vary):
   SharedBottom, MMoE and PLE with the model sections of their ``*_synthetic.yaml``, trained
   in-process (Adam, one thread), test AUC per task.
2. Sample-selection bias: ESMM against a naive CVR model (an MLP of the CVR tower's size trained on
   clicked rows only), both scored on every test impression: CVR AUC over all impressions (label:
   ``would_convert`` on the synthetic set, the conversion label on MovieLens where unclicked
   impressions never convert), CTCVR AUC (naive: ESMM's pCTR x the naive pCVR) and CVR AUC on
   clicked rows (the classic protocol). Synthetic ``synthetic-selection-bias`` data and the
   MovieLens-100k impressions.
3. Loss weighting: two regression tasks whose losses differ 100x (label scales 1 and 10,
   correlation 0), SharedBottom with fixed equal weights, uncertainty weighting and GradNorm; test
   MSE of each task (noise floors 0.25 and 25).
4. MovieLens-100k impressions with the real trainer (1 rank, ``configs/multitask/*_ml100k.yaml``):
   all four models on click + conversion, and PLE on click + rating (regression, uncertainty
   weighting) as its config has it.
Data sets are made as needed (MovieLens from ``data/raw/ml-100k``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from models_ranking import _config, _run  # noqa: E402
from models_recall import replace_section  # noqa: E402

HEADING = "Multi-task"
CONFIGS = ROOT / "configs/multitask"
SHARED_BOTTOM_SYNTHETIC = {"hidden_units": [128], "task_hidden_units": [16], "num_tasks": 2, "embedding_dim": 8}
NAIVE_CVR = {"synthetic": {"hidden_units": [32], "task_hidden_units": [16], "num_tasks": 1, "embedding_dim": 8},
             "ml100k": {"features": ["user_id", "item_id", "gender", "age", "occupation", "zip3", "genres", "year"],
                        "hidden_units": [64], "task_hidden_units": [32], "num_tasks": 1, "embedding_dim": 16}}
REGRESSION = {"hidden_units": [16], "task_hidden_units": [8], "task_types": ["regression", "regression"],
              "embedding_dim": 8}
NOTES = """\
**ESMM** (`multitask/esmm.py`, `model.name: esmm`): `features`, `hidden_units` (a dense MLP shared by
both towers; empty, the paper's setting, shares only the embeddings), `tower_units`, `embedding_dim`,
`activation`, `dropout_rates`, `tower_dropout_rates`. Logits `[B, 2]` = (logit pCTR, logit pCTCVR) with
pCTCVR = pCTR x pCVR computed in log space; the task labels them `click` and `conversion` (= click
and conversion) on every impression, so the CVR tower only learns through pCTCVR over the entire
space. `extras["p_cvr"]` is pCVR: `bigrec predict` writes `score_click` (pCTR), `score_conversion`
(pCTCVR) and `p_cvr`. A conversion of 1 where click is 0 is rejected before training.
**PLE** (`multitask/ple.py`, `model.name: ple`): `features`, `expert_units`, `num_experts` (per task
and layer), `num_layers`, `num_shared_experts`, `task_types` (or `num_tasks`), `tower_units`,
`expert_activation`, `gate_activation`, dropout rates, `embedding_dim`. Each extraction layer has a
softmax gate per task over its own and the shared experts and (except the last) a shared gate over
all experts feeding the next layer's shared input; towers read the last layer's task outputs.

**Tasks**: `model.task_types` gives each task `binary` (BCE; AUC, logloss) or `regression` (MSE; MSE,
MAE); validation reports `<label>/<metric>` per task over all ranks plus the mean of each metric,
TensorBoard gets `train/loss/<label>`, `train/weight/<label>` every `trainer.log_every` steps and
`valid/<label>/<metric>` per epoch, and `trainer.early_stopping.metric` names one task's metric or
the mean. `task.loss_weighting` is `fixed` (`task.loss_weights`), `uncertainty` (learned
log-variances, Kendall et al. 2018) or `gradnorm` (`{name: gradnorm, alpha: 1.5}`; gradient norms
on the model's `last_shared_layer()`: SharedBottom's last bottom layer, MMoE's experts' last layers,
PLE's last shared experts, ESMM's shared MLP when it has one). Data: `bigrec data
synthetic-selection-bias` (clicks from user/item latents, conversion observed only after a click,
`would_convert` the truth over all impressions), `bigrec data movielens-impressions` (labels
`click`, `conversion`, `rating` = the rating or 0 when unrated).
"""


def _spread(values: list[float], digits: int = 4) -> str:
    mean = statistics.fmean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {spread:.{digits}f}"


def _model_params(name: str) -> dict:
    params = dict(_config(CONFIGS / f"{name}_synthetic.yaml", []).model.params)
    params.pop("name", None)
    return params


def correlation_sweep(seeds: list[int], tmp: Path) -> list[str]:
    from bigrec.data.synthetic_multitask import generate_multitask
    from model_training import fit_and_evaluate

    models = {"SharedBottom": ("shared_bottom", SHARED_BOTTOM_SYNTHETIC),
              "MMoE": ("mmoe", {**_model_params("mmoe"), "tower_units": [16]}), "PLE": ("ple", _model_params("ple"))}
    lines = ["| correlation | model | task1 AUC | task2 AUC | mean AUC |", "|---|---|---|---|---|"]
    for rho in (0.0, 0.5, 1.0):
        results: dict[str, list[dict]] = {m: [] for m in models}
        for seed in seeds:
            data = tmp / f"multitask_{rho}_{seed}"
            generate_multitask(data, rows=60_000, correlation=rho, seed=seed, row_group_size=8192)
            for label, (name, params) in models.items():
                results[label].append(fit_and_evaluate(data, name, params, epochs=2, seed=seed))
        for label, runs in results.items():
            lines.append(f"| {rho:g} | {label} | " + " | ".join(_spread([r[k] for r in runs])
                                                                  for k in ("task1/auc", "task2/auc", "auc")) + " |")
            print(lines[-1], flush=True)
    return lines


def _selection_bias_run(data: Path, esmm_params: dict, naive_params: dict, truth: str, seed: int,
                        epochs: int, lr: float) -> dict[str, float]:
    """ESMM and the naive CVR model on one data set; AUCs over every test impression."""
    import numpy as np
    import pyarrow.parquet as pq

    from bigrec.config import TaskConfig
    from bigrec.data.synthetic import roc_auc
    from model_training import fit, predict

    esmm, _ = fit(data, "esmm", esmm_params, epochs=epochs, lr=lr, seed=seed)
    naive, _ = fit(data, "shared_bottom", naive_params, epochs=epochs, lr=lr, seed=seed,
                   task=TaskConfig(labels=["conversion"]), train_filter="click")
    got, naive_cvr = predict(esmm, data), predict(naive, data)["score"]
    test = pq.read_table(data / "test.parquet")
    label = test.column(truth).to_numpy()
    click, conversion = test.column("click").to_numpy(), test.column("conversion").to_numpy()
    if not np.array_equal(got["click"], click):
        raise RuntimeError("prediction rows are not the test rows in order")
    clicked = click > 0
    return {"esmm_cvr": roc_auc(got["p_cvr"], label), "naive_cvr": roc_auc(naive_cvr, label),
            "esmm_ctcvr": roc_auc(got["score_conversion"], conversion),
            "naive_ctcvr": roc_auc(got["score_click"] * naive_cvr, conversion),
            "esmm_clicked": roc_auc(got["p_cvr"][clicked], conversion[clicked]),
            "naive_clicked": roc_auc(naive_cvr[clicked], conversion[clicked]),
            "ctr": roc_auc(got["score_click"], click)}


def selection_bias(seeds: list[int], tmp: Path, impressions: Path) -> list[str]:
    from bigrec.data.synthetic_selection_bias import generate_selection_bias

    esmm_synthetic = _model_params("esmm")
    esmm_ml = dict(_config(CONFIGS / "esmm_ml100k.yaml", []).model.params)
    runs: dict[str, list[dict]] = {"synthetic": [], "ml100k": []}
    for seed in seeds:
        data = tmp / f"selection_bias_{seed}"
        generate_selection_bias(data, rows=100_000, embedding_dim=8, seed=seed)
        runs["synthetic"].append(_selection_bias_run(data, esmm_synthetic, NAIVE_CVR["synthetic"], "would_convert",
                                                     seed, epochs=2, lr=3e-3))
        runs["ml100k"].append(_selection_bias_run(impressions, esmm_ml, NAIVE_CVR["ml100k"], "conversion", seed,
                                                  epochs=2, lr=1e-3))
        print(seed, runs["synthetic"][-1], runs["ml100k"][-1], flush=True)
    names = {"synthetic": "synthetic selection bias (CVR truth: `would_convert`)",
             "ml100k": "MovieLens-100k impressions (CVR label: conversion, 0 when unclicked)"}
    lines = ["| data | model | CVR AUC, all impressions | CTCVR AUC | CVR AUC, clicked rows | CTR AUC |",
             "|---|---|---|---|---|---|"]
    for key, results in runs.items():
        for model, prefix in (("ESMM", "esmm"), ("naive CVR (clicked rows only)", "naive")):
            ctr = _spread([r["ctr"] for r in results]) if prefix == "esmm" else "(ESMM's pCTR)"
            lines.append(f"| {names[key]} | {model} | {_spread([r[f'{prefix}_cvr'] for r in results])} | "
                         f"{_spread([r[f'{prefix}_ctcvr'] for r in results])} | "
                         f"{_spread([r[f'{prefix}_clicked'] for r in results])} | {ctr} |")
    return lines


def loss_weighting(seeds: list[int], tmp: Path) -> list[str]:
    from bigrec.config import TaskConfig
    from bigrec.data.synthetic_multitask import generate_multitask
    from model_training import fit_and_evaluate

    strategies = {"fixed, equal": "fixed", "uncertainty": "uncertainty", "GradNorm (alpha 1.5)": "gradnorm"}
    results: dict[str, list[dict]] = {s: [] for s in strategies}
    for seed in seeds:
        data = tmp / f"scaled_{seed}"
        generate_multitask(data, rows=60_000, correlation=0.0, seed=seed, regression_scales=(1.0, 10.0))
        for label, spec in strategies.items():
            results[label].append(fit_and_evaluate(data, "shared_bottom", REGRESSION, epochs=8, seed=seed,
                                                   task=TaskConfig(loss_weighting=spec)))
            print(label, seed, results[label][-1], flush=True)
    lines = ["| weighting | small task MSE (floor 0.25) | large task MSE (floor 25) |", "|---|---|---|"]
    lines += [f"| {label} | {_spread([r['task1/mse'] for r in runs], 3)} | {_spread([r['task2/mse'] for r in runs], 2)} |"
              for label, runs in results.items()]
    return lines


def movielens(seeds: list[int], tmp: Path, impressions: Path, epochs: int | None) -> list[str]:
    extra = [f"data.path={impressions}"] + ([f"trainer.epochs={epochs}"] if epochs else [])
    click_conversion = ["task.labels=[click,conversion]"]
    runs: list[tuple[str, str, list[str]]] = [
        ("SharedBottom", "mmoe", click_conversion), ("ESMM", "esmm", click_conversion),
        ("MMoE", "mmoe", click_conversion),
        ("PLE", "ple", click_conversion + ["model.task_types=[binary,binary]", "task.loss_weighting=fixed",
                                           "trainer.early_stopping.metric=conversion/auc"]),
        ("PLE, click + rating (regression)", "ple", [])]
    shared_bottom = {"name": "shared_bottom", "features": NAIVE_CVR["ml100k"]["features"], "hidden_units": [128],
                     "task_hidden_units": [32], "num_tasks": 2, "dropout_rates": 0.1, "tower_dropout_rates": 0.1,
                     "embedding_dim": 16}
    lines = ["| model (config) | labels | test metrics |", "|---|---|---|"]
    for label, config, overrides in runs:
        results = []
        for seed in seeds:
            model = shared_bottom if label == "SharedBottom" else None
            results.append(_run(CONFIGS / f"{config}_ml100k.yaml", extra + overrides + [f"trainer.seed={seed}"],
                                str(tmp / f"ml_{config}_{len(results)}_{label[:3]}"), model))
        keys = [k for k in results[0] if "/" in k]
        names = sorted({k.split("/")[0] for k in keys}, key=lambda n: ["click", "conversion", "rating"].index(n))
        source = "`mmoe_ml100k.yaml` with a SharedBottom model" if label == "SharedBottom" else f"`{config}_ml100k.yaml`"
        lines.append(f"| {label} ({source}) | {', '.join(names)} | "
                     + "; ".join(f"{k} {_spread([r[k] for r in results])}" for k in keys) + " |")
        print(lines[-1], flush=True)
    return lines


def ensure_impressions() -> Path:
    """The MovieLens-100k impressions (prepared from ``data/raw/ml-100k`` when missing)."""
    from bigrec.data.movielens_impressions import prepare_impressions

    impressions = ROOT / "data/ml-100k/impressions"
    if not (impressions / "schema.json").exists():
        prepare_impressions(ROOT / "data/raw/ml-100k", impressions)
    return impressions


PARTS = ("correlation", "selection_bias", "weighting", "movielens")


def run_parts(seeds: list[int], epochs: int | None, parts=PARTS, cache: Path | None = None) -> dict[str, list[str]]:
    """The tables of ``parts`` (Markdown lines each). With ``cache``, each finished table is kept
    in ``cache/<part>-<seeds>-<epochs>.json`` and reused, so a long run resumes after a failure."""
    sys.path.insert(0, str(ROOT / "tests"))
    impressions = ensure_impressions()
    tables = {}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        runs = {"correlation": lambda: correlation_sweep(seeds, tmp),
                "selection_bias": lambda: selection_bias(seeds, tmp, impressions),
                "weighting": lambda: loss_weighting(seeds, tmp),
                "movielens": lambda: movielens(seeds, tmp, impressions, epochs)}
        for part in parts:
            path = None if cache is None else cache / f"{part}-{len(seeds)}-{epochs or 'config'}.json"
            if path is not None and path.exists():
                tables[part] = json.loads(path.read_text())
                continue
            tables[part] = runs[part]()
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(tables[part]))
    return tables


def quality(num_seeds: int = 3, epochs: int | None = None, cache: Path | None = None) -> str:
    """The whole "Multi-task" section of docs/models.md."""
    tables = run_parts(list(range(num_seeds)), epochs, cache=cache)
    epochs_text = f"{epochs} epochs" if epochs else "each config's epochs"
    return "\n".join([
        NOTES, f"Regenerated by `python tools/bench/models_multitask.py` ({num_seeds} seeds: mean ± standard "
        "deviation).", "",
        "**Task correlation** (synthetic two-task data, 60,000 rows, 2 epochs, in-process Adam; SharedBottom "
        "with a 128-unit bottom, MMoE (8 experts of 16) and PLE (2 layers of 2 + 2 task and 2 shared experts of "
        "16) as in their `*_synthetic.yaml`, all of about the same size, every tower 16 units):", "",
        *tables["correlation"], "",
        "**Sample-selection bias**: ESMM against a CVR model of the CVR tower's size trained on clicked rows "
        "only (the naive approach), both scoring every test impression; 2 epochs each, in-process.", "",
        *tables["selection_bias"], "",
        "**Loss weighting**: two regression tasks whose losses differ 100x (labels scaled 1 and 10, correlation "
        "0), SharedBottom with a 16-unit bottom, 8 epochs.", "", *tables["weighting"], "",
        f"**MovieLens-100k impressions** (real trainer, 1 rank, {epochs_text} and early stopping; test split):", "", *tables["movielens"]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None, help="MovieLens runs: override the configs' epochs")
    parser.add_argument("--only", choices=PARTS, default=None, help="run one part and print it (docs/ untouched)")
    parser.add_argument("--print-only", action="store_true", help="print the section, do not edit docs/")
    parser.add_argument("--cache", type=Path, default=None, help="keep / reuse each finished table here")
    args = parser.parse_args()
    from bigrec.logs import quiet_third_party

    quiet_third_party()
    if args.only:
        print("\n".join(run_parts(list(range(args.seeds)), args.epochs, [args.only], args.cache)[args.only]))
        return
    body = quality(args.seeds, args.epochs, args.cache)
    print(body)
    if not args.print_only:
        replace_section(ROOT / "docs/models.md", HEADING, body)


if __name__ == "__main__":
    main()
