"""What every converter shares: run settings (memory cap, file sizes), spill files, the final write-out."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa

from bigrec.data.converters.badinput import BadInput
from bigrec.data.converters.keys import mix64
from bigrec.data.converters.output import OutputDir, Stats, summary_lines
from bigrec.data.converters.vocab import Vocabulary
from bigrec.data.parquet_io import write_json, write_schema
from bigrec.features import Schema

MiB = 1 << 20


@dataclass
class Settings:
    """Options every converter takes (``bigrec data <name> --help``)."""

    source: Path
    output: Path
    memory_mb: int = 2048
    strict: bool = False
    rows_per_file: int = 2_000_000
    row_group_size: int = 65536
    embedding_dim: int = 16
    workers: int = 2
    progress: bool = True
    temp_dir: str | None = None
    seed: int = 0
    config: str | None = None
    overrides: list = field(default_factory=list)
    partition_count: int = 0  # spill partitions; 0 = from the memory cap and the input size
    compression: str = "snappy"  # Parquet codec of the output files

    @property
    def cap_bytes(self) -> int:
        return int(self.memory_mb) * MiB

    @property
    def block_bytes(self) -> int:
        """Raw text per parsed block: a 1/64 of the cap, between 256 KiB and 32 MiB."""
        return int(min(32 * MiB, max(MiB // 4, self.cap_bytes // 64)))

    def counter_budget(self, counters: int) -> int:
        """Memory for counting distinct values, per vocabulary: a quarter of the cap shared out."""
        return self.cap_bytes // 4 // max(1, counters)

    def partitions(self, input_bytes: int, expansion: float = 6.0) -> int:
        """Spill partitions so that one partition, ``expansion`` times its raw size in memory, fits a quarter
        of the cap (a power of two, 1 to 1024)."""
        if self.partition_count:
            return self.partition_count
        needed = input_bytes * expansion / max(1, self.cap_bytes // 4)
        return int(min(1024, 1 << max(0, int(np.ceil(np.log2(max(needed, 1)))))))


_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameters
_M_TRIM_THRESHOLD = -1


def fix_heap_growth(threshold: int = MiB, keep_free: int = 64 * MiB) -> None:
    """Have glibc serve every allocation of ``threshold`` bytes or more (NumPy's arrays of a block) by ``mmap``,
    returned to the system when freed. Left alone, glibc raises that threshold each time such a block is freed,
    and from then on keeps the freed blocks in its heaps: a converter's RSS then grows with the input (measured:
    +174 MiB from 1M to 10M Criteo lines) although what it holds does not. Fixing that threshold also fixes the
    trim threshold at glibc's 128 KiB default: the heap's free top was then given back after nearly every block
    and faulted in again by the next one's arrays (a quarter of the converter's page faults); ``keep_free``
    bytes of it are kept instead (a bound, not a growth). Process-wide; a no-op without glibc."""
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, int(threshold))
        libc.mallopt(_M_TRIM_THRESHOLD, int(keep_free))
    except (AttributeError, OSError, TypeError):
        pass


class SpillFile:
    """Record batches appended to one Arrow IPC stream on disk (dictionaries may change from batch to batch),
    read back in order: all, or chosen ones."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._writer = None
        self.rows = 0
        self.batch_rows: list[int] = []  # rows of every record batch written, in order

    def write(self, table: pa.Table | pa.RecordBatch) -> None:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pa.ipc.new_stream(str(self.path), table.schema)
        for batch in table.to_batches() if isinstance(table, pa.Table) else [table]:
            self._writer.write_batch(batch)
            self.batch_rows.append(batch.num_rows)
        self.rows += table.num_rows

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def batches(self, indices: list[int] | None = None) -> Iterator[pa.RecordBatch]:
        """Every batch in order, or those of ``indices`` (ascending; the others are read past)."""
        if not self.path.exists():
            return
        wanted = None if indices is None else set(indices)
        with pa.OSFile(str(self.path), "rb") as source:
            for i, batch in enumerate(pa.ipc.open_stream(source)):
                if wanted is None or i in wanted:
                    yield batch

    def read_all(self) -> pa.Table | None:
        batches = list(self.batches())
        return pa.Table.from_batches(batches) if batches else None


class PartitionedSpill:
    """Rows spread over ``count`` spill files by a hash of a key (a user, a join key), so that all rows of
    one key land in one partition; each partition is then processed on its own."""

    def __init__(self, directory: Path, name: str, count: int) -> None:
        self.count = int(count)
        self.files = [SpillFile(Path(directory) / f"{name}-{p:04d}.arrow") for p in range(self.count)]

    def write(self, table: pa.Table, keys: np.ndarray) -> None:
        if not table.num_rows:
            return
        part = (mix64(keys) % np.uint64(self.count)).astype(np.int64)
        order = np.argsort(part, kind="stable")
        bounds = np.searchsorted(part[order], np.arange(self.count + 1))
        table = table.take(pa.array(order))
        for p in range(self.count):
            if bounds[p + 1] > bounds[p]:
                self.files[p].write(table.slice(int(bounds[p]), int(bounds[p + 1] - bounds[p])))

    def close(self) -> None:
        for spill in self.files:
            spill.close()

    def __iter__(self) -> Iterator[pa.Table]:
        for spill in self.files:
            table = spill.read_all()
            if table is not None:
                yield table


def finish(out: OutputDir, schema: Schema, vocabularies: dict[str, Vocabulary], stats: Stats, bad: BadInput,
           started: float, extra: dict | None = None, directory: Path | None = None) -> dict:
    """Write vocabularies, ``schema.json`` and ``stats.json`` into ``directory`` (default: the output root)
    and print the summary; returns the stats."""
    directory = directory or out.path
    for vocab in vocabularies.values():
        vocab.save(directory)
    write_schema(schema, directory)
    result = stats.to_dict()
    result["input"] = bad.to_dict()
    result["seconds"] = round(time.perf_counter() - started, 3)
    result.update(extra or {})
    write_json(result, directory / "stats.json")
    return result


def print_summary(name: str, output: Path, results: dict[str, dict], bad: BadInput) -> None:
    for part, stats in results.items():
        where = output / part if part else output
        rows = sum(entry["rows"] for entry in stats["splits"].values())
        print(f"{where}: {rows:,} rows in {stats['seconds']:.1f}s ({rows / max(stats['seconds'], 1e-9):,.0f} rows/s)")
        for line in summary_lines(stats):
            print(f"  {line}")
    for line in bad.summary_lines():
        print(line)
    print(f"prepared {name}: {json.dumps({p or '.': {s: e['rows'] for s, e in r['splits'].items()} for p, r in results.items()})}")
