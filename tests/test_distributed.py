"""DeepFM on 2 gloo ranks with tables split across ranks matches 1 rank on the same global batches."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bigrec.testing import run_ranks, train_from_seed

pytestmark = pytest.mark.dist

ROWS_PER_RANK_BATCH = 128
STEPS = 12


def deepfm_config(data_dir: Path, out_dir: Path, batch_size: int, sharding_type: str):
    from bigrec.config import config_from_dict

    return config_from_dict({
        "data": {"path": str(data_dir), "batch_size": batch_size, "eval_batch_size": 1000, "test": None},
        "model": {"name": "deepfm", "hidden_units": [32, 16], "embedding_dim": 8,
                  "features": [f"sparse_{i}" for i in range(8)] + ["dense_0", "dense_3"]},
        "trainer": {"epochs": 1, "output_dir": str(out_dir), "progress_bar": False, "seed": 0,
                    "max_steps_per_epoch": STEPS},
        "sharding": {"sharding_types": [sharding_type], "print_plan": False},
    })


def train_and_report(data_dir: str, out_dir: str, batch_size: int, sharding_types: list[str]) -> dict:
    """Per rank: identical initial weights, STEPS steps, global mean losses and validation metrics."""
    return {sharding_type: train_from_seed(deepfm_config(Path(data_dir), Path(out_dir) / sharding_type, batch_size,
                                                         sharding_type), STEPS)
            for sharding_type in sharding_types}


def write_rank_data(source: Path, one_rank: Path, two_ranks: Path) -> None:
    """The same rows twice: in file order for 2 ranks (rank r reads the r-th half), and
    reordered for 1 rank so that its batch k is the union of the ranks' batches k."""
    rows_per_rank = ROWS_PER_RANK_BATCH * STEPS
    table = pq.read_table(source / "train.parquet").slice(0, 2 * rows_per_rank)
    order = np.concatenate([
        np.arange(r * rows_per_rank + k * ROWS_PER_RANK_BATCH, r * rows_per_rank + (k + 1) * ROWS_PER_RANK_BATCH)
        for k in range(STEPS) for r in range(2)])
    for target, rows in ((one_rank, table.take(pa.array(order))), (two_ranks, table)):
        target.mkdir()
        for name in ("schema.json", "valid.parquet"):
            (target / name).write_bytes((source / name).read_bytes())
        pq.write_table(rows, target / "train.parquet", row_group_size=500)


def test_two_ranks_match_one_rank_table_and_row_wise(criteo_small, tmp_path):
    one, two = tmp_path / "one_rank", tmp_path / "two_ranks"
    write_rank_data(criteo_small, one, two)
    [single] = run_ranks(train_and_report, 1, str(one), str(tmp_path / "out1"), 2 * ROWS_PER_RANK_BATCH,
                         ["table_wise"])
    results = run_ranks(train_and_report, 2, str(two), str(tmp_path / "out2"), ROWS_PER_RANK_BATCH,
                        ["table_wise", "row_wise"])
    reference = single["table_wise"]
    assert reference["losses"][-1] < reference["losses"][0]  # it trains
    for sharding_type in ("table_wise", "row_wise"):
        rank0, rank1 = results[0][sharding_type], results[1][sharding_type]
        assert rank0["losses"] == pytest.approx(rank1["losses"], rel=1e-6)
        assert rank0["losses"] == pytest.approx(reference["losses"], rel=2e-4, abs=2e-5)
        assert rank0["valid"]["auc"] == pytest.approx(reference["valid"]["auc"], abs=2e-4)
        assert rank0["valid"]["logloss"] == pytest.approx(reference["valid"]["logloss"], abs=2e-4)
        placement = rank0["placement"]
        assert {kind for kind, _ in placement.values()} == {sharding_type}
        if sharding_type == "table_wise":  # whole tables on both ranks
            assert {tuple(ranks) for _, ranks in placement.values()} == {(0,), (1,)}
        else:  # every table split over both ranks
            assert {tuple(ranks) for _, ranks in placement.values()} == {(0, 1)}
