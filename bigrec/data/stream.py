"""Stream Parquet files as :class:`~bigrec.batch.Batch` es, sharded over ranks and workers.

How rows are split (a pure function of the files' metadata, identical on every rank):

* The N rows of an epoch (files in sorted order, then row groups) are cut into
  ``world_size`` contiguous ranges of N//W or N//W+1 rows.
* Every rank runs the same number of steps, ``ceil(ceil(N/W) / batch_size)``; each
  rank's range is cut into that many balanced batches (sizes differ by at most
  one, never above ``batch_size``), so uneven shards cannot hang a collective.
* A rank's batches are split into contiguous blocks, one per DataLoader worker.

So every row is read exactly once per epoch, and only row groups overlapping a
worker's range are read (row group by row group, never a whole file).

Resuming mid-epoch: ``set_position(epoch, batches_done)`` makes the next
iteration continue after the first ``batches_done`` batches a loader with the
same ``num_workers`` yielded (the DataLoader takes workers round-robin, so each
worker skips its own share). Skipped rows are not read: without shuffling the
worker starts at its first unread row; with shuffling the shuffle generator is
advanced over skipped windows (the permutations depend only on row counts) and
only the window holding the first unread row is read.
"""

from __future__ import annotations

import glob
import math
import os
import signal
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from bigrec.batch import Batch
from bigrec.data.convert import check_arrow_schema, check_values, columns_of, table_to_batch
from bigrec.data.labels import BinaryLabels, LabelCount
from bigrec.data.labels import add as add_label_counts
from bigrec.errors import DataError
from bigrec.features import Schema


@dataclass(frozen=True)
class RowGroup:
    """One Parquet row group and its rows' position in the epoch."""

    path: str
    index: int
    first_row: int  # global index of its first row
    num_rows: int


@dataclass(frozen=True)
class Piece:
    """Rows ``[offset, offset+length)`` of one row group."""

    group: RowGroup
    offset: int
    length: int


def list_parquet_files(spec: str) -> list[str]:
    """Expand a file, a directory (its ``*.parquet``) or a glob into sorted paths."""
    if os.path.isdir(spec):
        files = sorted(glob.glob(os.path.join(spec, "*.parquet")))
    elif any(ch in spec for ch in "*?["):
        files = sorted(glob.glob(spec))
    else:
        files = [spec]
    if not files:
        raise DataError(spec, "no Parquet files found")
    for path in files:
        if not os.path.isfile(path):
            raise DataError(path, "file not found")
    return files


def open_parquet(path: str) -> pq.ParquetFile:
    """Open a Parquet file, turning Arrow's errors into a DataError naming it."""
    if os.path.getsize(path) == 0:
        raise DataError(path, "file is empty (0 bytes)")
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(path, f"not a readable Parquet file ({exc})") from None


def scan_row_groups(files: list[str], schema: Schema) -> list[RowGroup]:
    """Read the footers of ``files``, check their columns against ``schema``."""
    groups: list[RowGroup] = []
    first_row = 0
    for path in files:
        parquet = open_parquet(path)
        check_arrow_schema(schema, parquet.schema_arrow, path)
        if parquet.metadata.num_rows == 0:
            raise DataError(path, "file has no rows")
        for index in range(parquet.num_row_groups):
            rows = parquet.metadata.row_group(index).num_rows
            if rows:
                groups.append(RowGroup(path, index, first_row, rows))
                first_row += rows
    return groups


def steps_per_epoch(total_rows: int, world_size: int, batch_size: int) -> int:
    """Steps every rank runs per epoch."""
    return math.ceil(math.ceil(total_rows / world_size) / batch_size)


