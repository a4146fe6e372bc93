"""Synthetic item sequences of users with several disjoint interests (a planted multi-interest signal).

``generate_interests(output_dir, num_users, num_items)`` writes the leave-last-out
recall layout of :mod:`bigrec.data.synthetic_sequences` (``user_id``, ``item_id``,
``hist_item_ids``; ``item_id`` and ``hist_item_ids`` share table ``item``)::

    OUTPUT/train.parquet, valid.parquet, test.parquet, schema.json, items.parquet (the item catalogue)

Items ``1..num_items`` form ``num_clusters`` clusters of contiguous ids. Each user
holds ``interests`` distinct clusters drawn at random; every item of the user's
sequence comes from one of them, chosen uniformly and independently of the order
(no transition structure), drawn with a Zipf law inside the cluster, never
repeating an item of the user. The next item is therefore in *one* of several
unrelated clusters the history shows: one vector per user must cover all of them
at once, while one vector per interest (MIND) can point at each cluster.

Each user's last item is test, the one before valid, the rest train rows; a
sequence with fewer than 3 items is skipped and counted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bigrec.data.parquet_io import DEFAULT_ROW_GROUP_SIZE
from bigrec.data.synthetic_sequences import add_sequence_arguments, draw_item, run_generator, write_sequences
from bigrec.features import Schema

GENERATOR = "disjoint_interests_v1"


def _sequences(rng: np.random.Generator, lengths: np.ndarray, num_items: int, num_clusters: int, interests: int,
               zipf: float) -> list[np.ndarray]:
    """One item sequence per user, each item from one of the user's ``interests`` clusters."""
    bounds = np.linspace(0, num_items, num_clusters + 1).astype(np.int64)
    sequences = []
    for length in lengths:
        clusters = rng.choice(num_clusters, size=interests, replace=False)
        seen: set[int] = set()
        picks = rng.integers(interests, size=length)
        sequences.append(np.array([draw_item(rng, bounds, int(clusters[p]), seen, zipf) for p in picks],
                                  dtype=np.int64))
    return sequences


def generate_interests(output: str | Path, num_users: int = 5000, num_items: int = 2000, num_clusters: int = 100,
                       interests: int = 4, min_length: int = 8, max_length: int = 40, history_len: int = 50,
                       zipf: float = 1.2, seed: int = 0, embedding_dim: int = 32,
                       row_group_size: int = DEFAULT_ROW_GROUP_SIZE) -> Schema:
    """Write the multi-interest data set to ``output``; returns its schema (see the module doc)."""
    if not 1 <= num_clusters <= num_items:
        raise ValueError(f"num_clusters must be in [1, num_items], got {num_clusters}")
    if not 1 <= interests <= num_clusters:
        raise ValueError(f"interests must be in [1, num_clusters], got {interests}")
    if not 1 <= min_length <= max_length:
        raise ValueError(f"need 1 <= min_length <= max_length, got {min_length}, {max_length}")
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_length, max_length + 1, size=num_users)
    sequences = _sequences(rng, lengths, num_items, num_clusters, interests, zipf)
    metadata = {"generator": GENERATOR, "seed": seed, "num_clusters": num_clusters, "interests": interests,
                "zipf": zipf, "min_length": min_length, "max_length": max_length}
    return write_sequences(output, sequences, num_items, history_len, embedding_dim, metadata, row_group_size)


def add_cli(commands, positive_int) -> None:
    """Register ``bigrec data synthetic-interests`` on the ``bigrec data`` sub-parsers."""
    parser = commands.add_parser("synthetic-interests", help="item sequences of users with several disjoint "
                                                             "interests, leave-last-out recall layout (MIND)")
    add_sequence_arguments(parser, positive_int, items=2000, clusters=100, min_length=8, max_length=40)
    parser.add_argument("--interests", type=positive_int, default=4, help="clusters per user (default 4)")
    parser.set_defaults(handler=lambda args: run_generator("synthetic-interests", _generate, args))


def _generate(args) -> Schema:
    return generate_interests(args.output, args.users, args.items, args.clusters, args.interests, args.min_length,
                              args.max_length, args.history_len, seed=args.seed, embedding_dim=args.embedding_dim)
