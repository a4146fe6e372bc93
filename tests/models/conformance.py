"""What the conformance suite runs for every registered model (importable by spawned ranks).

Each model brings ``configs/<family>/<name>_synthetic.yaml``; the suite trains it on a
tiny copy of that config's data set (:data:`bigrec.testing.SYNTHETIC_SETS`), on 1 rank
and on 2 ranks with every table split row-wise over both, from the same initial
weights and on the same global batches.
"""

from __future__ import annotations

import importlib
import shutil
import traceback
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
ROWS_PER_RANK_BATCH = 64
STEPS = 6


def synthetic_config_path(model: str) -> Optional[Path]:
    """``configs/<family>/<model>_synthetic.yaml``, or None."""
    found = sorted(ROOT.glob(f"configs/*/{model}_synthetic.yaml"))
    return found[0] if found else None


def data_set_name(config_path: Path) -> str:
    """The synthetic set a config reads: the last component of its ``data.path``."""
    from bigrec.config import load_config

    return Path(load_config(config_path).data.path).name


def model_test_module(model: str):
    """``tests/models/test_<model>.py`` as a module (None when absent)."""
    if not (ROOT / "tests" / "models" / f"test_{model}.py").is_file():
        return None
    return importlib.import_module(f"tests.models.test_{model}")


def parity_overrides(model: str) -> dict:
    """Config sections to update for the parity run (``PARITY_OVERRIDES`` of the model's test file).

    E.g. ``{"model": {"activation": "prelu"}}``: models with batch statistics (Dice, batch
    norm) see per-rank batches, so they match 1 rank only with another activation; and
    ``{"task": {"options": {"loss": "full"}}}``: in-batch negatives are per rank by nature.
    """
    module = model_test_module(model)
    return dict(getattr(module, "PARITY_OVERRIDES", {}) if module else {})


def write_parity_data(source: Path, one_rank: Path, two_ranks: Path, train: str = "train.parquet") -> None:
    """The same ``train`` rows twice: in file order for 2 ranks (rank r reads the r-th half),
    and reordered for 1 rank so that its batch k is the union of the ranks' batches k.
    Every other file of the data set (schema, valid split, item catalogue...) is copied.
    ``train``: the config's training file (``train_sequences.parquet`` for one-pass sequence models)."""
    rows_per_rank = ROWS_PER_RANK_BATCH * STEPS
    table = pq.read_table(source / train)
    if table.num_rows < 2 * rows_per_rank:
        raise ValueError(f"{source}: {table.num_rows} train rows, the parity run needs {2 * rows_per_rank}")
    table = table.slice(0, 2 * rows_per_rank)
    order = np.concatenate([
        np.arange(r * rows_per_rank + k * ROWS_PER_RANK_BATCH, r * rows_per_rank + (k + 1) * ROWS_PER_RANK_BATCH)
        for k in range(STEPS) for r in range(2)])
    for target, rows in ((one_rank, table.take(pa.array(order))), (two_ranks, table)):
        target.mkdir(parents=True)
        for path in source.iterdir():
            if path.name not in (train, "test.parquet"):
                (shutil.copytree if path.is_dir() else shutil.copy)(path, target / path.name)
        pq.write_table(rows, target / train, row_group_size=500)


def parity_config(model: str, data_dir: str, out_dir: str, batch_size: int, sharding_type: str):
    """The model's synthetic config, cut down to a short deterministic parity run."""
    from bigrec.config import config_from_dict, load_config

    raw = load_config(synthetic_config_path(model)).to_dict()
    for section, values in parity_overrides(model).items():
        raw[section].update(values)
    raw["data"].update({"path": data_dir, "batch_size": batch_size, "eval_batch_size": 1000, "test": None,
                        "shuffle_buffer": 0, "num_workers": 0, "valid": "valid.parquet",
                        "schema": "schema.json"})
    raw["trainer"].update({"epochs": 1, "output_dir": out_dir, "progress_bar": False, "seed": 0,
                           "max_steps_per_epoch": STEPS, "resume": "none", "checkpoint_every_steps": 0})
    raw["sharding"].update({"sharding_types": [sharding_type], "print_plan": False, "plan": None, "tables": {}})
    return config_from_dict(raw)


def train_zoo(data_dirs: dict[str, str], out_dir: str, batch_size: int, sharding_type: str) -> dict:
    """On every rank: each model's STEPS global mean losses, validation metrics and placement.

    A model that fails returns ``{"error": traceback}`` instead, so one broken model
    does not hide the others' results.
    """
    from bigrec.testing import train_from_seed

    results = {}
    for model, data_dir in data_dirs.items():
        try:
            config = parity_config(model, data_dir, str(Path(out_dir) / model), batch_size, sharding_type)
            results[model] = train_from_seed(config, STEPS)
        except Exception:  # noqa: BLE001 - reported per model by the test
            results[model] = {"error": traceback.format_exc()}
    return results
