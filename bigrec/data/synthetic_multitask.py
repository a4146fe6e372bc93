"""Synthetic two-task click data with a correlation knob (after Ma et al., KDD 2018, section 3).

``generate_multitask(output_dir, rows, correlation=rho)`` writes ``train/valid/test.parquet``
and ``schema.json``. Each row has a latent ``x ~ N(0, I_d)``; its first
``num_sparse`` coordinates are given only as bucket ids (``sparse_j``, quantile
buckets, so a model must learn them through embedding tables) and the rest as
``dense_j`` columns. Two unit vectors ``u1, u2`` with ``cos(u1, u2) = rho``
define the tasks::

    z_t = u_t . x + sum_m sin(alpha_m * u_t . x + beta_m)      (m = 1..num_sin)
    task_t = Bernoulli(sigmoid(scale * standardise(z_t)))

so ``rho`` controls how related the tasks are (1: the same task; 0: unrelated
directions). Labels are ``task1`` and ``task2``. The AUC of each planted logit
(the Bayes-optimal ranking) is recorded as ``bayes_auc_estimate``.

With ``regression_scales=(s1, s2)`` the tasks are regression instead:
``task_t = s_t * (standardise(z_t) + noise * N(0, 1))``, so the two MSE losses
differ in scale by ``(s2 / s1)^2`` (the loss-weighting benchmark); the noise-free
MSE floor ``(s_t * noise)^2`` is recorded as ``mse_floor``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from bigrec.data.parquet_io import SPLITS, write_split_dir
from bigrec.data.synthetic import roc_auc, split_sizes
from bigrec.features import DenseFeature, Schema, SparseFeature

GENERATOR = "synthetic_multitask_v1"
LABELS = ("task1", "task2")


def task_directions(dim: int, correlation: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors in R^dim with cosine ``correlation``."""
    if not -1.0 <= correlation <= 1.0:
        raise ValueError(f"correlation must be in [-1, 1], got {correlation}")
    basis, _ = np.linalg.qr(rng.normal(size=(dim, 2)))
    e1, e2 = basis[:, 0], basis[:, 1]
    return e1, correlation * e1 + np.sqrt(1.0 - correlation ** 2) * e2


def build_schema(num_sparse: int, num_dense: int, num_buckets: int, embedding_dim: int = 16,
                 metadata: dict | None = None) -> Schema:
    features = [SparseFeature(f"sparse_{j}", num_buckets, embedding_dim) for j in range(num_sparse)]
    features += [DenseFeature(f"dense_{j}") for j in range(num_dense)]
    return Schema(features, labels=list(LABELS), metadata=dict(metadata or {}))


def generate_multitask(output_dir: str | Path, rows: int, correlation: float = 0.0, num_sparse: int = 8,
                       num_dense: int = 8, num_buckets: int = 32, num_sin: int = 10, scale: float = 3.0,
                       seed: int = 0, valid_fraction: float = 0.1, test_fraction: float = 0.1,
                       embedding_dim: int = 16, row_group_size: int = 8192,
                       regression_scales: tuple[float, float] | None = None, noise: float = 0.5) -> Schema:
    """Write the data set (see the module docstring) and return its schema."""
    if num_sparse < 0 or num_dense < 0 or num_sparse + num_dense < 1:
        raise ValueError("need at least one sparse or dense feature")
    if num_buckets < 2:
        raise ValueError(f"num_buckets must be >= 2, got {num_buckets}")
    dim = num_sparse + num_dense
    params = np.random.default_rng([int(seed), 0x7A5C])
    directions = task_directions(dim, correlation, params)
    alpha, beta = params.normal(size=num_sin), params.normal(size=num_sin)
    edges = np.quantile(params.normal(size=200_000), np.linspace(0, 1, num_buckets + 1)[1:-1])

    def planted(x: np.ndarray) -> list[np.ndarray]:
        out = []
        for u in directions:
            p = x @ u
            out.append(p + np.sin(np.outer(p, alpha) + beta).sum(axis=1))
        return out

    calibration = planted(params.normal(size=(100_000, dim)))
    center = [z.mean() for z in calibration]
    spread = [z.std() or 1.0 for z in calibration]

    sizes = split_sizes(int(rows), valid_fraction, test_fraction)
    tables, aucs = {}, {label: {} for label in LABELS}
    for index, split in enumerate(SPLITS):
        rng = np.random.default_rng([int(seed), index])
        n = sizes[split]
        x = rng.normal(size=(n, dim))
        columns: dict[str, pa.Array] = {}
        for j in range(num_sparse):
            columns[f"sparse_{j}"] = pa.array(np.searchsorted(edges, x[:, j]), pa.int64())
        for j in range(num_dense):
            columns[f"dense_{j}"] = pa.array(x[:, num_sparse + j].astype(np.float32), pa.float32())
        for t, (label, z) in enumerate(zip(LABELS, planted(x))):
            standard = (z - center[t]) / spread[t]
            if regression_scales is not None:
                y = (regression_scales[t] * (standard + noise * rng.normal(size=n))).astype(np.float32)
            else:
                y = (rng.random(n) < 1.0 / (1.0 + np.exp(-scale * standard))).astype(np.float32)
            columns[label] = pa.array(y, pa.float32())
            aucs[label][split] = roc_auc(standard, y) if n and regression_scales is None else None
        tables[split] = pa.table(columns)
    test = tables["test"]
    label_corr = float(np.corrcoef(test.column(LABELS[0]).to_numpy(), test.column(LABELS[1]).to_numpy())[0, 1]) \
        if test.num_rows > 1 else None
    metadata = {"generator": GENERATOR, "seed": int(seed), "rows": sizes, "correlation": correlation,
                "regression_scales": None if regression_scales is None else [float(v) for v in regression_scales],
                "mse_floor": None if regression_scales is None else [float((v * noise) ** 2) for v in regression_scales],
                "num_sin": num_sin, "scale": scale, "num_buckets": num_buckets,
                "label_correlation_test": None if label_corr is None else round(label_corr, 4),
                "bayes_auc_estimate": {label: None if aucs[label]["test"] is None else round(aucs[label]["test"], 4)
                                       for label in LABELS}}
    schema = build_schema(num_sparse, num_dense, num_buckets, embedding_dim, metadata)
    write_split_dir(output_dir, tables, schema, row_group_size)
    return schema
