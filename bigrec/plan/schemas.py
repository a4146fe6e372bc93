"""Schemas of the models that are planned rather than trained here (no data needed).

``python -m bigrec.plan.schemas OUTPUT_DIR`` rewrites the committed files
``configs/schemas/criteo1tb_mlperf.json`` and ``configs/schemas/synthetic500_powerlaw.json``;
``tests/test_plan.py`` checks that the committed files equal these functions' output.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bigrec.data.synthetic import LABEL, dense_names, sparse_names
from bigrec.features import DenseFeature, Schema, SparseFeature

# MLPerf DLRM-DCNv2 (Criteo 1TB click logs, 24 days), rows per categorical feature after
# hashing with max_ind_range = 40M, and the multi-hot sizes of the MLPerf multi-hot data set.
CRITEO_1TB_ROWS = [40000000, 39060, 17295, 7424, 20265, 3, 7122, 1543, 63, 40000000, 3067956, 405282, 10,
                   2209, 11938, 155, 4, 976, 14, 40000000, 40000000, 40000000, 590152, 12973, 108, 36]
CRITEO_1TB_MULTI_HOT = [3, 2, 1, 2, 6, 1, 1, 1, 1, 7, 3, 8, 1, 6, 9, 5, 1, 1, 1, 12, 100, 27, 10, 3, 1, 1]
CRITEO_1TB_DIM = 128

POWER_LAW_TABLES = 500
POWER_LAW_MAX_ROWS = 20_000_000
POWER_LAW_MIN_ROWS = 1_000
POWER_LAW_EXPONENT = 1.1
POWER_LAW_DIM = 64


def criteo1tb_schema() -> Schema:
    """13 dense + 26 multi-hot sparse features with the MLPerf cardinalities (dim 128)."""
    features = [DenseFeature(name) for name in dense_names()]
    features += [SparseFeature(name, rows, CRITEO_1TB_DIM, multi_valued=hot > 1, id_policy="modulo")
                 for name, rows, hot in zip(sparse_names(), CRITEO_1TB_ROWS, CRITEO_1TB_MULTI_HOT)]
    return Schema(features, labels=[LABEL], metadata={
        "description": "MLPerf DLRM-DCNv2 on Criteo 1TB (rows capped at 40M); for planning",
        "multi_hot_sizes": CRITEO_1TB_MULTI_HOT})


def power_law_rows(num_tables: int = POWER_LAW_TABLES) -> list[int]:
    """Table ``i`` has ``max_rows / (i + 1) ** exponent`` rows (at least ``POWER_LAW_MIN_ROWS``)."""
    return [max(POWER_LAW_MIN_ROWS, int(POWER_LAW_MAX_ROWS / (i + 1) ** POWER_LAW_EXPONENT))
            for i in range(num_tables)]


def power_law_schema(num_tables: int = POWER_LAW_TABLES) -> Schema:
    """``num_tables`` single-id features with power-law table sizes, plus 13 dense features."""
    features = [DenseFeature(name) for name in dense_names()]
    features += [SparseFeature(f"t{i:03d}", rows, POWER_LAW_DIM, id_policy="modulo")
                 for i, rows in enumerate(power_law_rows(num_tables))]
    return Schema(features, labels=[LABEL], metadata={
        "description": f"{num_tables} synthetic tables, rows = {POWER_LAW_MAX_ROWS} / (i + 1) ** "
                       f"{POWER_LAW_EXPONENT}, at least {POWER_LAW_MIN_ROWS}; for planning"})


SCHEMAS = {"criteo1tb_mlperf.json": criteo1tb_schema, "synthetic500_powerlaw.json": power_law_schema}


def main(output_dir: str) -> None:
    for name, make in SCHEMAS.items():
        make().save(Path(output_dir) / name)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "configs/schemas")
