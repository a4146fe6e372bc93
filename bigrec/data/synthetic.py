"""Synthetic Criteo-like click data with a planted, learnable signal.

``generate_criteo_like(output_dir, rows)`` writes::

    OUTPUT/train.parquet, valid.parquet, test.parquet, schema.json

with columns ``dense_0..dense_12`` (float32, ``log1p`` of log-normal counts, so
non-negative like Criteo's integer features after ``log1p``), ``sparse_0..sparse_25``
(int64 ids in ``[0, cardinality)``, Zipf-distributed per column: rank ``r`` has
probability ``∝ (r + 1) ** -s``, ranks mapped to ids by a fixed random permutation)
and ``label`` (float32, 0/1).

The label is drawn as ``Bernoulli(sigmoid(logit))`` with::

    logit = sum_c w_c[sparse_c] + sum_j beta_j * (dense_j - center_j) / scale_j + bias

over a handful of low/mid-cardinality sparse columns ``c`` and a few dense
columns ``j``. The per-id weight tables ``w_c`` come from a fixed seeded
generator and are standardised under the column's Zipf distribution; ``bias`` is
calibrated so about 25% of labels are positive. Everything is a function of
``seed`` and the cardinalities, so :func:`true_logits` recomputes the planted logit
from any rows and their ``schema.json``; the AUC of that logit (the Bayes-optimal
ranking) is about 0.85 with the defaults, recorded as ``bayes_auc_estimate`` in the
schema metadata.

Rows are generated and written in chunks (``ParquetWriter``), so memory stays at
one chunk whatever ``rows`` is. The splits are independent draws from the same
distribution: the first ``1 - valid_fraction - test_fraction`` of rows is train.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pyarrow as pa

from bigrec.data.parquet_io import SPLITS, ChunkedParquetWriter, write_schema
from bigrec.features import DenseFeature, Schema, SparseFeature

NUM_DENSE = 13
NUM_SPARSE = 26
DEFAULT_MIN_CARDINALITY = 10
DEFAULT_MAX_CARDINALITY = 100_000
DEFAULT_ROW_GROUP_SIZE = 65536
DEFAULT_CHUNK_ROWS = 262144
LABEL = "label"
GENERATOR = "synthetic_criteo_v1"

# Planted-signal constants (part of the generator's definition: changing them
# changes the data; bump GENERATOR when you do).
_NUM_SIGNAL_SPARSE = 6
_SPARSE_SCALE = 0.9  # std of each signal column's contribution to the logit
_SIGNAL_DENSE = (0, 3, 6, 9)
_DENSE_WEIGHT = 0.6
_TARGET_POSITIVE_RATE = 0.25
_CALIBRATION_ROWS = 200_000
_ZIPF_EXPONENT_RANGE = (1.05, 1.25)


def dense_names(num_dense: int = NUM_DENSE) -> list[str]:
    return [f"dense_{i}" for i in range(num_dense)]


def sparse_names(num_sparse: int = NUM_SPARSE) -> list[str]:
    return [f"sparse_{i}" for i in range(num_sparse)]


def default_cardinalities(max_cardinality: int = DEFAULT_MAX_CARDINALITY,
                          num_sparse: int = NUM_SPARSE,
                          min_cardinality: int = DEFAULT_MIN_CARDINALITY) -> list[int]:
    """Geometrically spread cardinalities from ``min_cardinality`` to ``max_cardinality``."""
    if max_cardinality < 1:
        raise ValueError(f"max_cardinality must be >= 1, got {max_cardinality}")
    low = min(min_cardinality, max_cardinality)
    return [int(round(c)) for c in np.geomspace(low, max_cardinality, num_sparse)]


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve (ties get average ranks); NaN with one class only."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel() > 0.5
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], sorted_scores.size]
    ranks = np.empty(scores.size, dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


@dataclass
class PlantedModel:
    """The data distribution: per-column Zipf samplers, dense laws, the planted logit."""

    seed: int
    cardinalities: list[int]
    num_dense: int
    zipf_exponents: list[float]
    cdfs: list[np.ndarray]  # cumulative Zipf probabilities over ranks
    rank_to_id: list[np.ndarray]  # permutation: rank -> id
    dense_mu: np.ndarray
    dense_sigma: np.ndarray
    signal_sparse: list[int]
    sparse_weights: dict[int, np.ndarray]  # column -> weight per id
    signal_dense: list[int]
    dense_weights: np.ndarray
    dense_center: np.ndarray
    dense_scale: np.ndarray
    bias: float = 0.0
    positive_rate_estimate: float = float("nan")
    bayes_auc_estimate: float = float("nan")

    # ------------------------------------------------------------- sampling
    def sample(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        """``n`` rows of features (no label)."""
        columns: dict[str, np.ndarray] = {}
        for j, name in enumerate(dense_names(self.num_dense)):
            counts = np.floor(rng.lognormal(self.dense_mu[j], self.dense_sigma[j], n))
            columns[name] = np.log1p(counts).astype(np.float32)
        for c, name in enumerate(sparse_names(len(self.cardinalities))):
            ranks = np.searchsorted(self.cdfs[c], rng.random(n), side="right")
            np.minimum(ranks, self.cardinalities[c] - 1, out=ranks)
            columns[name] = self.rank_to_id[c][ranks]
        return columns

    def logit(self, columns: Mapping[str, np.ndarray], include_bias: bool = True) -> np.ndarray:
        """The planted logit of rows given as ``name -> array`` (any extra columns ignored)."""
        n = len(next(iter(columns.values())))
        out = np.full(n, self.bias if include_bias else 0.0, dtype=np.float64)
        for c in self.signal_sparse:
            out += self.sparse_weights[c][np.asarray(columns[f"sparse_{c}"], dtype=np.int64)]
        for k, j in enumerate(self.signal_dense):
            x = np.asarray(columns[f"dense_{j}"], dtype=np.float64)
            out += self.dense_weights[k] * (x - self.dense_center[k]) / self.dense_scale[k]
        return out

    def sample_with_labels(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        columns = self.sample(rng, n)
        probability = _sigmoid(self.logit(columns))
        columns[LABEL] = (rng.random(n) < probability).astype(np.float32)
        return columns

    def metadata(self) -> dict:
        return {
            "generator": GENERATOR,
            "seed": self.seed,
            "cardinalities": list(self.cardinalities),
            "num_dense": self.num_dense,
            "zipf_exponents": [round(s, 6) for s in self.zipf_exponents],
            "signal": {
                "sparse_columns": [f"sparse_{c}" for c in self.signal_sparse],
                "sparse_scale": _SPARSE_SCALE,
                "dense_columns": [f"dense_{j}" for j in self.signal_dense],
                "dense_weights": self.dense_weights.tolist(),
                "bias": self.bias,
            },
            "positive_rate_estimate": round(self.positive_rate_estimate, 4),
            "bayes_auc_estimate": round(self.bayes_auc_estimate, 4),
        }


def planted_model(cardinalities: Sequence[int], seed: int = 0, num_dense: int = NUM_DENSE) -> PlantedModel:
    """The deterministic data distribution for ``cardinalities`` and ``seed``."""
    cardinalities = [int(c) for c in cardinalities]
    if not cardinalities or min(cardinalities) < 1:
        raise ValueError(f"cardinalities must be a non-empty list of ints >= 1, got {cardinalities}")
    if num_dense < 1:
        raise ValueError(f"num_dense must be >= 1, got {num_dense}")
    rng = np.random.default_rng([int(seed), 0x5EED])
    exponents = rng.uniform(*_ZIPF_EXPONENT_RANGE, size=len(cardinalities))
    cdfs, perms, probs = [], [], []
    for card, s in zip(cardinalities, exponents):
        p = (np.arange(1, card + 1, dtype=np.float64)) ** -s
        p /= p.sum()
        cdf = np.cumsum(p)
        cdf[-1] = 1.0
        cdfs.append(cdf)
        perms.append(rng.permutation(card).astype(np.int64))
        probs.append(p)
    dense_mu = rng.uniform(0.0, 3.0, size=num_dense)
    dense_sigma = rng.uniform(0.5, 1.5, size=num_dense)

    # Signal columns: low/mid cardinality ones, so a model can learn them.
    by_card = np.argsort(np.asarray(cardinalities), kind="stable")
    signal_sparse = sorted(int(c) for c in (by_card[1::3] if len(by_card) > 1 else by_card)[:_NUM_SIGNAL_SPARSE])
    sparse_weights = {}
    for c in signal_sparse:
        w = rng.normal(size=cardinalities[c])
        p_id = np.empty(cardinalities[c])
        p_id[perms[c]] = probs[c]  # probability of each id
        mean = float(p_id @ w)
        std = float(np.sqrt(p_id @ (w - mean) ** 2))
        sparse_weights[c] = (w - mean) / (std if std > 0 else 1.0) * _SPARSE_SCALE
    signal_dense = [j for j in _SIGNAL_DENSE if j < num_dense]
    dense_weights = _DENSE_WEIGHT * rng.choice([-1.0, 1.0], size=len(signal_dense))

    model = PlantedModel(
        seed=int(seed), cardinalities=cardinalities, num_dense=num_dense, zipf_exponents=exponents.tolist(),
        cdfs=cdfs, rank_to_id=perms, dense_mu=dense_mu, dense_sigma=dense_sigma,
        signal_sparse=signal_sparse, sparse_weights=sparse_weights, signal_dense=signal_dense,
        dense_weights=dense_weights, dense_center=np.zeros(len(signal_dense)),
        dense_scale=np.ones(len(signal_dense)))

    # Calibrate dense standardisation and the bias on a fixed sample.
    calibration = model.sample(np.random.default_rng([int(seed), 0xCA1]), _CALIBRATION_ROWS)
    for k, j in enumerate(signal_dense):
        x = calibration[f"dense_{j}"].astype(np.float64)
        model.dense_center[k] = float(x.mean())
        model.dense_scale[k] = float(x.std()) or 1.0
    z = model.logit(calibration, include_bias=False)
    low, high = -20.0, 20.0
    for _ in range(60):  # bisection: mean(sigmoid(z + b)) = target
        mid = 0.5 * (low + high)
        if _sigmoid(z + mid).mean() < _TARGET_POSITIVE_RATE:
            low = mid
        else:
            high = mid
    model.bias = 0.5 * (low + high)
    probability = _sigmoid(z + model.bias)
    labels = np.random.default_rng([int(seed), 0xAC]).random(z.size) < probability
    model.positive_rate_estimate = float(labels.mean())
    model.bayes_auc_estimate = roc_auc(z, labels)
    return model


def model_from_schema(schema: Schema) -> PlantedModel:
    """Rebuild the planted model of a generated data set from its schema metadata."""
    meta = schema.metadata
    if meta.get("generator") != GENERATOR:
        raise ValueError(f"schema was not written by {GENERATOR} (generator={meta.get('generator')!r})")
    return planted_model(meta["cardinalities"], meta["seed"], meta.get("num_dense", NUM_DENSE))


def true_logits(columns, schema: Schema) -> np.ndarray:
    """The planted logit of rows (a ``pa.Table`` or ``name -> array`` mapping)."""
    if isinstance(columns, pa.Table):
        columns = {name: columns.column(name).to_numpy() for name in columns.column_names}
    return model_from_schema(schema).logit(columns)


def build_schema(cardinalities: Sequence[int], num_dense: int = NUM_DENSE, embedding_dim: int = 16,
                 metadata: dict | None = None) -> Schema:
    features = [DenseFeature(name) for name in dense_names(num_dense)]
    features += [SparseFeature(name, int(card), embedding_dim, id_policy="error")
                 for name, card in zip(sparse_names(len(cardinalities)), cardinalities)]
    return Schema(features, labels=[LABEL], metadata=dict(metadata or {}))


def _arrow_schema(num_dense: int, num_sparse: int) -> pa.Schema:
    fields = [pa.field(n, pa.float32()) for n in dense_names(num_dense)]
    fields += [pa.field(n, pa.int64()) for n in sparse_names(num_sparse)]
    fields.append(pa.field(LABEL, pa.float32()))
    return pa.schema(fields)


def split_sizes(rows: int, valid_fraction: float, test_fraction: float) -> dict[str, int]:
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    for name, value in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    n_valid = int(round(rows * valid_fraction))
    n_test = int(round(rows * test_fraction))
    n_train = rows - n_valid - n_test
    if n_train < 1:
        raise ValueError(f"valid_fraction + test_fraction leave no training rows out of {rows}")
    return {"train": n_train, "valid": n_valid, "test": n_test}


def generate_criteo_like(
    output_dir: str | Path,
    rows: int,
    cardinalities: Sequence[int] | None = None,
    seed: int = 0,
    row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
    max_cardinality: int | None = None,
    num_dense: int = NUM_DENSE,
    embedding_dim: int = 16,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Schema:
    """Write a Criteo-like data set of ``rows`` rows to ``output_dir``; return its schema.

    ``cardinalities`` (one per sparse column; default 26 columns spread from 10 to
    ``max_cardinality`` or 100000) and ``seed`` fully determine the data.
    """
    if cardinalities is not None and max_cardinality is not None:
        raise ValueError("give cardinalities or max_cardinality, not both")
    if cardinalities is None:
        cardinalities = default_cardinalities(max_cardinality or DEFAULT_MAX_CARDINALITY)
    cardinalities = [int(c) for c in cardinalities]
    sizes = split_sizes(int(rows), valid_fraction, test_fraction)
    if row_group_size < 1 or chunk_rows < 1:
        raise ValueError("row_group_size and chunk_rows must be >= 1")
    chunk = max(row_group_size, (chunk_rows // row_group_size) * row_group_size)

    model = planted_model(cardinalities, seed, num_dense)
    arrow_schema = _arrow_schema(num_dense, len(cardinalities))
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    positives = {}
    for split_index, split in enumerate(SPLITS):
        positives[split] = 0
        with ChunkedParquetWriter(output_dir / f"{split}.parquet", arrow_schema, row_group_size) as writer:
            for chunk_index, start in enumerate(range(0, sizes[split], chunk)):
                n = min(chunk, sizes[split] - start)
                rng = np.random.default_rng([int(seed), 1 + split_index, chunk_index])
                columns = model.sample_with_labels(rng, n)
                positives[split] += int(columns[LABEL].sum())
                writer.write(pa.Table.from_pydict(columns, schema=arrow_schema))
            if sizes[split] == 0:
                writer.write(arrow_schema.empty_table())

    metadata = model.metadata()
    metadata.update({
        "rows": sizes,
        "positive_rate": {s: round(positives[s] / sizes[s], 4) if sizes[s] else None for s in SPLITS},
        "row_group_size": int(row_group_size),
    })
    schema = build_schema(cardinalities, num_dense, embedding_dim, metadata)
    write_schema(schema, output_dir)
    return schema


def split_counts(schema: Schema) -> str:
    """``{"train": rows, ...}`` of a generated set, from its schema's ``counts`` metadata."""
    import json

    return json.dumps({split: c["rows"] for split, c in schema.metadata["counts"].items()}) + " rows"


def rows_and_bayes_auc(schema: Schema) -> str:
    """Rows per split and the planted signal's Bayes AUC, from a generated set's metadata."""
    import json

    return f"{json.dumps(schema.metadata['rows'])}, Bayes AUC ~{schema.metadata['bayes_auc_estimate']}"


def run_generator(command: str, generate, args, summary=split_counts) -> int:
    """Run ``generate(args) -> Schema`` for ``bigrec data <command>`` and print ``summary(schema)``.

    Bad parameters (a ValueError of the generator) are one ConfigError naming the command.
    """
    import time

    from bigrec.errors import ConfigError

    started = time.perf_counter()
    try:
        schema = generate(args)
    except ValueError as exc:
        raise ConfigError(f"{command}: {exc}") from None
    print(f"{args.output}: {summary(schema)}, {time.perf_counter() - started:.2f}s")
    return 0