def rank_range(total_rows: int, rank: int, world_size: int) -> tuple[int, int]:
    """Contiguous global rows ``[start, end)`` of ``rank``."""
    base, extra = divmod(total_rows, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def batch_bounds(start: int, end: int, num_batches: int) -> np.ndarray:
    """``num_batches + 1`` boundaries cutting ``[start, end)`` into balanced batches."""
    return start + (np.arange(num_batches + 1, dtype=np.int64) * (end - start)) // num_batches


def pieces_for(groups: list[RowGroup], start: int, end: int) -> list[Piece]:
    """The row-group slices covering global rows ``[start, end)``."""
    pieces = []
    for group in groups:
        lo = max(start, group.first_row)
        hi = min(end, group.first_row + group.num_rows)
        if lo < hi:
            pieces.append(Piece(group, lo - group.first_row, hi - lo))
    return pieces


class ParquetBatches(IterableDataset):
    """An iterable of :class:`Batch` for one rank; use with :func:`make_loader`.

    Args:
        files: Parquet files (read in this order).
        schema: the features and labels to read.
        batch_size: maximum rows per rank per step.
        rank, world_size: this process's shard.
        shuffle_buffer: 0 reads rows in file order; otherwise the order of a
            worker's row groups is shuffled per epoch and rows are shuffled within
            windows of at least this many rows.
        seed: shuffling seed (combined with the epoch, rank and worker).
        labels: label columns a binary task reads; their values are checked in
            every row group read (:mod:`bigrec.data.labels`).
        label_check: ``fn(table, path)`` raising a DataError for label values the task
            cannot take beyond the binary check (e.g. ESMM's conversion without a click);
            called on every slice read.
    """

    def __init__(self, files: list[str], schema: Schema, batch_size: int, rank: int = 0,
                 world_size: int = 1, shuffle_buffer: int = 0, seed: int = 0,
                 labels: Optional[BinaryLabels] = None,
                 label_check: Optional[Callable[[pa.Table, str], None]] = None) -> None:
        super().__init__()
        if batch_size <= 0:
            raise DataError(files[0] if files else "<none>", f"batch_size must be > 0, got {batch_size}")
        self.files = list(files)
        self.schema = schema
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.labels = labels
        self.label_check = label_check
        self.epoch = 0
        self.batches_done = 0  # batches of this epoch already consumed (see set_position)
        self.groups = scan_row_groups(self.files, schema)
        self.total_rows = sum(g.num_rows for g in self.groups)
        if self.total_rows < world_size:
            raise DataError(self.files[0], f"{self.total_rows} rows cannot feed {world_size} ranks")
        self.num_steps = steps_per_epoch(self.total_rows, world_size, batch_size)
        self.columns = columns_of(schema)

    def __len__(self) -> int:
        return self.num_steps

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first batch."""
        self.set_position(epoch, 0)

    def set_position(self, epoch: int, batches_done: int) -> None:
        """Start ``epoch`` after the first ``batches_done`` batches (resume mid-epoch)."""
        if not 0 <= batches_done <= self.num_steps:
            raise DataError(self.files[0], f"position {batches_done} is outside the epoch's {self.num_steps} batches")
        self.epoch = epoch
        self.batches_done = batches_done

    def remaining(self) -> int:
        """Batches left in the current epoch after the position."""
        return self.num_steps - self.batches_done

    # ---------------------------------------------------------------- planning
    def worker_batches(self, worker: int, num_workers: int) -> np.ndarray:
        """Global row boundaries of the batches of ``worker`` on this rank."""
        start, end = rank_range(self.total_rows, self.rank, self.world_size)
        bounds = batch_bounds(start, end, self.num_steps)
        first, last = rank_range(self.num_steps, worker, num_workers)
        return bounds[first:last + 1]

    def worker_schedule(self, num_workers: int) -> tuple[list[int], int]:
        """``(batches each worker already yielded, worker that yields next)`` at the position.

        Mirrors the DataLoader's round robin, which skips exhausted workers.
        """
        workers = max(1, num_workers)
        lengths = [len(self.worker_batches(w, workers)) - 1 for w in range(workers)]
        done, turn = [0] * workers, 0
        for _ in range(self.batches_done):
            while done[turn] >= lengths[turn]:
                turn = (turn + 1) % workers
            done[turn] += 1
            turn = (turn + 1) % workers
        return done, turn

    def row_ids(self, num_workers: int = 0) -> Iterator[np.ndarray]:
        """Global row indices of each batch a loader with ``num_workers`` yields from the position.

        Computed from metadata alone (no data is read), in the loader's order.
        """
        workers = max(1, num_workers)
        done, turn = self.worker_schedule(workers)
        streams = [self._worker_stream(w, workers, done[w], _row_index_table) for w in range(workers)]
        live = [True] * workers
        while any(live):
            if live[turn]:
                table = next(streams[turn], None)
                if table is None:
                    live[turn] = False
                else:
                    yield table.column(0).to_numpy()
            turn = (turn + 1) % workers

    def rank_pieces(self) -> list[Piece]:
        """All row-group slices this rank reads in an epoch."""
        return pieces_for(self.groups, *rank_range(self.total_rows, self.rank, self.world_size))

    # ----------------------------------------------------------------- reading
    def read_piece(self, piece: Piece, files: dict[str, pq.ParquetFile], check_labels: bool = True) -> pa.Table:
        """Read one slice, checking its values (errors name the file and column).

        ``check_labels=False`` leaves the binary-label check to the caller.
        """
        parquet = files.get(piece.group.path)
        if parquet is None:
            parquet = files[piece.group.path] = open_parquet(piece.group.path)
        try:
            table = parquet.read_row_group(piece.group.index, columns=self.columns)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(piece.group.path, f"row group {piece.group.index} is corrupt ({exc})") from None
        table = table.slice(piece.offset, piece.length)
        check_values(table, self.schema, piece.group.path)
        if check_labels and self.labels is not None:
            for count in self.labels.counts(table):
                if count.count:
                    raise DataError(piece.group.path, self.labels.message(count, f"in row group {piece.group.index}"),
                                    column=count.column)
        if check_labels and self.label_check is not None:
            self.label_check(table, piece.group.path)
        return table

    def _tables(self, pieces: list[Piece], rng: Optional[np.random.Generator], skip_rows: int,
                read: Callable[[Piece, dict], pa.Table]) -> Iterator[pa.Table]:
        """The worker's row stream (shuffled by ``rng`` if given) without its first ``skip_rows`` rows."""
        files: dict[str, pq.ParquetFile] = {}
        if rng is None:
            start = pieces[0].group.first_row + pieces[0].offset + skip_rows if pieces else 0
            for piece in pieces:
                begin = piece.group.first_row + piece.offset
                cut = max(0, start - begin)
                if cut < piece.length:
                    yield read(Piece(piece.group, piece.offset + cut, piece.length - cut), files)
            return
        order = rng.permutation(len(pieces))
        window: list[Piece] = []
        window_rows = 0
        for position, i in enumerate(order):
            window.append(pieces[i])
            window_rows += pieces[i].length
            if window_rows < self.shuffle_buffer and position < len(order) - 1:
                continue
            if skip_rows >= window_rows:  # consumed before the position: advance the generator only
                rng.permutation(window_rows)
                skip_rows -= window_rows
            else:
                table = _shuffled(pa.concat_tables([read(p, files) for p in window]), rng)
                yield table.slice(skip_rows)
                skip_rows = 0
            window, window_rows = [], 0

    def _worker_stream(self, worker: int, num_workers: int, batches_done: int,
                       read: Callable[[Piece, dict], pa.Table]) -> Iterator[pa.Table]:
        """Tables of the batches of ``worker`` after its first ``batches_done``."""
        bounds = self.worker_batches(worker, num_workers)
        if len(bounds) < 2:
            return iter(())
        pieces = pieces_for(self.groups, int(bounds[0]), int(bounds[-1]))
        rng = None
        if self.shuffle_buffer > 0:
            rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker])
        sizes = np.diff(bounds)
        skip_rows = int(sizes[:batches_done].sum())
        return _rebatch(self._tables(pieces, rng, skip_rows, read), sizes[batches_done:])

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        loader_worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        done, turn = self.worker_schedule(num_workers)
        # The loader starts its round robin at its worker 0: let that one play the worker due next.
        worker = (loader_worker + turn) % num_workers
        tables = self._worker_stream(worker, num_workers, done[worker], self.read_piece)
        yield from (table_to_batch(t, self.schema, checked=True) for t in tables)


