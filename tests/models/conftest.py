"""Fixtures of the behaviour-sequence model tests: small order-dependent data and DIN's score on it."""

from __future__ import annotations

from pathlib import Path

import pytest

BEHAVIOR = {"item_id": "hist_item_ids", "item_cat": "hist_cat_ids"}
COMMON = {"features": ["user_id", "item_id", "item_cat"], "behavior_features": BEHAVIOR, "embedding_dim": 8,
          "hidden_units": [32, 16]}
FIT = {"epochs": 2, "batch_size": 64, "lr": 3e-3}  # the same budget for every model on the order data


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
