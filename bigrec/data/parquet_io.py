"""Small Parquet helpers shared by the data preparers.

Every prepared data set is a directory holding ``train.parquet``,
``valid.parquet``, ``test.parquet`` and ``schema.json`` (a :class:`bigrec.features.Schema`).
Files are written under a temporary name and renamed into place, so a crashed
run never leaves a half-written file that looks complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from bigrec.features import Schema

SPLITS = ("train", "valid", "test")
DEFAULT_ROW_GROUP_SIZE = 8192
ITEM_CATALOGUE = "items.parquet"


def _check_row_group_size(row_group_size: int) -> int:
    row_group_size = int(row_group_size)
    if row_group_size <= 0:
        raise ValueError(f"row_group_size must be > 0, got {row_group_size}")
    return row_group_size


def write_table(table: pa.Table, path: str | Path, row_group_size: int = DEFAULT_ROW_GROUP_SIZE) -> Path:
    """Write ``table`` to ``path`` as Parquet with row groups of ``row_group_size`` rows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, row_group_size=_check_row_group_size(row_group_size))
    os.replace(tmp, path)
    return path


def write_json(obj, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def write_schema(schema: Schema, directory: str | Path) -> Path:
    """Write ``directory/schema.json`` (atomically)."""
    path = Path(directory) / "schema.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    schema.save(tmp)
    os.replace(tmp, path)
    return path


def write_split_dir(
    directory: str | Path,
    splits: Mapping[str, pa.Table],
    schema: Schema,
    row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
) -> Path:
    """Write ``<split>.parquet`` for every table in ``splits`` plus ``schema.json``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for split, table in splits.items():
        write_table(table, directory / f"{split}.parquet", row_group_size)
    write_schema(schema, directory)
    return directory


def write_item_catalogue(directory: str | Path, items: pa.Table, schema: Schema,
                         row_group_size: int = DEFAULT_ROW_GROUP_SIZE) -> Path:
    """Write a recall data set's item catalogue, ``directory/items.parquet``, and record it in ``schema``.

    ``items`` holds one row per item id that exists (``item_id`` plus every item-side
    feature, typed as in the splits); ``schema.metadata["item_catalogue"]`` is its path
    relative to ``schema.json``.
    """
    missing = [f.name for f in schema.side("item") if f.name not in items.column_names]
    if missing:
        raise ValueError(f"the item catalogue lacks item-side feature(s) {missing}")
    schema.metadata["item_catalogue"] = ITEM_CATALOGUE
    return write_table(items, Path(directory) / ITEM_CATALOGUE, row_group_size)


def _encodings(schema: pa.Schema, compression: str, delta_ints: bool) -> dict:
    """``pq.ParquetWriter`` options: ``compression`` everywhere; with ``delta_ints`` the integer columns (ids)
    are written DELTA_BINARY_PACKED (bit-packed, no dictionary, no codec): no hashing per value, 40% less CPU
    to write than dictionary + snappy, files ~10% larger, read back as fast."""
    ints = [f.name for f in schema if pa.types.is_integer(f.type)] if delta_ints else []
    if not ints:
        return {"compression": compression}
    return {"compression": {f.name: "none" if f.name in ints else compression for f in schema},
            "use_dictionary": [f.name for f in schema if f.name not in ints],
            "column_encoding": {name: "DELTA_BINARY_PACKED" for name in ints}}


class ChunkedParquetWriter:
    """Append ``pa.Table`` chunks to one Parquet file without holding them all.

    Use as a context manager; the file appears under its final name only after a
    clean ``close()``. Row groups hold ``row_group_size`` rows except where a chunk
    ends, so chunk sizes should be multiples of ``row_group_size``.
    """

    def __init__(self, path: str | Path, schema: pa.Schema, row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
                 compression: str = "snappy", write_statistics: bool = True, delta_ints: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(self.path.name + ".tmp")
        self.row_group_size = _check_row_group_size(row_group_size)
        self._writer = pq.ParquetWriter(self._tmp, schema, write_statistics=write_statistics,
                                        **_encodings(schema, compression, delta_ints))
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(table, row_group_size=self.row_group_size)
        self.rows += table.num_rows

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            os.replace(self._tmp, self.path)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "ChunkedParquetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