def _shuffled(table: pa.Table, rng: np.random.Generator) -> pa.Table:
    return table.take(pa.array(rng.permutation(table.num_rows)))


def _row_index_table(piece: Piece, files: dict) -> pa.Table:
    """Stand-in for a piece's rows: their global indices (what :meth:`ParquetBatches.row_ids` tracks)."""
    start = piece.group.first_row + piece.offset
    return pa.table({"row": np.arange(start, start + piece.length, dtype=np.int64)})


def _rebatch(tables: Iterator[pa.Table], sizes: np.ndarray) -> Iterator[pa.Table]:
    """Cut a stream of tables into tables of exactly ``sizes[k]`` rows."""
    pending: list[pa.Table] = []
    pending_rows = 0
    k = 0
    for table in tables:
        pending.append(table)
        pending_rows += table.num_rows
        while k < len(sizes) and pending_rows >= sizes[k]:
            merged = pa.concat_tables(pending) if len(pending) > 1 else pending[0]
            size = int(sizes[k])
            yield merged.slice(0, size)
            rest = merged.slice(size)
            pending, pending_rows = ([rest] if rest.num_rows else []), rest.num_rows
            k += 1
    if k != len(sizes) or pending_rows:
        raise RuntimeError(f"row accounting mismatch: {k}/{len(sizes)} batches, {pending_rows} rows left")


