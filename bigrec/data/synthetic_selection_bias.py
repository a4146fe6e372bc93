"""Synthetic impressions with planted sample-selection bias (ESMM's setting).

``generate_selection_bias(output_dir, rows)`` writes ``train/valid/test.parquet`` and
``schema.json``. Every user and item has a hidden latent vector (``p_u``, ``q_i`` in
``R^k``), seen by a model only through the ``user_id`` / ``item_id`` embeddings; each
impression also has ``num_dense`` observed context values ``c``. Per impression::

    click          ~ Bernoulli(sigmoid(click_scale * a . [p_u, q_i, c] + click_bias))
    would_convert  ~ Bernoulli(sigmoid(cvr_scale * b . [p_u, q_i, c] + cvr_bias))
    conversion     = click * would_convert        (a conversion is observed only after a click)

with unit directions ``cos(a, b) = correlation`` (default 0.8: what makes a click and what makes
a conversion are related, as in e-commerce). The click model is strong, so clicks concentrate on
a minority of users and items (~15% of impressions): a CVR model trained on clicked rows alone
sees a biased, sparse sample (a few clicked rows per id with the default 3,000 users and items
and 100,000 rows) of the space it is later asked to score -- the sample-selection bias and data
sparsity ESMM was built for. ``would_convert`` (what the user
would do after a click; known here only because the data are synthetic) is the third label, so
CVR can be scored over *all* impressions. Labels: ``click``, ``conversion``, ``would_convert``
(a multi-task model reads the first two by default).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from bigrec.data.parquet_io import SPLITS, write_split_dir
from bigrec.data.synthetic import roc_auc, split_sizes
from bigrec.data.synthetic_multitask import task_directions
from bigrec.features import DenseFeature, Schema, SparseFeature

GENERATOR = "synthetic_selection_bias_v1"
LABELS = ("click", "conversion", "would_convert")


def build_schema(num_users: int, num_items: int, num_dense: int, embedding_dim: int = 16,
                 metadata: dict | None = None) -> Schema:
    features = [SparseFeature("user_id", num_users, embedding_dim, side="user"),
                SparseFeature("item_id", num_items, embedding_dim, side="item")]
    features += [DenseFeature(f"context_{j}", side="context") for j in range(num_dense)]
    return Schema(features, labels=list(LABELS), metadata=dict(metadata or {}))


def generate_selection_bias(output_dir: str | Path, rows: int, num_users: int = 3000, num_items: int = 3000,
                            latent_dim: int = 4, num_dense: int = 2, correlation: float = 0.8,
                            click_scale: float = 2.5, click_bias: float = -3.0, cvr_scale: float = 2.0,
                            cvr_bias: float = 0.0, seed: int = 0, valid_fraction: float = 0.1,
                            test_fraction: float = 0.1, embedding_dim: int = 16,
                            row_group_size: int = 8192) -> Schema:
    """Write the data set (see the module docstring) and return its schema."""
    if min(num_users, num_items) < 2 or latent_dim < 1 or num_dense < 0:
        raise ValueError("need num_users, num_items >= 2, latent_dim >= 1 and num_dense >= 0")
    params = np.random.default_rng([int(seed), 0x55B])
    dim = 2 * latent_dim + num_dense
    a, b = task_directions(dim, correlation, params)
    users = params.normal(size=(num_users, latent_dim))
    items = params.normal(size=(num_items, latent_dim))
    sizes = split_sizes(int(rows), valid_fraction, test_fraction)
    tables, aucs, rates = {}, {}, {}
    for index, split in enumerate(SPLITS):
        rng = np.random.default_rng([int(seed), index])
        n = sizes[split]
        user = rng.integers(0, num_users, n)
        item = rng.integers(0, num_items, n)
        context = rng.normal(size=(n, num_dense))
        x = np.concatenate([users[user], items[item], context], axis=1)
        click_logit = click_scale * (x @ a) + click_bias
        cvr_logit = cvr_scale * (x @ b) + cvr_bias
        click = (rng.random(n) < 1 / (1 + np.exp(-click_logit))).astype(np.float32)
        would = (rng.random(n) < 1 / (1 + np.exp(-cvr_logit))).astype(np.float32)
        columns = {"user_id": pa.array(user, pa.int64()), "item_id": pa.array(item, pa.int64())}
        columns.update({f"context_{j}": pa.array(context[:, j].astype(np.float32)) for j in range(num_dense)})
        columns.update({"click": pa.array(click), "conversion": pa.array(click * would),
                        "would_convert": pa.array(would)})
        tables[split] = pa.table(columns)
        rates[split] = {"click": float(click.mean()) if n else None,
                        "cvr_given_click": float(would[click > 0].mean()) if click.any() else None,
                        "would_convert": float(would.mean()) if n else None}
        if split == "test" and n:
            ctcvr = 1 / (1 + np.exp(-click_logit)) / (1 + np.exp(-cvr_logit))
            aucs = {"click": roc_auc(click_logit, click), "would_convert": roc_auc(cvr_logit, would),
                    "conversion": roc_auc(ctcvr, click * would)}
    metadata = {"generator": GENERATOR, "seed": int(seed), "rows": sizes, "correlation": correlation,
                "rates": {k: {n: None if v is None else round(v, 4) for n, v in r.items()} for k, r in rates.items()},
                "bayes_auc_estimate": {k: round(v, 4) for k, v in aucs.items()}}
    schema = build_schema(num_users, num_items, num_dense, embedding_dim, metadata)
    write_split_dir(output_dir, tables, schema, row_group_size)
    return schema
