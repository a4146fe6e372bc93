"""Parquet streaming: exactly-once sharding, equal steps, truncation, vectorised conversion."""

import collections

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from bigrec.data.convert import table_to_batch
from bigrec.data.stream import ParquetBatches, make_loader, steps_per_epoch
from bigrec.features import DenseFeature, Schema, SequenceFeature, SparseFeature

SCHEMA = Schema(
    [SparseFeature("row_id", 10_000), SparseFeature("tags", 30, multi_valued=True),
     SequenceFeature("hist", 100, table="h", max_len=4), DenseFeature("x"), DenseFeature("v", dim=2)],
    labels=["y"],
)


def write_files(directory, sizes_and_groups):
    """Files of consecutive row ids with the given (rows, row_group_size)."""
    start = 0
    for i, (rows, group) in enumerate(sizes_and_groups):
        ids = np.arange(start, start + rows, dtype=np.int64)
        table = pa.table({
            "row_id": ids,
            "tags": pa.array([[int(j % 30)] * int(j % 3) for j in ids], type=pa.list_(pa.int64())),
            "hist": pa.array([list(range(int(j % 7))) for j in ids], type=pa.list_(pa.int64())),
            "x": ids.astype(np.float32),
            "v": pa.array([[float(j), -float(j)] for j in ids], type=pa.list_(pa.float32())),
            "y": (ids % 2).astype(np.float32),
        })
        pq.write_table(table, directory / f"part-{i}.parquet", row_group_size=group)
        start += rows
    return sorted(str(p) for p in directory.glob("*.parquet")), start


@pytest.mark.parametrize("world_size, workers, batch_size, shuffle", [
    (2, 2, 64, 0), (2, 2, 50, 300), (3, 2, 17, 0), (1, 3, 1000, 128), (2, 1, 7, 0),
])
def test_every_row_once_and_equal_steps(tmp_path, world_size, workers, batch_size, shuffle):
    files, total = write_files(tmp_path, [(600, 100), (437, 77), (5, 2)])
    seen = collections.Counter()
    steps = []
    for rank in range(world_size):
        dataset = ParquetBatches(files, SCHEMA, batch_size, rank, world_size, shuffle_buffer=shuffle, seed=3)
        batches = list(make_loader(dataset, workers))
        steps.append(len(batches))
        for batch in batches:
            assert 1 <= batch.batch_size <= batch_size
            ids = batch.sparse_features["row_id"].values()
            seen.update(ids.tolist())
            # every column of a row stays with that row
            assert torch.equal(batch.dense[:, 0], ids.float())
            assert torch.equal(batch.dense[:, 2], -ids.float())
            assert torch.equal(batch.labels[:, 0], (ids % 2).float())
    assert sorted(seen) == list(range(total)) and set(seen.values()) == {1}
    assert steps == [steps_per_epoch(total, world_size, batch_size)] * world_size


def test_shuffle_changes_order_per_epoch_but_not_the_rows(tmp_path):
    files, total = write_files(tmp_path, [(1000, 100)])
    dataset = ParquetBatches(files, SCHEMA, 100, shuffle_buffer=300, seed=0)
    orders = []
    for epoch in range(2):
        dataset.set_epoch(epoch)
        orders.append(torch.cat([b.sparse_features["row_id"].values() for b in make_loader(dataset)]).tolist())
    assert sorted(orders[0]) == sorted(orders[1]) == list(range(total))
    assert orders[0] != orders[1] and orders[0] != list(range(total))


def test_sequences_keep_the_most_recent_ids_and_ids_stay_int64():
    big = 2**40 + 7  # beyond float32's exact range
    table = pa.table({
        "row_id": pa.array([1, 2, 3], pa.int64()),
        "tags": pa.array([[], [5, 6], None], pa.list_(pa.int64())),
        "hist": pa.array([[1, 2, 3, 4, 5, 6], [], [9]], pa.list_(pa.int64())),
        "x": [0.0, 1.0, 2.0], "v": pa.array([[0.0, 0.0]] * 3, pa.list_(pa.float32())), "y": [0.0, 1.0, 0.0],
    })
    batch = table_to_batch(table, SCHEMA)
    hist = batch.sequence_features["hist"]
    assert hist.lengths().tolist() == [4, 0, 1]
    assert hist.values().tolist() == [3, 4, 5, 6, 9]  # oldest ids dropped
    assert batch.sparse_features["tags"].lengths().tolist() == [0, 2, 0]  # null list = empty
    schema = Schema([SparseFeature("row_id", 2**41)], labels=["y"])
    ids = table_to_batch(pa.table({"row_id": pa.array([big], pa.int64()), "y": [1.0]}), schema)
    assert ids.sparse_features["row_id"].values().dtype == torch.int64
    assert ids.sparse_features["row_id"].values().item() == big


@pytest.mark.parametrize("policy, expected", [("modulo", [3, 0, 9]), ("hash", None)])
def test_id_policies_map_into_range(policy, expected):
    schema = Schema([SparseFeature("a", 10, id_policy=policy)], labels=["y"])
    batch = table_to_batch(pa.table({"a": pa.array([13, 10, -1], pa.int64()), "y": [0.0, 1.0, 0.0]}), schema)
    values = batch.sparse_features["a"].values()
    assert ((values >= 0) & (values < 10)).all()
    if expected:
        assert values.tolist() == expected