def make_loader(dataset: ParquetBatches, num_workers: int = 0) -> DataLoader:
    """A DataLoader yielding ``Batch`` es of ``dataset`` (batching is done by the dataset).

    It draws its worker seed from a generator of its own, not torch's global one,
    so starting a loader (e.g. mid-epoch after a resume) leaves the model's random
    stream (dropout) exactly where an uninterrupted run has it. Its workers ignore
    SIGTERM/SIGINT: a job being preempted finishes its step with them
    (``bigrec.train.preemption``); they exit with the loader.
    """
    return DataLoader(
        dataset,
        batch_size=None,
        generator=torch.Generator().manual_seed(0),
        num_workers=num_workers,
        persistent_workers=False,
        prefetch_factor=4 if num_workers else None,
        multiprocessing_context="fork" if num_workers else None,
        worker_init_fn=_ignore_stop_signals if num_workers else None,
    )


def _ignore_stop_signals(worker_id: int) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)


def validate_rank_data(dataset: ParquetBatches) -> None:
    """Read and check every row this rank will see (before training starts).

    Bad binary labels are counted over all of this rank's rows of a file before
    the error is raised, so its count is the file's (the rank's share of it).
    """
    files: dict[str, pq.ParquetFile] = {}
    totals: dict[str, dict[str, LabelCount]] = {}
    for piece in dataset.rank_pieces():
        table = dataset.read_piece(piece, files, check_labels=False)
        if dataset.labels is not None:
            add_label_counts(totals.setdefault(piece.group.path, {}), dataset.labels.counts(table))
        if dataset.label_check is not None:
            dataset.label_check(table, piece.group.path)
    where = "" if dataset.world_size == 1 else f"in rank {dataset.rank}'s share"
    for path, columns in totals.items():
        for count in columns.values():
            if count.count:
                raise DataError(path, dataset.labels.message(count, where), column=count.column)


def open_split(spec: str, schema: Schema, batch_size: int, rank: int, world_size: int,
               shuffle_buffer: int = 0, seed: int = 0, labels: Optional[BinaryLabels] = None,
               label_check: Optional[Callable[[pa.Table, str], None]] = None) -> ParquetBatches:
    """``ParquetBatches`` for a file/dir/glob ``spec``."""
    return ParquetBatches(list_parquet_files(spec), schema, batch_size, rank, world_size, shuffle_buffer, seed,
                          labels, label_check)


__all__ = ["ParquetBatches", "make_loader", "open_split", "validate_rank_data", "steps_per_epoch",
           "rank_range", "list_parquet_files"]
