"""Synthetic item sequences from a Markov chain over item clusters (a planted order signal).

``generate_sequences(output_dir, num_users, num_items)`` writes the leave-last-out
recall layout of ``data/ml-100k/recall``::

    OUTPUT/train.parquet, valid.parquet, test.parquet, train_sequences.parquet, schema.json, items.parquet

with columns ``user_id``, ``item_id`` (the target) and ``hist_item_ids``
(``list<int64>``, the user's earlier items, oldest first, the most recent
``history_len``), ``item_id`` and ``hist_item_ids`` sharing table ``item``.
Item ids run ``1..num_items`` (0 = padding), user ids ``1..num_users``.

Each user walks over ``num_clusters`` clusters of contiguous item ids: the next
cluster is the current cluster's fixed successor with probability ``follow``,
otherwise a uniform cluster; the item is drawn from the cluster with a Zipf
law, never repeating an item the user already has. So the *last* item predicts
the next one's cluster, while the bag of earlier items does not: an ordered
model beats an order-free mean of the history, and both beat most-popular.
With ``purpose`` > 0 each step returns to the user's first cluster (their main
purpose, as NARM models a session's) with that probability before the Markov
step: the purpose shows in the items seen anywhere earlier, not in the last one.

Each user's last item is test, the one before valid, the rest train rows (one
row per target); ``train_sequences.parquet`` holds the training rows that end a
window of ``history_len`` items, the last half of them targets (one-pass sequence
training, :mod:`bigrec.data.sequences`). A sequence too short to give a test target after
the valid one (fewer than 3 items) is skipped and counted; the count is printed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from bigrec.data.parquet_io import DEFAULT_ROW_GROUP_SIZE, SPLITS, write_item_catalogue, write_split_dir
from bigrec.data.sequences import SEQUENCES_SPLIT, check_stride, layout_metadata, window_ends
from bigrec.data.synthetic import run_generator
from bigrec.features import Schema, SequenceFeature, SparseFeature

GENERATOR = "markov_clusters_v1"


def _walks(rng: np.random.Generator, lengths: np.ndarray, num_items: int, num_clusters: int, follow: float,
           zipf: float, purpose: float = 0.0) -> list[np.ndarray]:
    """One item sequence per user (ids ``1..num_items``, no repeats within a user)."""
    bounds = np.linspace(0, num_items, num_clusters + 1).astype(np.int64)
    successor = rng.permutation(num_clusters)
    walks = []
    for length in lengths:
        seen: set[int] = set()
        cluster = int(rng.integers(num_clusters))
        main = cluster  # the user's purpose: the first cluster
        items = np.empty(length, dtype=np.int64)
        for t in range(length):
            if t and purpose and rng.random() < purpose:
                cluster = main
            elif t:
                cluster = int(successor[cluster]) if rng.random() < follow else int(rng.integers(num_clusters))
            items[t] = draw_item(rng, bounds, cluster, seen, zipf)
        walks.append(items)
    return walks


def draw_item(rng: np.random.Generator, bounds: np.ndarray, cluster: int, seen: set[int], zipf: float) -> int:
    """A Zipf draw among cluster ``cluster``'s ids ``bounds[c]+1..bounds[c+1]``, not in ``seen`` (added to it).

    A repeat is redrawn (8 tries), then a uniform free id of the cluster is taken; a
    cluster with no free id repeats its last draw.
    """
    size = int(bounds[cluster + 1] - bounds[cluster])
    for _ in range(8):
        rank = min(int(rng.zipf(zipf)) - 1, size - 1) if zipf > 1 else int(rng.integers(size))
        item = int(bounds[cluster]) + rank + 1
        if item not in seen:
            break
    else:
        free = [i for i in range(int(bounds[cluster]) + 1, int(bounds[cluster + 1]) + 1) if i not in seen]
        item = free[int(rng.integers(len(free)))] if free else item
    seen.add(item)
    return item


def sequences_to_rows(users: np.ndarray, walks: list[np.ndarray], history_len: int,
                      stride: int | None = None) -> tuple[dict[str, pa.Table], int]:
    """Leave-last-out rows of every sequence; returns the split tables and the skipped count.

    Besides ``train``, ``valid`` and ``test`` the tables hold ``train_sequences``, the
    training rows that end a window of ``history_len`` items whose last ``stride``
    positions are targets (default half the window; :mod:`bigrec.data.sequences`).
    """
    stride = check_stride(history_len, stride)
    columns = {split: {"user_id": [], "item_id": [], "hist": []} for split in SPLITS + (SEQUENCES_SPLIT,)}
    skipped = 0
    for user, items in zip(users.tolist(), walks):
        if len(items) < 3:
            skipped += 1
            continue
        last = len(items) - 1
        positions = np.arange(len(items))
        ends = window_ends(positions, np.full(len(items), last - 2), stride)
        for t in range(len(items)):
            split = "test" if t == last else "valid" if t == last - 1 else "train"
            for name in (split, SEQUENCES_SPLIT) if ends[t] else (split,):
                columns[name]["user_id"].append(user)
                columns[name]["item_id"].append(int(items[t]))
                columns[name]["hist"].append(items[max(0, t - history_len):t].tolist())
    tables = {split: pa.table({"user_id": pa.array(c["user_id"], pa.int64()),
                               "item_id": pa.array(c["item_id"], pa.int64()),
                               "hist_item_ids": pa.array(c["hist"], pa.list_(pa.int64()))})
              for split, c in columns.items()}
    return tables, skipped


def build_schema(num_users: int, num_items: int, history_len: int, embedding_dim: int = 32,
                 metadata: dict | None = None) -> Schema:
    return Schema([
        SparseFeature("user_id", num_users + 1, embedding_dim, side="user"),
        SparseFeature("item_id", num_items + 1, embedding_dim, table="item", side="item"),
        SequenceFeature("hist_item_ids", num_items + 1, embedding_dim, table="item", max_len=history_len),
    ], labels=[], metadata=dict(metadata or {}))


def generate_sequences(output: str | Path, num_users: int = 5000, num_items: int = 1000, num_clusters: int = 50,
                       min_length: int = 5, max_length: int = 30, history_len: int = 50, follow: float = 0.9,
                       zipf: float = 1.2, seed: int = 0, embedding_dim: int = 32,
                       row_group_size: int = DEFAULT_ROW_GROUP_SIZE, purpose: float = 0.0,
                       sequence_stride: int | None = None) -> Schema:
    """Write the synthetic sequence data set to ``output``; returns its schema (see the module doc).

    ``sequence_stride``: targets per window of ``train_sequences.parquet`` (default half of ``history_len``).
    """
    if not 1 <= num_clusters <= num_items:
        raise ValueError(f"num_clusters must be in [1, num_items], got {num_clusters}")
    if not 1 <= min_length <= max_length:
        raise ValueError(f"need 1 <= min_length <= max_length, got {min_length}, {max_length}")
    if not 0.0 <= follow <= 1.0 or not 0.0 <= purpose <= 1.0:
        raise ValueError(f"follow and purpose must be in [0, 1], got {follow}, {purpose}")
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_length, max_length + 1, size=num_users)
    walks = _walks(rng, lengths, num_items, num_clusters, follow, zipf, purpose)
    metadata = {"generator": GENERATOR, "seed": seed, "num_clusters": num_clusters, "follow": follow, "purpose": purpose,
                "zipf": zipf,
                "min_length": min_length, "max_length": max_length}
    return write_sequences(output, walks, num_items, history_len, embedding_dim, metadata, row_group_size,
                           sequence_stride)


def write_sequences(output: str | Path, sequences: list[np.ndarray], num_items: int, history_len: int,
                    embedding_dim: int, metadata: dict, row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
                    sequence_stride: int | None = None) -> Schema:
    """Write user ``i + 1``'s item sequence ``sequences[i]`` as the leave-last-out layout, catalogue and schema.

    Sequences too short for a test target are skipped and the count printed; ``metadata``
    (the generator's parameters) goes into the schema with the counts.
    """
    num_users = len(sequences)
    stride = check_stride(history_len, sequence_stride)
    tables, skipped = sequences_to_rows(np.arange(1, num_users + 1), sequences, history_len, stride)
    if skipped:
        print(f"skipped {skipped} sequence(s) with fewer than 3 items (no test target after the valid one)")
    metadata = {**metadata, "num_users": num_users, "num_items": num_items, "history_len": history_len,
                "skipped_sequences": skipped, "task_split": "leave_last_out",
                "sequences": layout_metadata(history_len, tables[SEQUENCES_SPLIT].num_rows, stride),
                "counts": {split: {"rows": t.num_rows} for split, t in tables.items()}}
    schema = build_schema(num_users, num_items, history_len, embedding_dim, metadata)
    items = pa.table({"item_id": pa.array(np.arange(1, num_items + 1), pa.int64())})
    write_item_catalogue(output, items, schema, row_group_size)
    write_split_dir(output, tables, schema, row_group_size)
    return schema


def add_sequence_arguments(parser, positive_int, items: int, clusters: int, min_length: int, max_length: int) -> None:
    """The arguments every synthetic sequence generator's command takes (defaults given)."""
    parser.add_argument("--output", required=True, help="output directory")
    parser.add_argument("--users", type=positive_int, default=5000, help="number of users/sequences (default 5000)")
    parser.add_argument("--items", type=positive_int, default=items, help=f"number of items (default {items})")
    parser.add_argument("--clusters", type=positive_int, default=clusters, help=f"item clusters (default {clusters})")
    parser.add_argument("--min-length", type=positive_int, default=min_length,
                        help=f"shortest sequence (default {min_length})")
    parser.add_argument("--max-length", type=positive_int, default=max_length,
                        help=f"longest sequence (default {max_length})")
    parser.add_argument("--history-len", type=positive_int, default=50, help="items kept in hist_item_ids")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--embedding-dim", type=positive_int, default=32, help="embedding dim in schema.json")


def add_cli(commands, positive_int) -> None:
    """Register ``bigrec data synthetic-sequences`` on the ``bigrec data`` sub-parsers."""
    parser = commands.add_parser("synthetic-sequences", help="item sequences from a Markov chain over item "
                                                             "clusters, leave-last-out recall layout (SASRec)")
    add_sequence_arguments(parser, positive_int, items=1000, clusters=50, min_length=5, max_length=30)
    parser.add_argument("--follow", type=float, default=0.9, help="probability of the successor cluster (0.9)")
    parser.add_argument("--purpose", type=float, default=0.0,
                        help="probability that an item returns to the user's first cluster (default 0)")
    parser.set_defaults(handler=lambda args: run_generator("synthetic-sequences", _generate, args))


def _generate(args) -> Schema:
    return generate_sequences(args.output, args.users, args.items, args.clusters, args.min_length, args.max_length,
                              args.history_len, args.follow, seed=args.seed, embedding_dim=args.embedding_dim,
                              purpose=args.purpose)
