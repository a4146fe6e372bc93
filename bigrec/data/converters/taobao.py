"""Taobao user behaviour (``UserBehavior.csv``) -> behaviour sequences for DIN / DIEN / BST and recall.

``--source`` is ``UserBehavior.csv`` or its directory: lines ``user,item,category,
behaviour,timestamp`` (behaviour ``pv`` / ``buy`` / ``cart`` / ``fav``), no header.
The events of the behaviours in ``--behaviors`` (default ``pv``, the clicks) form
each user's time-ordered sequence; the other behaviours are left out. Output:
:mod:`~bigrec.data.converters.behaviour` (an item's category is the one its
events carry; an item seen with several keeps the last, counted in the metadata).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bigrec.data.converters import behaviour
from bigrec.data.converters.badinput import BadInput
from bigrec.data.converters.events import EventSource, encode_column, run_sequences
from bigrec.data.converters.keys import int_keys
from bigrec.data.converters.textio import Block, CsvFormat, parse_csv, require_file
from bigrec.errors import ConfigError

BEHAVIOURS = ("pv", "buy", "cart", "fav")
NAMES = ("user", "item", "category", "behavior", "timestamp")
FORMAT = CsvFormat(NAMES, {"user": "int", "item": "int", "category": "int", "timestamp": "int"}, delimiter=",")


def parse_events(kept: tuple[str, ...]):
    def parse(block: Block, bad: BadInput) -> tuple[pa.Table, np.ndarray]:
        table, lines = parse_csv(block, FORMAT, bad)
        missing = np.zeros(table.num_rows, dtype=bool)
        for name in ("user", "item", "category", "timestamp"):
            missing |= ~table.column(name).is_valid().to_numpy(zero_copy_only=False)
        behavior = table.column("behavior").cast(pa.string(), safe=False)
        unknown = ~pc.fill_null(pc.is_in(behavior, pa.array(BEHAVIOURS)), False).to_numpy(zero_copy_only=False)
        bad.report(block.path, lines[missing], "empty field")
        bad.report(block.path, lines[unknown & ~missing], f"behaviour type is not one of {BEHAVIOURS}",
                   column="behavior")
        keep = ~missing & ~unknown & pc.is_in(behavior, pa.array(kept)).to_numpy(zero_copy_only=False)
        table = table.filter(pa.array(keep))
        columns = {name: pa.array(int_keys(table.column(name))[0]) for name in ("user", "item", "category")}
        return pa.table(dict(columns, timestamp=table.column("timestamp"))), lines[keep]

    return parse


def add_arguments(parser, positive_int) -> None:
    behaviour.add_arguments(parser, positive_int)
    parser.add_argument("--behaviors", default="pv", help="comma-separated behaviour types forming the sequences "
                                                          "(default pv)")


def convert(settings, args, bad: BadInput) -> dict:
    from bigrec.data.converters.options import options_for

    kept = tuple(b.strip() for b in args.behaviors.split(",") if b.strip())
    if not kept or set(kept) - set(BEHAVIOURS):
        raise ConfigError(f"--behaviors must name some of {BEHAVIOURS}, got {args.behaviors!r}")
    path = settings.source if settings.source.is_file() else require_file(
        Path(settings.source), ("UserBehavior.csv",), "Taobao UserBehavior.csv")
    source = EventSource("taobao", [path], parse_events(kept),
                         {"user": "user_id", "item": "item_id", "category": "category_id"})

    def build(vocabs, spill):
        items = vocabs["item_id"]
        category_of = np.zeros(items.size, dtype=np.int64)
        conflicts = 0
        for table in spill:
            item = encode_column(table, "item", items)
            category = encode_column(table, "category", vocabs["category_id"])
            before = category_of[item]
            conflicts += int(np.count_nonzero((before != 0) & (before != category)))
            category_of[item] = category
        rows, catalogue = behaviour.rows_and_catalogue(vocabs, category_of, args.history_len,
                                                       {"timestamp": "timestamp"})
        meta = {"dataset": "taobao-user-behavior", "behaviors": list(kept), "negatives": args.negatives,
                "events_with_another_category": conflicts}
        return rows, behaviour.schemas(vocabs, settings.embedding_dim, args.history_len, meta), catalogue

    options = options_for(behaviour.DEFAULTS, settings, list(behaviour.VOCAB_FEATURES), [])
    plan = behaviour.plan(source, {"user_id": "int", "item_id": "int", "category_id": "int"},
                          ["timestamp", "order"], args.negatives, build)
    return run_sequences(plan, settings, options, bad)
