"""Synthetic multi-field click data with one planted interaction, for the ranking zoo's proofs.

``generate_fields(output_dir, rows, signal=...)`` writes ``train/valid/test.parquet`` and
``schema.json``. Every row has ``num_fields`` categorical fields ``field_0..`` (int64 ids,
uniform over ``[0, vocab_size)``) and ``num_noise_fields`` fields ``noise_0..`` (ids in
``[0, noise_vocab_size)``) that the label never reads. Each signal field has a per-id
first-order weight (std ``first_order``); on top of them the ``signal`` plants one interaction
of variance ``strength ** 2``:

``cross``     a degree-``cross_order`` cross ``dense_0 * dense_1 * ... `` of as many N(0, 1) dense
              columns: a bounded-degree polynomial that cross networks represent exactly
              (DCN, EDCN) while an MLP of the same size has to approximate the product.
``pair``      one field pair carries the interaction: ``<u[x_0], w[x_1]> / sqrt(k)`` (k-dim
              latent vectors); no other pair interacts (AFM's attention, FiBiNET's SENET).
``memorise``  a smooth low-rank part ``<u[x_0], w[x_1]> / sqrt(k)`` plus id-level exceptions:
              a random ``exception_rate`` of the (``field_0``, ``field_1``) cells gets an extra
              ``+-exception_strength``. The cross-product id ``field_0_x_field_1`` (=
              ``x_0 * vocab_size + x_1``) is a column too, so a linear model over it (WideDeep's
              wide part) can memorise the exceptions that embeddings generalise away.

Knobs left as None take the signal's preset (:data:`PRESETS`, what the proofs use). The
label is ``Bernoulli(sigmoid(logit))``. Everything is a function of ``seed`` and the knobs;
the AUC of the planted logit on the test split (the Bayes-optimal ranking) is recorded as
``bayes_auc_estimate`` in the schema metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from bigrec.data.cli_args import synthetic_parser
from bigrec.data.parquet_io import SPLITS, write_split_dir
from bigrec.data.synthetic import roc_auc, split_sizes
from bigrec.features import DenseFeature, Schema, SparseFeature

GENERATOR = "synthetic_fields_v1"
LABEL = "label"
# Per signal: the knobs of the data sets the proofs and configs use (data/synthetic/fields_<signal>).
PRESETS: dict[str, dict] = {
    "cross": {"num_fields": 6, "vocab_size": 100, "num_noise_fields": 0, "strength": 3.0},
    "pair": {"num_fields": 4, "vocab_size": 30, "num_noise_fields": 4, "noise_vocab_size": 500, "strength": 2.0},
    "memorise": {"num_fields": 4, "vocab_size": 50, "num_noise_fields": 0, "strength": 2.0},
}
SIGNALS = ("cross", "pair", "memorise")
CROSS_COLUMN = "field_0_x_field_1"
_LATENT_DIM = 4  # k of the pair signal
_MEMORISE_RANK = 2  # k of the memorise signal's smooth part


def field_names(num_fields: int) -> list[str]:
    return [f"field_{f}" for f in range(num_fields)]


def dense_names(num_dense: int) -> list[str]:
    return [f"dense_{j}" for j in range(num_dense)]


def noise_names(num_noise_fields: int) -> list[str]:
    return [f"noise_{f}" for f in range(num_noise_fields)]


@dataclass
class PlantedFields:
    """The planted logit: per-id first-order weights plus one interaction term."""

    signal: str
    first_order: list[np.ndarray]  # per signal field: weight per id
    interaction: Callable[[np.ndarray, np.ndarray], np.ndarray]  # ids [n, F], dense [n, Nd] -> [n]

    def logit(self, ids: np.ndarray, dense: np.ndarray) -> np.ndarray:
        """``ids [n, F]`` (signal fields) and ``dense [n, Nd]`` -> planted logit ``[n]``."""
        out = self.interaction(ids, dense)
        for f, weights in enumerate(self.first_order):
            out = out + weights[ids[:, f]]
        return out


def _standardised(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / (values.std() or 1.0)


def planted_fields(signal: str, num_fields: int, vocab_size: int, strength: float, first_order: float,
                   exception_rate: float, exception_strength: float, seed: int, cross_order: int = 3) -> PlantedFields:
    """The deterministic planted model of ``signal`` (see the module docstring)."""
    if signal not in SIGNALS:
        raise ValueError(f"signal must be one of {SIGNALS}, got '{signal}'")
    if num_fields < 2:
        raise ValueError(f"num_fields must be >= 2, got {num_fields}")
    if vocab_size < 2:
        raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
    if cross_order < 2:
        raise ValueError(f"cross_order must be >= 2, got {cross_order}")
    if not 0.0 <= exception_rate <= 1.0:
        raise ValueError(f"exception_rate must be in [0, 1], got {exception_rate}")
    rng = np.random.default_rng([int(seed), 0xF1E1D])
    weights = [first_order * _standardised(rng.normal(size=vocab_size)) for _ in range(num_fields)]

    if signal == "cross":
        def interaction(ids: np.ndarray, dense: np.ndarray) -> np.ndarray:
            return strength * dense[:, :cross_order].prod(axis=1)  # mean 0, variance 1
    else:
        k = _LATENT_DIM if signal == "pair" else _MEMORISE_RANK
        u, w = rng.normal(size=(vocab_size, k)), rng.normal(size=(vocab_size, k))
        exceptions = np.zeros((vocab_size, vocab_size))
        if signal == "memorise":
            cells = rng.random((vocab_size, vocab_size)) < exception_rate
            exceptions[cells] = exception_strength * rng.choice([-1.0, 1.0], size=int(cells.sum()))

        def interaction(ids: np.ndarray, dense: np.ndarray) -> np.ndarray:
            smooth = (u[ids[:, 0]] * w[ids[:, 1]]).sum(axis=1) / np.sqrt(k)
            return strength * smooth + exceptions[ids[:, 0], ids[:, 1]]

    return PlantedFields(signal, weights, interaction)


def build_schema(signal: str, num_fields: int, vocab_size: int, num_noise_fields: int, noise_vocab_size: int,
                 num_dense: int, embedding_dim: int = 16, metadata: dict | None = None) -> Schema:
    """``field_0`` is user-side, ``field_1`` item-side, the rest context."""
    sides = {0: "user", 1: "item"}
    features = [SparseFeature(name, vocab_size, embedding_dim, side=sides.get(f, "context"))
                for f, name in enumerate(field_names(num_fields))]
    if signal == "memorise":
        features.append(SparseFeature(CROSS_COLUMN, vocab_size * vocab_size, embedding_dim))
    features += [SparseFeature(name, noise_vocab_size, embedding_dim) for name in noise_names(num_noise_fields)]
    features += [DenseFeature(name) for name in dense_names(num_dense)]
    return Schema(features, labels=[LABEL], metadata=dict(metadata or {}))


def generate_fields(output_dir: str | Path, rows: int, signal: str = "cross", num_fields: int | None = None,
                    vocab_size: int | None = None, num_noise_fields: int | None = None,
                    noise_vocab_size: int | None = None, strength: float | None = None, first_order: float = 0.5,
                    exception_rate: float = 0.1, exception_strength: float = 3.0, cross_order: int = 3,
                    seed: int = 0, valid_fraction: float = 0.1, test_fraction: float = 0.1, embedding_dim: int = 16,
                    row_group_size: int = 8192) -> Schema:
    """Write the data set (see the module docstring) and return its schema."""
    if signal not in SIGNALS:
        raise ValueError(f"signal must be one of {SIGNALS}, got '{signal}'")
    preset = PRESETS[signal]
    num_fields = int(preset["num_fields"] if num_fields is None else num_fields)
    vocab_size = int(preset["vocab_size"] if vocab_size is None else vocab_size)
    num_noise_fields = int(preset["num_noise_fields"] if num_noise_fields is None else num_noise_fields)
    noise_vocab_size = int(preset.get("noise_vocab_size", vocab_size) if noise_vocab_size is None else noise_vocab_size)
    strength = float(preset["strength"] if strength is None else strength)
    if num_noise_fields < 0:
        raise ValueError(f"num_noise_fields must be >= 0, got {num_noise_fields}")
    if noise_vocab_size < 1:
        raise ValueError(f"noise_vocab_size must be >= 1, got {noise_vocab_size}")
    num_dense = cross_order if signal == "cross" else 0
    planted = planted_fields(signal, num_fields, vocab_size, strength, first_order, exception_rate,
                             exception_strength, seed, cross_order)
    sizes = split_sizes(int(rows), valid_fraction, test_fraction)
    tables, aucs = {}, {}
    for index, split in enumerate(SPLITS):
        rng = np.random.default_rng([int(seed), index])
        n = sizes[split]
        ids = rng.integers(0, vocab_size, size=(n, num_fields))
        noise = rng.integers(0, noise_vocab_size, size=(n, num_noise_fields))
        dense = rng.normal(size=(n, num_dense))
        logit = planted.logit(ids, dense)
        labels = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
        columns = {name: pa.array(ids[:, f], pa.int64()) for f, name in enumerate(field_names(num_fields))}
        if signal == "memorise":
            columns[CROSS_COLUMN] = pa.array(ids[:, 0] * vocab_size + ids[:, 1], pa.int64())
        columns.update({name: pa.array(noise[:, f], pa.int64()) for f, name in enumerate(noise_names(num_noise_fields))})
        columns.update({name: pa.array(dense[:, j].astype(np.float32), pa.float32())
                        for j, name in enumerate(dense_names(num_dense))})
        columns[LABEL] = pa.array(labels, pa.float32())
        tables[split] = pa.table(columns)
        aucs[split] = roc_auc(logit, labels) if n else None
    metadata = {"generator": GENERATOR, "seed": int(seed), "rows": sizes, "signal": signal,
                "num_fields": num_fields, "vocab_size": vocab_size, "num_noise_fields": num_noise_fields,
                "noise_vocab_size": noise_vocab_size, "strength": strength, "first_order": first_order,
                "positive_rate": round(float(tables["train"].column(LABEL).to_numpy().mean()), 4),
                "bayes_auc_estimate": None if aucs["test"] is None else round(aucs["test"], 4)}
    if signal == "memorise":
        metadata.update({"exception_rate": exception_rate, "exception_strength": exception_strength})
    if signal == "cross":
        metadata["cross_order"] = cross_order
    schema = build_schema(signal, num_fields, vocab_size, num_noise_fields, noise_vocab_size, num_dense, embedding_dim,
                          metadata)
    write_split_dir(output_dir, tables, schema, row_group_size)
    return schema


def add_cli(commands, positive_int) -> None:
    """Register ``bigrec data synthetic-fields`` on the ``bigrec data`` sub-parsers."""
    parser = synthetic_parser(commands, "synthetic-fields", "multi-field click data with one planted interaction: "
                                                            "cross (DCN, EDCN), pair (AFM, FiBiNET), memorise (WideDeep)",
                              rows=200_000)
    parser.add_argument("--signal", choices=SIGNALS, required=True, help="the planted interaction")
    parser.add_argument("--num-fields", type=positive_int, help="signal fields (default: the signal's preset)")
    parser.add_argument("--vocab-size", type=positive_int, help="ids per signal field (default: preset)")
    parser.add_argument("--noise-fields", type=int, help="fields the label never reads (default: preset)")
    parser.add_argument("--noise-vocab-size", type=positive_int, help="ids per noise field (default: preset)")
    parser.add_argument("--strength", type=float, help="std of the planted interaction's logit (default: preset)")
    parser.set_defaults(handler=_run_cli)


def _run_cli(args) -> int:
    from bigrec.data.synthetic import rows_and_bayes_auc, run_generator

    return run_generator("synthetic-fields", lambda args: generate_fields(args.output, args.rows, signal=args.signal, num_fields=args.num_fields,
                           vocab_size=args.vocab_size, num_noise_fields=args.noise_fields,
                           noise_vocab_size=args.noise_vocab_size, strength=args.strength, seed=args.seed,
                           embedding_dim=args.embedding_dim), args, rows_and_bayes_auc)
