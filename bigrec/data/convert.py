"""Vectorised Arrow → :class:`~bigrec.batch.Batch` conversion and value checks.

No per-row Python: ids go through NumPy views of Arrow buffers, list columns are
handled through their offsets.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from bigrec.batch import Batch
from bigrec.errors import DataError
from bigrec.features import DenseFeature, IdFeature, Schema, SequenceFeature, SparseFeature

_HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing constant


def check_arrow_schema(schema: Schema, arrow_schema: pa.Schema, path: str) -> None:
    """Raise DataError if a column the schema needs is missing or has the wrong type."""
    for feature in schema.features:
        _check_column_type(arrow_schema, feature.name, path, _expected_kind(feature))
    for label in schema.labels:
        _check_column_type(arrow_schema, label, path, "number")


def _expected_kind(feature) -> str:
    if isinstance(feature, DenseFeature):
        return "number" if feature.dim == 1 else "float_list"
    if isinstance(feature, SequenceFeature) or feature.multi_valued:
        return "int_list"
    return "int"


def _check_column_type(arrow_schema: pa.Schema, name: str, path: str, kind: str) -> None:
    index = arrow_schema.get_field_index(name)
    if index < 0:
        raise DataError(path, "column is missing", column=name)
    dtype = arrow_schema.field(index).type
    list_value = dtype.value_type if pa.types.is_list(dtype) or pa.types.is_large_list(dtype) else None
    ok = {
        "int": pa.types.is_integer(dtype),
        "number": pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_boolean(dtype),
        "int_list": list_value is not None and pa.types.is_integer(list_value),
        "float_list": list_value is not None and (pa.types.is_floating(list_value) or pa.types.is_integer(list_value)),
    }[kind]
    if not ok:
        wanted = {"int": "an integer id", "number": "a number", "int_list": "a list of integer ids",
                  "float_list": "a list of numbers"}[kind]
        raise DataError(path, f"has type {dtype}, expected {wanted}", column=name)


def _column(table: pa.Table, name: str) -> pa.Array:
    column = table.column(name)
    if column.num_chunks == 1:
        return column.chunk(0)
    return column.combine_chunks()


def check_values(table: pa.Table, schema: Schema, path: str) -> None:
    """Reject nulls, NaN/inf in dense or label columns, and out-of-range ids under
    the ``error`` policy; the DataError names ``path`` and the column.

    Runs in Arrow's C++ kernels (a min/max and a finiteness pass per column).
    """
    numeric = [(f.name, "dense") for f in schema.dense] + [(name, "label") for name in schema.labels]
    for name, what in numeric:
        array = _column(table, name)
        values = array.flatten() if pa.types.is_list(array.type) else array
        if array.null_count or values.null_count:
            raise DataError(path, f"{what} column has null value(s)", column=name)
        if pa.types.is_floating(values.type):
            bad = len(values) - pc.sum(pc.is_finite(values)).as_py() if len(values) else 0
            if bad:
                raise DataError(path, f"{what} column has {bad} NaN/inf value(s)", column=name)
    for feature in schema.id_features:
        array = _column(table, feature.name)
        values = array.flatten() if pa.types.is_list(array.type) else array
        if values.null_count or (not pa.types.is_list(array.type) and array.null_count):
            raise DataError(path, "id column has null value(s)", column=feature.name)
        if feature.id_policy != "error" or len(values) == 0:
            continue
        bounds = pc.min_max(values).as_py()
        if bounds["min"] < 0 or bounds["max"] >= feature.vocab_size:
            bad = pc.sum(pc.or_(pc.less(values, 0), pc.greater_equal(values, feature.vocab_size))).as_py()
            worst = bounds["min"] if bounds["min"] < 0 else bounds["max"]
            raise DataError(path, f"{bad} id(s) outside [0, {feature.vocab_size}) (e.g. {worst}); raise "
                            f"vocab_size or set the feature's id_policy to 'modulo' or 'hash'",
                            column=feature.name)


def _float_matrix(table: pa.Table, names: list[str]) -> np.ndarray:
    """Stack numeric columns into ``[B, len(names)]`` float32."""
    out = np.empty((table.num_rows, len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        out[:, j] = _column(table, name).to_numpy(zero_copy_only=False)
    return out


def _dense_matrix(table: pa.Table, features: list[DenseFeature], path: str) -> np.ndarray:
    """``[B, sum(dim)]`` float32 in schema order (list columns give ``dim`` columns)."""
    out = np.empty((table.num_rows, sum(f.dim for f in features)), dtype=np.float32)
    cursor = 0
    for feature in features:
        array = _column(table, feature.name)
        if feature.dim == 1:
            out[:, cursor] = array.to_numpy(zero_copy_only=False)
        else:
            flat = array.flatten().to_numpy(zero_copy_only=False)
            if flat.size != table.num_rows * feature.dim:
                raise DataError(path, f"every row must hold exactly {feature.dim} values", column=feature.name)
            out[:, cursor:cursor + feature.dim] = flat.reshape(table.num_rows, feature.dim)
        cursor += feature.dim
    return out


def _apply_id_policy(ids: np.ndarray, feature: IdFeature) -> np.ndarray:
    size = feature.vocab_size
    if feature.id_policy == "hash":
        hashed = ids.astype(np.uint64) * _HASH_MULTIPLIER
        return (hashed % np.uint64(size)).astype(np.int64)
    if feature.id_policy == "modulo":
        return np.mod(ids, size)
    return ids


def ids_and_lengths(table: pa.Table, feature: IdFeature, ones: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(ids int64 [N], lengths int32 [B])`` of one feature, policy applied.

    ``ones`` is a ``[B]`` array of ones, shared as the lengths of single-id features.
    """
    array = _column(table, feature.name)
    if isinstance(feature, SparseFeature) and not feature.multi_valued:
        ids = array.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        return _apply_id_policy(ids, feature), ones
    # list column: a null list is an empty list
    lengths = pc.fill_null(pc.list_value_length(array), 0).to_numpy(zero_copy_only=False).astype(np.int32)
    ids = array.flatten().to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    if isinstance(feature, SequenceFeature) and lengths.size and lengths.max() > feature.max_len:
        ids, lengths = _keep_most_recent(ids, lengths, feature.max_len)
    return _apply_id_policy(ids, feature), lengths


