"""Converter output: an atomically renamed directory of bounded Parquet files, with statistics.

Layout of a converted data set::

    OUTPUT/train/part-00000.parquet ...   each file at most rows_per_file rows, row groups of
    OUTPUT/valid/part-00000.parquet ...   row_group_size rows (the trainer streams row group by
    OUTPUT/test/part-00000.parquet ...    row group; ranks and workers split the rows evenly)
    OUTPUT/schema.json                    features (with sides), labels, vocabularies, transforms
    OUTPUT/stats.json                     rows, label rates, per-feature cardinality and OOV rate
    OUTPUT/vocab/<name>.parquet           id, raw value, count of every thresholded vocabulary

Everything is written under a hidden sibling ``.NAME.tmp-PID`` and renamed to
``OUTPUT`` only when the run succeeds; a failed run removes it, so no
half-written data set ever carries the final name.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bigrec.data.parquet_io import ChunkedParquetWriter
from bigrec.data.parquet_io import SPLITS as SPLITS  # noqa: PLC0414  (re-exported for the converters)
from bigrec.errors import ConfigError

_BOOL_LIMIT = 1 << 24
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)


class OutputDir:
    """``with OutputDir(final) as out:`` write under ``out.path``; renamed to ``final`` on success.

    ``out.work`` is a scratch directory for spill files (under ``temp_dir`` when given),
    removed in both cases. An existing ``final`` is replaced only if it holds a
    converted data set (a ``stats.json``), never an unrelated directory.
    """

    def __init__(self, final: str | Path, temp_dir: str | Path | None = None) -> None:
        self.final = Path(final)
        if self.final.exists() and any(self.final.iterdir()) and not (self.final / "stats.json").is_file():
            raise ConfigError(f"{self.final}: exists and is not a converted data set (no stats.json); "
                              "choose an empty or new output directory")
        self.path = self.final.parent / f".{self.final.name}.tmp-{os.getpid()}"
        root = Path(temp_dir) if temp_dir else self.path
        self.work = root / f"_work-{os.getpid()}"

    def __enter__(self) -> "OutputDir":
        self.final.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(parents=True)
        self.work.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
        if exc_type is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        old = None
        if self.final.exists():
            old = self.final.parent / f".{self.final.name}.old-{os.getpid()}"
            os.replace(self.final, old)
        os.replace(self.path, self.final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


class SplitWriter:
    """One split as ``directory/part-NNNNN.parquet`` files of at most ``rows_per_file`` rows.

    Rows are buffered into row groups of exactly ``row_group_size`` (the last one of
    the split may be shorter); every table written is also given to ``stats``.
    """

    def __init__(self, directory: Path, rows_per_file: int, row_group_size: int, stats: "Stats | None" = None,
                 split: str = "", compression: str = "snappy") -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.row_group_size = int(row_group_size)
        self.rows_per_file = max(1, -(-int(rows_per_file) // self.row_group_size)) * self.row_group_size
        self.stats, self.split, self.compression = stats, split, compression
        self.rows = 0
        self.files = 0
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._writer: ChunkedParquetWriter | None = None
        self._file_rows = 0
        self._schema: pa.Schema | None = None

    def write(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        if self._schema is None:
            self._schema = table.schema
        elif table.schema != self._schema:
            table = table.cast(self._schema)
        if self.stats is not None:
            self.stats.observe(self.split, table)
        self._buffer.append(table)
        self._buffered += table.num_rows
        if self._buffered >= self.row_group_size:
            merged = pa.concat_tables(self._buffer)
            full = (merged.num_rows // self.row_group_size) * self.row_group_size
            for start in range(0, full, self.row_group_size):
                self._emit(merged.slice(start, self.row_group_size))
            rest = merged.slice(full)
            self._buffer, self._buffered = ([rest] if rest.num_rows else []), rest.num_rows

    def _emit(self, table: pa.Table) -> None:
        if self._writer is None or self._file_rows >= self.rows_per_file:
            self._close_file()
            path = self.directory / f"part-{self.files:05d}.parquet"
            # no min/max statistics: nothing filters row groups by them, and they cost a tenth of the writing;
            # ids bit-packed (DELTA_BINARY_PACKED) rather than dictionary-encoded: no hash per value
            self._writer = ChunkedParquetWriter(path, self._schema, self.row_group_size, self.compression,
                                                write_statistics=False, delta_ints=True)
            self.files += 1
        self._writer.write(table)  # chunks as they come: one row group per call, no copy to join them
        self._file_rows += table.num_rows
        self.rows += table.num_rows

    def _close_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer, self._file_rows = None, 0

    def close(self) -> None:
        if self._buffered:
            self._emit(pa.concat_tables(self._buffer))
            self._buffer, self._buffered = [], 0
        self._close_file()


def open_split_writers(root: Path, rows_per_file: int, row_group_size: int, stats: "Stats",
                       splits=SPLITS, compression: str = "snappy") -> dict[str, SplitWriter]:
    return {s: SplitWriter(root / s, rows_per_file, row_group_size, stats, s, compression) for s in splits}


class Stats:
    """Rows and label rates per split; per id feature the distinct ids written (but 0) and the out-of-vocabulary
    and missing rates per split (from the ids themselves: 1 = OOV where the vocabulary has one, 0 = missing);
    per dense feature the mean and standard deviation of the values written."""

    def __init__(self, labels: list[str], id_sizes: dict[str, int], oov_features: set[str],
                 dense: list[str]) -> None:
        self.labels = list(labels)
        self.id_sizes = dict(id_sizes)
        self.oov_features = set(oov_features)
        self.dense = list(dense)
        self.rows: dict[str, int] = {}
        self.label_sums: dict[str, dict[str, float]] = {}
        self.counts: dict[str, dict[str, np.ndarray]] = {}  # split -> feature -> [values, oov, missing]
        self.moments: dict[str, dict[str, np.ndarray]] = {}  # split -> feature -> [n, sum, sum of squares]
        # ids written per feature: a bool per id, or a bit per id for tables over 2**24 rows
        self.seen = {name: np.zeros(size if size <= _BOOL_LIMIT else (size + 7) // 8,
                                    dtype=bool if size <= _BOOL_LIMIT else np.uint8)
                     for name, size in self.id_sizes.items()}

    def observe(self, split: str, table: pa.Table) -> None:
        self.rows[split] = self.rows.get(split, 0) + table.num_rows
        sums = self.label_sums.setdefault(split, {label: 0.0 for label in self.labels})
        for label in self.labels:
            sums[label] += float(pc.sum(table.column(label)).as_py() or 0.0)
        counts = self.counts.setdefault(split, {})
        for name in self.id_sizes:
            column = table.column(name)
            if pa.types.is_list(column.type):
                column = pc.list_flatten(column)
            ids = column.to_numpy() if isinstance(column, pa.Array) else np.concatenate(
                [c.to_numpy(zero_copy_only=False) for c in column.chunks] or [np.zeros(0, np.int64)])
            missing = int(np.count_nonzero(ids == 0))
            oov = int(np.count_nonzero(ids == 1)) if name in self.oov_features else 0
            entry = counts.setdefault(name, np.zeros(3, dtype=np.int64))
            entry += (ids.size - missing, oov, missing)
            seen = self.seen[name]
            if seen.dtype == bool:
                seen[ids] = True
            else:
                unique = np.unique(ids)
                np.bitwise_or.at(seen, unique >> 3, (1 << (unique & 7)).astype(np.uint8))
        moments = self.moments.setdefault(split, {})
        for name in self.dense:
            values = table.column(name).to_numpy().astype(np.float64)
            moments.setdefault(name, np.zeros(3)).__iadd__((values.size, values.sum(), (values ** 2).sum()))

    def to_dict(self) -> dict:
        splits = {}
        for split, rows in self.rows.items():
            rates = {label: (self.label_sums[split][label] / rows if rows else None) for label in self.labels}
            splits[split] = {"rows": rows, "label_rate": rates}
        features = {}
        for name, size in self.id_sizes.items():
            seen = self.seen[name]
            distinct = int(seen[1:].sum()) if seen.dtype == bool else int(_POPCOUNT[seen].sum()) - int(seen[0] & 1)
            entry = {"vocab_size": size, "distinct_ids": distinct,  # id 0 (missing / padding) is not a value
                     "oov_rate": {}, "missing_rate": {}}
            for split, counts in self.counts.items():
                values, oov, missing = (int(v) for v in counts[name])
                entry["oov_rate"][split] = oov / values if values else 0.0
                entry["missing_rate"][split] = missing / (values + missing) if values + missing else 0.0
            features[name] = entry
        dense = {}
        for name in self.dense:
            dense[name] = {}
            for split, moments in self.moments.items():
                n, total, squares = moments[name]
                mean = total / n if n else 0.0
                dense[name][split] = {"mean": mean, "std": float(np.sqrt(max(squares / n - mean * mean, 0.0))) if n else 0.0}
        return {"splits": splits, "features": features, "dense": dense}


def summary_lines(stats: dict, limit: int = 40) -> list[str]:
    """A short plain-text table of ``stats.json``: rows and label rates, then per feature."""
    out = []
    for split, entry in stats["splits"].items():
        rates = ", ".join(f"{label} {rate:.4f}" for label, rate in entry["label_rate"].items() if rate is not None)
        out.append(f"{split:>6}: {entry['rows']:>12,} rows" + (f"  ({rates})" if rates else ""))
    names = list(stats["features"])
    if names:
        out.append(f"{'feature':<22}{'vocab':>12}{'distinct':>12}{'OOV train':>11}{'OOV test':>10}{'missing':>9}")
    for name in names[:limit]:
        f = stats["features"][name]
        out.append(f"{name:<22}{f['vocab_size']:>12,}{f['distinct_ids']:>12,}"
                   f"{f['oov_rate'].get('train', 0.0):>11.4f}{f['oov_rate'].get('test', 0.0):>10.4f}"
                   f"{f['missing_rate'].get('train', 0.0):>9.4f}")
    if len(names) > limit:
        out.append(f"... {len(names) - limit} more in stats.json")
    return out
