"""Parquet -> Batch throughput against plain ``ParquetFile.iter_batches`` on the same file.

    python tools/bench/data_bench.py [--rows 1000000] [--batch-size 4096]

Both read every column the schema needs from one 1M-row Criteo-like file
(13 dense, 26 sparse, 1 label) in the same process; the figure that matters is
the ratio bigrec / raw (target >= 0.5). Runs alternate to even out machine noise.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from bigrec.data.convert import columns_of
from bigrec.data.stream import ParquetBatches, make_loader
from bigrec.data.synthetic import generate_criteo_like


def raw_read(path: Path, columns: list[str], batch_size: int) -> tuple[int, float]:
    started = time.perf_counter()
    rows = sum(b.num_rows for b in pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=columns))
    return rows, time.perf_counter() - started


def bigrec_read(dataset: ParquetBatches, workers: int) -> tuple[int, float]:
    started = time.perf_counter()
    rows = sum(batch.batch_size for batch in make_loader(dataset, workers))
    return rows, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        schema = generate_criteo_like(tmp, rows=args.rows, valid_fraction=0.0, test_fraction=0.0)
        path = Path(tmp) / "train.parquet"
        columns = columns_of(schema)
        dataset = ParquetBatches([str(path)], schema, args.batch_size)
        best = {"raw": 0.0, "bigrec": 0.0, "bigrec_2_workers": 0.0}
        for _ in range(args.repeats):
            for name, run in (("raw", lambda: raw_read(path, columns, args.batch_size)),
                              ("bigrec", lambda: bigrec_read(dataset, 0)),
                              ("bigrec_2_workers", lambda: bigrec_read(dataset, 2))):
                rows, seconds = run()
                assert rows == args.rows, (name, rows)
                best[name] = max(best[name], rows / seconds)
    print(f"rows: {args.rows:,}, batch size {args.batch_size}, best of {args.repeats}")
    print("| reader | rows/s | ratio to raw |")
    print("|---|---:|---:|")
    for name, rate in best.items():
        print(f"| {name} | {rate:,.0f} | {rate / best['raw']:.2f} |")


if __name__ == "__main__":
    main()
