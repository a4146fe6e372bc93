"""Fixtures shared by the model proofs (planted-field data; behaviour-order data and DIN's score on it)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

BEHAVIOR = {"item_id": "hist_item_ids", "item_cat": "hist_cat_ids"}
COMMON = {"features": ["user_id", "item_id", "item_cat"], "behavior_features": BEHAVIOR, "embedding_dim": 8,
          "hidden_units": [32, 16]}
FIT = {"epochs": 2, "batch_size": 64, "lr": 3e-3}  # the same budget for every model on the order data


@pytest.fixture(scope="session")
def planted_fields(tmp_path_factory) -> Callable[..., Path]:
    """``planted_fields(signal, rows=50000)``: a ``synthetic_fields`` data set (seed 0), made once per session."""
    from bigrec.data.synthetic_fields import generate_fields

    made: dict[tuple[str, int], Path] = {}

    def get(signal: str, rows: int = 50000) -> Path:
        if (signal, rows) not in made:
            out = tmp_path_factory.mktemp(f"fields_{signal}_{rows}")
            generate_fields(out, rows=rows, signal=signal, seed=0, row_group_size=4096)
            made[signal, rows] = out
        return made[signal, rows]

    return get


@pytest.fixture(scope="session")
def order_data(tmp_path_factory) -> Path:
    """12k rows, 2 category pairs, histories of up to 9 kept to 6: Bayes AUC ~0.80."""
    from bigrec.data.synthetic_order import generate_order

    out = tmp_path_factory.mktemp("order")
    generate_order(out, rows=12000, num_items=100, num_categories=4, num_users=50, max_len=6, overflow=3, seed=0)
    return out


@pytest.fixture(scope="session")
def din_on_order(order_data) -> float:
    """DIN's test AUC on ``order_data`` (order-free pooling: about 0.5)."""
    from tests.model_training import fit_and_evaluate

    return fit_and_evaluate(order_data, "din", {**COMMON, "attention_units": [16], "activation": "prelu"},
                            **FIT)["auc"]
