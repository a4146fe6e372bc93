"""Synthetic behaviour data whose label is decided by the *order* of the history (DIEN, BST).

``generate_order(output_dir, rows)`` writes ``train/valid/test.parquet`` and
``schema.json`` with the columns of :mod:`bigrec.data.synthetic_behavior`
(``user_id``, ``item_id``, ``item_cat``, ``hist_item_ids``, ``hist_cat_ids``,
``label``), so the same model configs read both data sets.

Categories come in related pairs (1-2, 3-4, ...). A non-empty history holds
2..``max_len + overflow`` behaviours, oldest first: noise from categories outside
the candidate's pair, and, among its most recent ``max_len``, 2..4 behaviours of the
candidate's pair, both categories of the pair present. The label is
``Bernoulli(sigmoid(strength * (2 m - 1)))`` with ``m = 1`` when the *most recent*
behaviour of the pair has the candidate's own category (the interest moved to the
candidate) and ``m = 0`` when it has the other one (it moved away).

Which of the two categories is more frequent carries no signal (the counts are
exchangeable), so order-free pooling (DIN) sits near AUC 0.5; a model that reads the
order of the relevant behaviours reaches the Bayes AUC (recorded as
``bayes_auc_estimate``, about 0.80 with the defaults). Histories longer than the
schema's ``max_len`` must keep their *most recent* behaviours: the relevant ones
are all among them, the oldest ones are noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from bigrec.data.cli_args import behaviour_parser
from bigrec.data.synthetic_behavior import behavior_table, write_behavior_splits
from bigrec.features import Schema

GENERATOR = "synthetic_order_v1"


def sample_rows(rng: np.random.Generator, n: int, items_by_cat: np.ndarray, num_users: int, max_len: int,
                overflow: int, strength: float, empty_fraction: float) -> tuple[pa.Table, np.ndarray]:
    """``n`` rows and their planted logits; ``items_by_cat[c - 1]`` lists the items of category ``c``."""
    num_categories, per_cat = items_by_cat.shape
    cand_cat = rng.integers(1, num_categories + 1, n)
    partner = np.where(cand_cat % 2 == 1, cand_cat + 1, cand_cat - 1)  # the related category
    lengths = rng.integers(2, max_len + overflow + 1, n)
    empty = rng.random(n) < empty_fraction
    lengths[empty] = 0
    row_of = np.repeat(np.arange(n), lengths)
    back = np.repeat(np.cumsum(lengths), lengths) - np.arange(row_of.size)  # 1 = the most recent behaviour
    # noise: a category outside the candidate's pair (shift past the pair's two slots)
    noise = 1 + rng.integers(0, num_categories - 2, row_of.size)
    low = np.minimum(cand_cat, partner)[row_of]
    hist_cats = np.where(noise >= low, noise + 2, noise)
    # 2..4 relevant behaviours at random positions among the most recent min(length, max_len)
    visible = np.minimum(lengths, max_len)
    relevant = np.minimum(rng.integers(2, 5, n), visible)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    key = np.where(back <= visible[row_of], rng.random(row_of.size), 2.0)  # hidden positions sort last
    rank = np.empty(row_of.size, dtype=np.int64)
    rank[np.lexsort((key, row_of))] = np.arange(row_of.size) - starts  # random rank within the row
    chosen = rank < relevant[row_of]
    follows = ~empty & (rng.random(n) < 0.5)  # m: the most recent relevant behaviour is the candidate's category
    # the most recent relevant one decides m; the others (at least one of each category in all) are random
    after = np.append(np.cumsum(chosen[::-1])[::-1], 0)  # relevant behaviours from here to the end of the data
    to_row_end = after[:-1] - np.repeat(after[np.cumsum(lengths)], lengths)  # ... to the end of the row
    last, second = chosen & (to_row_end == 1), chosen & (to_row_end == 2)
    coin = rng.random(row_of.size) < 0.5
    own = np.where(last, follows[row_of], np.where(second, ~follows[row_of], coin))
    hist_cats = np.where(chosen, np.where(own, cand_cat[row_of], partner[row_of]), hist_cats)
    hist_items = items_by_cat[hist_cats - 1, rng.integers(0, per_cat, row_of.size)]

    cand_item = items_by_cat[cand_cat - 1, rng.integers(0, per_cat, n)]
    logits = strength * (2.0 * follows - 1.0)
    return behavior_table(rng, logits, num_users, cand_item, cand_cat, hist_items, hist_cats, lengths), logits


def generate_order(output_dir: str | Path, rows: int, num_items: int = 1000, num_categories: int = 20,
                   num_users: int = 1000, max_len: int = 20, overflow: int = 10, strength: float = 1.5,
                   empty_fraction: float = 0.05, seed: int = 0, valid_fraction: float = 0.1,
                   test_fraction: float = 0.1, embedding_dim: int = 16, row_group_size: int = 8192) -> Schema:
    """Write the data set (see the module docstring) and return its schema.

    ``overflow``: histories run up to ``max_len + overflow`` behaviours.
    """
    if num_categories < 4 or num_categories % 2 or num_items < num_categories:
        raise ValueError(f"need num_items >= num_categories >= 4, num_categories even (related pairs), got "
                         f"{num_items} items, {num_categories} categories")
    if max_len < 2:
        raise ValueError(f"max_len must be >= 2 (two related behaviours), got {max_len}")
    if overflow < 0 or not 0.0 <= empty_fraction < 1.0:
        raise ValueError(f"need overflow >= 0 and empty_fraction in [0, 1), got {overflow}, {empty_fraction}")
    per_cat = num_items // num_categories
    items_by_cat = 1 + np.arange(num_categories * per_cat).reshape(per_cat, num_categories).T  # item i -> 1 + i % C
    shape = {"num_items": num_items, "num_categories": num_categories, "num_users": num_users, "max_len": max_len}
    metadata = {"generator": GENERATOR, **shape, "overflow": overflow, "strength": strength,
                "empty_fraction": empty_fraction,
                "signal": "label: the most recent hist_cat_ids of item_cat's pair (c, c +- 1) is item_cat itself"}
    return write_behavior_splits(
        output_dir, rows, lambda rng, n: sample_rows(rng, n, items_by_cat, num_users, max_len, overflow, strength,
                                                     empty_fraction),
        shape, metadata, seed, valid_fraction, test_fraction, embedding_dim, row_group_size)


def add_cli(commands, positive_int) -> None:
    """Register ``bigrec data synthetic-order`` on the ``bigrec data`` sub-parsers."""
    parser = behaviour_parser(commands, "synthetic-order", "behaviour sequences whose label is decided by the order "
                                                           "of the history (DIEN, BST)")
    parser.add_argument("--overflow", type=int, default=10, help="histories run up to max-len + overflow (10)")
    parser.set_defaults(handler=_run_cli)


def _run_cli(args) -> int:
    from bigrec.data.synthetic import rows_and_bayes_auc, run_generator

    return run_generator("synthetic-order", lambda args: generate_order(args.output, args.rows, num_items=args.num_items, num_categories=args.num_categories,
                          max_len=args.max_len, overflow=args.overflow, strength=args.strength, seed=args.seed,
                          embedding_dim=args.embedding_dim), args, rows_and_bayes_auc)
