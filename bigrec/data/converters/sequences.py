"""Per-user, time-ordered behaviour histories built out of core (MovieLens 1M/20M/25M, Taobao, Amazon).

Pass 1 (the converter's parser) appends every event, with raw 64-bit keys, to
``P`` spill partitions chosen by a hash of the user, and counts the id
vocabularies on the way. Pass 2 takes one partition at a time (all events of
its users, ``1/P`` of the data): ids are encoded, the events sorted by
``(user, timestamp, file order)``, and each event becomes a row whose history
holds the same user's events strictly before it (so no history ever holds a
future or a simultaneous-but-later-in-file event), the most recent ``max_len``,
oldest first. Memory: one partition plus one output chunk.

Two layouts are written from the same histories (:class:`Layout`):

* ``ranking``: each user's last 10% of events test, the 10% before valid
  (:func:`~bigrec.data.movielens.ranking_split`); with ``negatives = k`` every
  event is a positive row (``label`` 1) followed by ``k`` rows with a uniformly
  sampled other item (``label`` 0) and the same history;
* ``recall``: leave-last-out (:func:`~bigrec.data.movielens.leave_last_out_split`),
  one row per event, plus ``items.parquet``, the item catalogue.

Rows are written partition by partition, each user's rows together in time
order; train with a shuffle buffer (the configs do).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pyarrow as pa

from bigrec.data.converters.output import SplitWriter
from bigrec.data.movielens import leave_last_out_split, ranges_to_list, ranking_split, user_positions
from bigrec.data.parquet_io import SPLITS

OUTPUT_CHUNK_EVENTS = 65536


@dataclass
class ListAttribute:
    """A list-valued attribute per id: id ``i`` has ``values[starts[i]:starts[i]+lengths[i]]``."""

    values: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray

    def take(self, ids: np.ndarray) -> pa.Array:
        return ranges_to_list(self.values, self.starts[ids], self.lengths[ids])

    @classmethod
    def from_lists(cls, lists: list[list[int]]) -> "ListAttribute":
        lengths = np.array([len(x) for x in lists], dtype=np.int64)
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
        values = np.array([v for x in lists for v in x], dtype=np.int64)
        return cls(values, starts, lengths)


Attribute = "np.ndarray | ListAttribute"


def take_attribute(attribute, ids: np.ndarray) -> pa.Array:
    """The attribute of each id: int64 per id or a list per id."""
    if isinstance(attribute, ListAttribute):
        return attribute.take(ids)
    return pa.array(attribute[ids], pa.int64())


@dataclass
class Layout:
    """One output layout: its split rule, negatives per event and where it is written."""

    name: str
    split: Callable[[np.ndarray, np.ndarray], np.ndarray]
    writers: dict[str, SplitWriter]
    negatives: int = 0


@dataclass
class SequenceRows:
    """How events become rows (the converter fills it in once its vocabularies exist).

    ``user_attributes`` / ``item_attributes``: output column -> attribute per user / item id;
    ``history``: history column -> ``"item_id"`` or an item attribute (e.g. ``hist_category_ids`` ->
    ``category_id``), all over the item sequence; ``event_columns``: output column -> event column
    (labels, ``rating``, ``timestamp``)."""

    max_len: int
    num_items: int  # item ids are 1..num_items-1 (negatives are drawn there)
    first_item_id: int = 1
    user_attributes: dict = field(default_factory=dict)
    item_attributes: dict = field(default_factory=dict)
    history: dict = field(default_factory=lambda: {"hist_item_ids": "item_id"})
    event_columns: dict = field(default_factory=dict)
    label: str | None = "label"  # the 1/0 column of layouts with negatives

    def columns(self, user: np.ndarray, item: np.ndarray, hist_start: np.ndarray, hist_len: np.ndarray,
                history_values: dict[str, np.ndarray], events: dict[str, np.ndarray], rows: np.ndarray) -> dict:
        out = {"user_id": pa.array(user, pa.int64()), "item_id": pa.array(item, pa.int64())}
        for name, attribute in self.user_attributes.items():
            out[name] = take_attribute(attribute, user)
        for name, attribute in self.item_attributes.items():
            out[name] = take_attribute(attribute, item)
        for name, values in history_values.items():
            out[name] = ranges_to_list(values, hist_start, hist_len)
        for name, source in self.event_columns.items():
            out[name] = pa.array(events[source][rows])
        return out


def process_partition(events: dict[str, np.ndarray], rows: SequenceRows, layouts: list[Layout],
                      rng: np.random.Generator) -> None:
    """Sort one partition's events (encoded ids, ``user_id``, ``item_id``, ``timestamp``, ``order``), build the
    histories and write every layout's rows."""
    order = np.lexsort((events["order"], events["timestamp"], events["user_id"]))
    events = {name: values[order] for name, values in events.items()}
    user, item = events["user_id"], events["item_id"]
    position, count = user_positions(user)
    hist_len = np.minimum(position, rows.max_len)
    hist_start = np.arange(len(user)) - hist_len
    history_values = {name: item if source == "item_id" else rows.item_attributes[source][item]
                      for name, source in rows.history.items()}
    codes = {layout.name: layout.split(position, count) for layout in layouts}
    for start in range(0, len(user), OUTPUT_CHUNK_EVENTS):
        chunk = np.arange(start, min(start + OUTPUT_CHUNK_EVENTS, len(user)))
        for layout in layouts:
            if layout.negatives:
                table, code = _with_negatives(rows, layout.negatives, chunk, codes[layout.name], user, item, hist_start,
                                              hist_len, history_values, events, rng)
            else:
                columns = rows.columns(user[chunk], item[chunk], hist_start[chunk], hist_len[chunk], history_values,
                                       events, chunk)
                table, code = pa.table(columns), codes[layout.name][chunk]
            for index, split in enumerate(SPLITS):
                selected = code == index
                if selected.any():
                    layout.writers[split].write(table.filter(pa.array(selected)))


def sample_negatives(positive: np.ndarray, k: int, first: int, last: int, rng: np.random.Generator) -> np.ndarray:
    """``[N, k]`` item ids drawn uniformly from ``[first, last)`` other than the row's positive."""
    span = last - first
    if span <= 1:
        return np.full((len(positive), k), first, dtype=np.int64)
    draws = first + rng.integers(0, span - 1, size=(len(positive), k))
    inside = ((positive >= first) & (positive < last))[:, None]
    return draws + ((draws >= positive[:, None]) & inside)


def _with_negatives(rows: SequenceRows, k: int, chunk: np.ndarray, code: np.ndarray, user, item, hist_start,
                    hist_len, history_values, events, rng) -> tuple[pa.Table, np.ndarray]:
    """Each event of ``chunk`` as its positive row followed by ``k`` sampled negatives."""
    candidates = np.concatenate([item[chunk, None], sample_negatives(item[chunk], k, rows.first_item_id,
                                                                     rows.num_items, rng)], axis=1).reshape(-1)
    repeated = np.repeat(chunk, k + 1)
    columns = rows.columns(user[repeated], candidates, hist_start[repeated], hist_len[repeated], history_values,
                           events, repeated)
    labels = np.tile(np.r_[1.0, np.zeros(k)], len(chunk)).astype(np.float32)
    columns[rows.label] = pa.array(labels)
    return pa.table(columns), code[repeated]


RANKING_SPLIT = ("ranking", ranking_split, "per user in time: last 10% test, the 10% before valid")
RECALL_SPLIT = ("recall", leave_last_out_split, "leave last out: last event test, second last valid")
