"""Click logs with one row per impression (Criteo, Avazu): parse once, count, encode, write.

Three passes, the raw text parsed only once:

1. **parse**: raw blocks (on ``workers`` threads) -> labels, raw dense values and
   categorical *keys* (:mod:`~bigrec.data.converters.keys`), appended to a spill
   file in the scratch directory; bad lines reported and dropped;
2. **count**: the spill's training rows -> vocabularies (out of core,
   :class:`~bigrec.data.converters.vocab.KeyCounter`) and the moments of the
   dense features to standardise;
3. **encode**: the spill -> ids and transformed dense values -> the split's
   Parquet files (:class:`~bigrec.data.converters.output.SplitWriter`).

Memory holds a few blocks, the counters' budgets and the kept vocabularies,
never the data set. Splits follow the rows' order (:class:`SplitRule`): the
vocabularies and the standardisation see the training rows only, so valid and
test measure out-of-vocabulary values as serving would meet them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from bigrec.data.converters.badinput import BadInput
from bigrec.data.converters.common import Settings, SpillFile, finish
from bigrec.data.converters.keys import keys_of
from bigrec.data.converters.options import PrepOptions, RunningMoments
from bigrec.data.converters.output import OutputDir, Stats, open_split_writers
from bigrec.data.converters.textio import Block, CsvFormat, Progress, ordered_map, parse_csv, staged_blocks, utf8_ok
from bigrec.data.converters.vocab import KeyCounter, Vocabulary, check_vocab_memory
from bigrec.data.parquet_io import SPLITS
from bigrec.errors import DataError
from bigrec.features import DenseFeature, Schema, SparseFeature

FILE_COLUMN = "__file"


@dataclass(frozen=True)
class Field:
    """One output column: ``kind`` ``label`` / ``dense`` / ``sparse`` (keyed by ``key``), read from ``source``."""

    name: str
    source: str
    kind: str
    key: str = "str"
    side: str = "context"


@dataclass(frozen=True)
class SplitRule:
    """How rows (in file order) fall into train / valid / test.

    ``fractions``: the last ``test`` of all rows is test, the ``valid`` before it valid;
    ``last_file``: every file but the last is train, the last file's first half valid
    and second half test (Criteo 1TB's day 23, as in MLPerf DLRM).
    """

    kind: str = "fractions"
    valid: float = 0.0
    test: float = 0.0

    def codes(self, files: np.ndarray, ordinals: np.ndarray, rows_per_file: list[int]) -> np.ndarray:
        """Split code (0 train, 1 valid, 2 test) of each row: ``files`` its input file, ``ordinals`` its index
        among the good rows of that file."""
        counts = np.asarray(rows_per_file, dtype=np.int64)
        if self.kind == "last_file":
            last = len(counts) - 1
            half = counts[last] // 2
            return np.where(files < last, 0, np.where(ordinals < half, 1, 2)).astype(np.int8)
        total = int(counts.sum())
        position = np.concatenate(([0], np.cumsum(counts)[:-1]))[files] + ordinals
        n_test = int(round(total * self.test))
        n_valid = int(round(total * self.valid))
        return np.where(position >= total - n_test, 2, np.where(position >= total - n_test - n_valid, 1, 0)).astype(np.int8)

    def describe(self) -> str:
        if self.kind == "last_file":
            return "by file: all but the last train; the last file's first half valid, second half test"
        return f"by line order: last {self.test:g} test, {self.valid:g} before it valid, the rest train"


@dataclass
class TabularSource:
    """A click log: input files in order (with header lines to skip), their format and the fields kept."""

    name: str
    files: list[Path]
    fmt: CsvFormat
    fields: list[Field]
    split: SplitRule
    skip_lines: int = 0
    derive: Callable[[pa.Table, np.ndarray, str, BadInput], tuple[pa.Table, np.ndarray]] | None = None
    metadata: dict = field(default_factory=dict)

    def of_kind(self, kind: str) -> list[Field]:
        return [f for f in self.fields if f.kind == kind]


def _stage(source: TabularSource, bad: BadInput, file_index: int):
    """Block -> spill batch: labels (float32, 0/1), dense (float64, NaN = missing), keys (uint64, null = missing)."""

    def stage(block: Block) -> pa.Table:
        table, lines = parse_csv(block, source.fmt, bad)
        if source.derive is not None:
            table, lines = source.derive(table, lines, block.path, bad)
        keep = np.ones(table.num_rows, dtype=bool)
        columns: dict[str, pa.Array] = {}
        for f in source.of_kind("label"):
            values = table.column(f.source).to_numpy(zero_copy_only=False).astype(np.float64)
            wrong = ~np.isin(values, (0.0, 1.0))  # NaN (missing) included
            bad.report(block.path, lines[wrong & keep], "label is not 0 or 1", column=f.source)
            keep &= ~wrong
            columns[f.name] = pa.array(np.nan_to_num(values).astype(np.float32))
        for f in source.of_kind("dense"):
            columns[f.name] = pa.array(table.column(f.source).to_numpy(zero_copy_only=False).astype(np.float64))
        for f in source.of_kind("sparse"):
            if f.key == "str":
                keep &= utf8_ok(table.column(f.source), lines, block.path, f.source, bad, keep)
            keys, present, wrong = keys_of(table.column(f.source), f.key)
            bad.report(block.path, lines[wrong & keep], f"not a valid {f.key} value", column=f.source)
            keep &= ~wrong
            columns[f.name] = pa.array(keys, pa.uint64(), mask=~present)
        out = pa.table(columns)
        out = out.append_column(FILE_COLUMN, pa.array(np.full(len(keep), file_index, dtype=np.int32)))
        return out.filter(pa.array(keep)) if not keep.all() else out

    return stage


def _parse_all(source: TabularSource, settings: Settings, bad: BadInput, spill: SpillFile) -> list[int]:
    """Pass 1: every input file into ``spill``; returns the good rows of each file."""
    rows_per_file = [0] * len(source.files)
    try:
        for index, table in staged_blocks(source.files, settings.block_bytes, settings.workers,
                                          lambda block, i: _stage(source, bad, i)(block), bad,
                                          f"{source.name}: parse", settings.progress, source.skip_lines):
            spill.write(table)
            rows_per_file[index] += table.num_rows
    finally:
        spill.close()
    for path, rows in zip(source.files, rows_per_file):
        if rows == 0 and path.stat().st_size:
            bad.report(str(path), [1], "file has no good lines")
    if not sum(rows_per_file):
        raise DataError(", ".join(str(p) for p in source.files), "no rows could be read")
    return rows_per_file


def _with_codes(spill: SpillFile, source: TabularSource, rows_per_file: list[int]):
    """Spill batches with each row's split code."""
    seen = np.zeros(len(rows_per_file), dtype=np.int64)
    for batch in spill.batches():
        files = batch.column(FILE_COLUMN).to_numpy()
        ordinals = np.empty(len(files), dtype=np.int64)
        for f in np.unique(files):  # a batch comes from one file, but stay general
            rows = np.flatnonzero(files == f)
            ordinals[rows] = seen[f] + np.arange(len(rows))
            seen[f] += len(rows)
        yield batch, source.split.codes(files, ordinals, rows_per_file)


def convert_tabular(source: TabularSource, settings: Settings, options: PrepOptions, bad: BadInput) -> dict:
    """Run the three passes for ``source`` into ``settings.output``; returns ``stats.json``'s content."""
    started = time.perf_counter()
    sparse, dense, labels = source.of_kind("sparse"), source.of_kind("dense"), source.of_kind("label")
    with OutputDir(settings.output, settings.temp_dir) as out:
        spill = SpillFile(out.work / "rows.arrow")
        rows_per_file = _parse_all(source, settings, bad, spill)

        # Pass 2: count the training rows.
        budget = settings.counter_budget(len(sparse))
        counters = {f.name: KeyCounter(f.name, out.work, budget) for f in sparse if not options.vocab(f.name).hashed}
        moments = {f.name: RunningMoments() for f in dense if options.dense(f.name).standardized}
        for batch, codes in _with_codes(spill, source, rows_per_file):
            train = codes == 0
            for name, counter in counters.items():
                column = batch.column(name)
                rows = train & column.is_valid().to_numpy(zero_copy_only=False) if column.null_count else train
                counter.add(column.fill_null(0).to_numpy()[rows])
            for name, moment in moments.items():
                raw = batch.column(name).to_numpy(zero_copy_only=False)[train]
                moment.add(options.dense(name).prepare(raw))
        vocabs = {f.name: Vocabulary.build(f.name, f.key, options.vocab(f.name), counters.get(f.name), complete=False)
                  for f in sparse}
        check_vocab_memory(list(vocabs.values()), settings.cap_bytes)

        # Pass 3: encode and write.
        schema = _schema(source, settings, options, vocabs, moments, rows_per_file)
        stats = Stats([f.name for f in labels], {f.name: v.size for f, v in zip(sparse, vocabs.values())},
                      {n for n, v in vocabs.items() if v.oov_id is not None}, [f.name for f in dense])
        writers = open_split_writers(out.path, settings.rows_per_file, settings.row_group_size, stats)
        names = [f.name for f in schema.features] + schema.labels
        progress = Progress(sum(rows_per_file), f"{source.name}: encode", settings.progress, unit="rows")

        def encode(item):
            batch, codes = item
            columns = {}
            for f in dense:
                spec = options.dense(f.name)
                values = spec.prepare(batch.column(f.name).to_numpy(zero_copy_only=False))
                if f.name in moments:
                    values = (values - moments[f.name].mean) / (moments[f.name].std or 1.0)
                columns[f.name] = pa.array(values.astype(np.float32))
            for f in sparse:
                column = batch.column(f.name)
                present = column.is_valid().to_numpy(zero_copy_only=False)
                ids, _ = vocabs[f.name].encode(column.fill_null(0).to_numpy(), present)
                columns[f.name] = pa.array(ids)
            for f in labels:
                columns[f.name] = batch.column(f.name)
            return pa.table([columns[n] for n in names], names=names), codes

        try:
            for table, codes in ordered_map(encode, _with_codes(spill, source, rows_per_file), settings.workers):
                for index, split in enumerate(SPLITS):
                    rows = codes == index
                    if rows.all():
                        writers[split].write(table)
                    elif rows.any():
                        writers[split].write(table.filter(pa.array(rows)))
                progress.update(table.num_rows, table.num_rows)
        finally:
            progress.close()
        for writer in writers.values():
            writer.close()
        schema.metadata["counts"] = {s: {"rows": w.rows, "files": w.files} for s, w in writers.items()}
        return finish(out, schema, vocabs, stats, bad, started)


def _schema(source: TabularSource, settings: Settings, options: PrepOptions, vocabs: dict[str, Vocabulary],
            moments: dict[str, RunningMoments], rows_per_file: list[int]) -> Schema:
    features = [DenseFeature(f.name, side=f.side) for f in source.of_kind("dense")]
    features += [SparseFeature(f.name, vocabs[f.name].size, settings.embedding_dim, side=f.side)
                 for f in source.of_kind("sparse")]
    transforms = {}
    for f in source.of_kind("dense"):
        spec = options.dense(f.name)
        entry = {"source": f.source, "transform": spec.transform, "fill": spec.fill, "clip_min": spec.clip_min}
        if f.name in moments:
            entry.update(mean=moments[f.name].mean, std=moments[f.name].std or 1.0)
        transforms[f.name] = entry
    metadata = dict(source.metadata)
    metadata.update(
        dataset=source.name,
        source_files=[p.name for p in source.files],
        rows_per_input_file=rows_per_file,
        task_split=source.split.describe(),
        columns={f.name: f.source for f in source.fields},
        id_mapping="0 = missing; thresholded vocabularies: 1 = out-of-vocabulary, kept values from 2 in key order; "
                   "hashed: 1 + splitmix64(key) % hash_buckets",
        vocabularies={name: v.metadata([name]) for name, v in vocabs.items()},
        dense_transforms=transforms,
        preprocessing=options.raw,
        seed=settings.seed,
    )
    return Schema(features, labels=[f.name for f in source.of_kind("label")], metadata=metadata)