def _keep_most_recent(ids: np.ndarray, lengths: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Truncate each list to its last ``max_len`` values (lists are oldest first)."""
    ends = np.cumsum(lengths, dtype=np.int64)
    kept = np.minimum(lengths, max_len)
    starts = ends - kept
    # index of every kept value: starts repeated, plus a within-row counter
    row_offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(kept)[:-1])), kept)
    index = np.arange(kept.sum(), dtype=np.int64) + row_offsets
    return ids[index], kept.astype(np.int32)


def _kjt(table: pa.Table, features: list[IdFeature]) -> KeyedJaggedTensor:
    if not features:
        return KeyedJaggedTensor.empty(values_dtype=torch.int64)
    ones = np.ones(table.num_rows, dtype=np.int32)
    all_ids, all_lengths = zip(*(ids_and_lengths(table, f, ones) for f in features))
    return KeyedJaggedTensor(
        keys=[f.name for f in features],
        values=torch.from_numpy(np.concatenate(all_ids)),
        lengths=torch.from_numpy(np.concatenate(all_lengths)),
        stride=table.num_rows,
    )


def table_to_batch(table: pa.Table, schema: Schema, path: str = "<memory>", checked: bool = False) -> Batch:
    """Convert ``table`` (B rows, the schema's columns) into a Batch.

    Values are checked with :func:`check_values` first unless ``checked`` says the
    caller already did (the Parquet stream checks each row group as it reads it).
    """
    if not checked:
        check_values(table, schema, path)
    table = table.combine_chunks()  # one pass over all columns; each column is then a single chunk
    pooled = [schema[name] for name in schema.pooled_keys]
    sequences = [schema[name] for name in schema.sequence_keys]
    return Batch(
        dense=torch.from_numpy(_dense_matrix(table, schema.dense, path)),
        sparse_features=_kjt(table, pooled),
        sequence_features=_kjt(table, sequences),
        labels=torch.from_numpy(_float_matrix(table, schema.labels)),
    )


def columns_of(schema: Schema) -> list[str]:
    """The Parquet columns a schema reads."""
    return [f.name for f in schema.features] + list(schema.labels)
