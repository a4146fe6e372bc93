"""Pass 1 of the sequence converters: raw events -> user-hash spill partitions, id vocabularies counted.

A converter describes its events (:class:`EventSource`): the files, a parser
from a text block to staged events (raw 64-bit keys, timestamps, extra columns)
and which key columns feed which vocabulary. :func:`collect_events` runs the
parser over every file on ``workers`` threads, gives every event a global
``order`` (file index and line number, the tie-break of equal timestamps),
counts the keys and spreads the events over the partitions;
:func:`encoded_partitions` then yields one partition at a time with its keys
turned into ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa

from bigrec.data.converters.badinput import BadInput
from bigrec.data.converters.common import PartitionedSpill, Settings
from bigrec.data.converters.textio import Block, Progress, staged_blocks
from bigrec.data.converters.vocab import KeyCounter, Vocabulary
from bigrec.errors import DataError

LINE_BITS = 40  # order = file index << 40 | line number


@dataclass
class EventSource:
    """Staged events have a ``user`` key column (the partition key), ``timestamp`` (int64) and whatever
    else the converter needs; ``vocab_columns`` maps key columns to the vocabulary counting them."""

    name: str
    files: list[Path]
    parse: Callable[[Block, BadInput], tuple[pa.Table, np.ndarray]]
    vocab_columns: dict[str, str]
    skip_lines: int = 0


def collect_events(source: EventSource, settings: Settings, bad: BadInput, work: Path,
                   counters: dict[str, KeyCounter], expansion: float = 6.0) -> tuple[PartitionedSpill, int]:
    """Pass 1 into a :class:`PartitionedSpill` sized by the memory cap; returns it and the event count."""
    total = sum(p.stat().st_size for p in source.files)
    spill = PartitionedSpill(work, "events", settings.partitions(total, expansion))

    def stage(block: Block, file_index: int) -> pa.Table:
        table, lines = source.parse(block, bad)
        order = (np.int64(file_index) << np.int64(LINE_BITS)) + lines.astype(np.int64)
        return table.append_column("order", pa.array(order, pa.int64()))

    events = 0
    try:
        for _, table in staged_blocks(source.files, settings.block_bytes, settings.workers, stage, bad,
                                      f"{source.name}: parse", settings.progress, source.skip_lines):
            for column, vocab in source.vocab_columns.items():
                keys = table.column(column)
                counters[vocab].add(keys.drop_null().to_numpy() if keys.null_count else keys.to_numpy())
            spill.write(table, table.column("user").to_numpy())
            events += table.num_rows
    finally:
        spill.close()
    if not events:
        raise DataError(", ".join(str(p) for p in source.files), "no events could be read")
    return spill, events


def encode_column(table: pa.Table, column: str, vocab: Vocabulary) -> np.ndarray:
    """Ids (int64) of a key column (nulls -> 0)."""
    keys = table.column(column)
    present = keys.is_valid().to_numpy(zero_copy_only=False)
    return vocab.encode(keys.fill_null(0).to_numpy(), present)[0]


def encoded_partitions(spill: PartitionedSpill, id_columns: dict[str, tuple[str, Vocabulary]],
                       keep: list[str]) -> Iterator[dict[str, np.ndarray]]:
    """Each partition as numpy columns: ``id_columns`` (output -> (key column, vocabulary)) encoded, ``keep``
    columns as they are."""
    for table in spill:
        columns = {name: encode_column(table, key, vocab) for name, (key, vocab) in id_columns.items()}
        for name in keep:
            columns[name] = table.column(name).to_numpy()
        yield columns


@dataclass
class SequencePlan:
    """A sequence converter: its events, vocabularies, layouts and how rows are built.

    ``key_kinds``: vocabulary -> key rule; ``vocab_features``: vocabulary -> the features reading it;
    ``id_columns``: event id column -> (staged key column, vocabulary); ``keep``: other event columns
    needed (``timestamp``, ``order``, labels...); ``layouts``: (name, split function, negatives, description);
    ``build(vocabs, spill)`` -> (:class:`SequenceRows`, schema per layout, item catalogue table).
    """

    source: EventSource
    key_kinds: dict[str, str]
    vocab_features: dict[str, list[str]]
    id_columns: dict[str, tuple[str, str]]
    keep: list[str]
    layouts: list[tuple]
    build: Callable


def run_sequences(plan: SequencePlan, settings: Settings, options, bad: BadInput) -> dict:
    """Both passes of a sequence converter into ``settings.output``; returns the stats of each layout."""
    import time

    from bigrec.data.converters.common import finish
    from bigrec.data.converters.output import OutputDir, Stats, open_split_writers
    from bigrec.data.converters.sequences import Layout, process_partition
    from bigrec.data.converters.vocab import check_vocab_memory
    from bigrec.data.parquet_io import write_item_catalogue, write_json

    started = time.perf_counter()
    with OutputDir(settings.output, settings.temp_dir) as out:
        counted = [v for v in plan.key_kinds if not options.vocab(v).hashed]
        counters = {v: KeyCounter(v, out.work, settings.counter_budget(len(counted))) for v in counted}
        plan.source.vocab_columns = {c: v for c, v in plan.source.vocab_columns.items() if v in counters}
        spill, events = collect_events(plan.source, settings, bad, out.work, counters)
        vocabs = {v: Vocabulary.build(v, kind, options.vocab(v), counters.get(v), complete=True)
                  for v, kind in plan.key_kinds.items()}
        check_vocab_memory(list(vocabs.values()), settings.cap_bytes)
        rows, schemas, items = plan.build(vocabs, spill)
        with_oov = {f for v, vocab in vocabs.items() if vocab.oov_id is not None for f in plan.vocab_features[v]}
        layouts, stats = [], {}
        for name, split, negatives, description in plan.layouts:
            schema = schemas[name]
            schema.metadata.update(task_split=description, history_len=rows.max_len, preprocessing=options.raw,
                                   vocabularies={v: vocab.metadata(plan.vocab_features[v]) for v, vocab in vocabs.items()})
            stats[name] = Stats(schema.labels, {f.name: f.vocab_size for f in schema.id_features}, with_oov,
                                [f.name for f in schema.dense])
            writers = open_split_writers(out.path / name, settings.rows_per_file, settings.row_group_size, stats[name],
                                         compression=settings.compression)
            layouts.append(Layout(name, split, writers, negatives))
        progress = Progress(events, f"{plan.source.name}: histories", settings.progress, unit="events")
        try:
            for index, part in enumerate(encoded_partitions(spill, {n: (c, vocabs[v]) for n, (c, v) in
                                                                    plan.id_columns.items()}, plan.keep)):
                process_partition(part, rows, layouts, np.random.default_rng([settings.seed, index]))
                progress.update(len(part["order"]), len(part["order"]))
        finally:
            progress.close()
        results = {}
        for layout in layouts:
            for writer in layout.writers.values():
                writer.close()
            schema = schemas[layout.name]
            schema.metadata["counts"] = {s: {"rows": w.rows, "files": w.files} for s, w in layout.writers.items()}
            if layout.name == "recall":
                write_item_catalogue(out.path / layout.name, items, schema, settings.row_group_size)
            results[layout.name] = finish(out, schema, vocabs, stats[layout.name], bad, started,
                                          directory=out.path / layout.name)
        write_json({"layouts": results, "input": bad.to_dict()}, out.path / "stats.json")
        return results
