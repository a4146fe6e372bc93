"""Click logs with one row per impression (Criteo, Avazu): parse once, count, encode, write.

Three passes, the raw text parsed only once:

1. **parse** (on ``workers`` threads): raw blocks -> labels, dense values already
   filled / clipped / logged, and categorical *keys*
   (:mod:`~bigrec.data.converters.keys`), appended to a spill file in the scratch
   directory; bad lines reported and dropped. Each block's keys are counted
   (``np.bincount`` over their dictionary entries) on the same threads, into out-of-core counters
   (:class:`~bigrec.data.converters.vocab.KeyCounter`), with the moments of the
   dense features to standardise;
2. **take back**: which rows are valid / test is known only once every row is
   read (a fraction of the lines); the tallies of those rows are subtracted, read
   from the spill's tail batches only (files that hold no training rows, as
   Criteo 1TB's last day, are never counted);
3. **encode** (on ``workers`` threads): the spill -> ids (``index_in`` against the
   vocabulary) and standardised dense values -> the split's Parquet files
   (:class:`~bigrec.data.converters.output.SplitWriter`).

Memory holds a few blocks, the counters' budgets and the kept vocabularies,
never the data set. Splits follow the rows' order (:class:`SplitRule`): the
vocabularies and the standardisation see the training rows only, so valid and
test measure out-of-vocabulary values as serving would meet them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bigrec.data.converters.badinput import BadInput
from bigrec.data.converters.common import Settings, SpillFile, finish
from bigrec.data.converters.keys import dictionary_keys, hex_word_entries, keys_of
from bigrec.data.converters.options import PrepOptions, RunningMoments
from bigrec.data.converters.output import OutputDir, Stats, open_split_writers
from bigrec.data.converters.textio import (Block, CsvFormat, InOrder, Progress, ordered_map, parse_csv, staged_blocks,
                                          utf8_ok)
from bigrec.data.converters.vocab import KeyCounter, Vocabulary, check_vocab_memory
from bigrec.data.parquet_io import SPLITS
from bigrec.errors import DataError
from bigrec.features import DenseFeature, Schema, SparseFeature

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

    def may_train(self, file_index: int, files: int) -> bool:
        """Whether file ``file_index`` (of ``files``) can hold training rows (known before reading it)."""
        return self.kind != "last_file" or file_index < files - 1

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


@dataclass
class Tally:
    """What pass 1 counts of a block for the vocabularies and the standardisation: per thresholded feature the
    ``(keys, counts)`` of its present values, per standardised feature the moments of its prepared values."""

    counts: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    moments: dict[str, RunningMoments] = field(default_factory=dict)

    @classmethod
    def of(cls, table: pa.Table, counted: list[str], standardized: list[str],
           entries: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None) -> "Tally":
        """The tally of spill rows: keys counted per dictionary entry (``np.bincount``), not per row.
        ``entries``: the key columns' :func:`entries_of` when already at hand."""
        tally = cls()
        for name in counted:
            keys, present, rows = entries[name] if entries is not None else entries_of(table.column(name))
            counts = np.bincount(rows, minlength=len(keys))
            kept = present & (counts > 0)
            tally.counts[name] = (keys[kept], counts[kept])
        for name in standardized:
            tally.moments[name] = RunningMoments()
            tally.moments[name].add(table.column(name).to_numpy())
        return tally


def entries_of(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(keys uint64 [D], present bool [D], entry int [N])`` of a spill key column: a dictionary of keys
    (a null entry = missing) and each row's entry."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    dictionary = column.dictionary
    present = (np.ones(len(dictionary), dtype=bool) if not dictionary.null_count
               else dictionary.is_valid().to_numpy(zero_copy_only=False))
    return dictionary.fill_null(0).to_numpy(), present, column.indices.to_numpy()


def _key_column(column: pa.Array | pa.ChunkedArray,
                kind: str) -> tuple[pa.DictionaryArray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(spill column, bad bool [N], its entries)`` of a raw categorical column: its keys dictionary-encoded
    (a raw column read dictionary-encoded, or a hex column of 8-byte values taken as 64-bit words,
    :func:`~bigrec.data.converters.keys.hex_word_entries`, is keyed once per distinct value), and the column's
    :func:`entries_of`, handed to the tally."""
    words = hex_word_entries(column) if kind == "hex" and not pa.types.is_dictionary(column.type) else None
    if words is not None or pa.types.is_dictionary(column.type):
        keys, present, wrong, rows = words if words is not None else dictionary_keys(column, kind)
        wrong = _gathered(wrong, rows)
    else:
        raw_keys, raw_present, wrong = keys_of(column, kind)
        encoded = pc.dictionary_encode(pa.array(raw_keys, pa.uint64(), mask=None if raw_present.all() else ~raw_present))
        keys = np.append(encoded.dictionary.to_numpy(zero_copy_only=False), np.uint64(0))
        present = np.append(np.ones(len(encoded.dictionary), dtype=bool), False)
        rows = encoded.indices.fill_null(len(encoded.dictionary)).to_numpy(zero_copy_only=False)
    dictionary = pa.array(keys, pa.uint64(), mask=None if present.all() else ~present)
    spilled = pa.DictionaryArray.from_arrays(pa.array(rows.astype(np.int32, copy=False)), dictionary)
    return spilled, wrong, (keys, present, rows)


@dataclass
class Staged:
    """One parsed block: its spill rows and, when its file holds training rows, their tally."""

    table: pa.Table
    tally: Tally | None

    @property
    def num_rows(self) -> int:
        return self.table.num_rows


def _stage(source: TabularSource, options: PrepOptions, bad: BadInput, counted: list[str] | None):
    """Block -> spill rows: labels (float32, 0/1), dense values prepared (filled, clipped, logged: float32, or
    float64 when standardised later), keys (dictionary-encoded uint64, a null entry = missing); tallied unless
    ``counted`` is None."""
    standardized = [f.name for f in source.of_kind("dense") if options.dense(f.name).standardized]

    def stage(block: Block) -> Staged:
        table, lines = parse_csv(block, source.fmt, bad)
        if source.derive is not None:
            table, lines = source.derive(table, lines, block.path, bad)
        keep = np.ones(table.num_rows, dtype=bool)
        columns: dict[str, pa.Array] = {}
        entries = {}
        for f in source.of_kind("label"):
            values = table.column(f.source).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
            wrong = ~np.isin(values, (0.0, 1.0))  # NaN (missing) included
            bad.report(block.path, lines[wrong & keep], "label is not 0 or 1", column=f.source)
            keep &= ~wrong
            columns[f.name] = pa.array(np.nan_to_num(values).astype(np.float32))
        for f in source.of_kind("dense"):
            column, spec = table.column(f.source), options.dense(f.name)
            dtype = np.float64 if f.name in standardized else np.float32
            if pa.types.is_integer(column.type):
                columns[f.name] = pa.array(spec.prepare_ints(column, dtype))
            else:
                raw = column.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
                columns[f.name] = pa.array(spec.prepare(raw).astype(dtype, copy=False))
        for f in source.of_kind("sparse"):
            column = table.column(f.source)
            if f.key == "str":
                keep &= utf8_ok(column, lines, block.path, f.source, bad, keep)
            columns[f.name], wrong, entries[f.name] = _key_column(column, f.key)
            bad.report(block.path, lines[wrong & keep], f"not a valid {f.key} value", column=f.source)
            keep &= ~wrong
        out = pa.table(columns)
        if not keep.all():
            out, entries = out.filter(pa.array(keep)), None
        return Staged(out, None if counted is None else Tally.of(out, counted, standardized, entries))

    return stage


def _gathered(flags: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``flags[rows]``, without the gather when every flag is the same."""
    if flags.all() or not flags.any():
        return np.full(len(rows), bool(flags[0]) if len(flags) else False)
    return flags[rows]


@dataclass
class Pass1:
    """The result of parsing: good rows per input file, the input file of every spill batch, and the
    tallies of every row of the files that may hold training rows."""

    rows_per_file: list[int]
    batch_files: list[int]
    counters: dict[str, KeyCounter]
    moments: dict[str, RunningMoments]


def _parse_all(source: TabularSource, settings: Settings, options: PrepOptions, bad: BadInput, spill: SpillFile,
               counters: dict[str, KeyCounter], moments: dict[str, RunningMoments]) -> Pass1:
    """Pass 1: every input file into ``spill``, the rows of files that may be training rows tallied."""
    result = Pass1([0] * len(source.files), [], counters, moments)
    stages = [_stage(source, options, bad, list(counters) if source.split.may_train(i, len(source.files)) else None)
              for i in range(len(source.files))]
    try:
        for index, staged in staged_blocks(source.files, settings.block_bytes, settings.workers,
                                           lambda block, i: stages[i](block), bad,
                                           f"{source.name}: parse", settings.progress, source.skip_lines):
            before = len(spill.batch_rows)
            spill.write(staged.table)
            result.batch_files += [index] * (len(spill.batch_rows) - before)
            result.rows_per_file[index] += staged.num_rows
            if staged.tally is not None:
                _add_tally(result, staged.tally, sign=1)
    finally:
        spill.close()
    for path, rows in zip(source.files, result.rows_per_file):
        if rows == 0 and path.stat().st_size:
            bad.report(str(path), [1], "file has no good lines")
    if not sum(result.rows_per_file):
        raise DataError(", ".join(str(p) for p in source.files), "no rows could be read")
    return result


def _add_tally(parsed: Pass1, tally: Tally, sign: int) -> None:
    for name, (keys, counts) in tally.counts.items():
        parsed.counters[name].add_counts(keys, counts * sign)
    for name, moment in tally.moments.items():
        if sign > 0:
            parsed.moments[name].merge(moment)
        else:
            parsed.moments[name].remove(moment)


def _batch_codes(source: TabularSource, parsed: Pass1, rows: list[int]) -> Iterator[np.ndarray]:
    """The split code of every row of every spill batch, batch by batch (batches hold rows in file order)."""
    seen = np.zeros(len(parsed.rows_per_file), dtype=np.int64)
    for f, n in zip(parsed.batch_files, rows):
        ordinals = seen[f] + np.arange(n, dtype=np.int64)
        seen[f] += n
        yield source.split.codes(np.full(n, f, dtype=np.int64), ordinals, parsed.rows_per_file)


def _untally_held_out(source: TabularSource, spill: SpillFile, parsed: Pass1) -> None:
    """Pass 2: take back from the tallies the rows pass 1 counted that turned out valid or test (read from the
    spill: only the batches holding some, the tail of the data, are counted)."""
    counted = [name for name in parsed.counters]
    standardized = list(parsed.moments)
    wanted = {i: codes for i, codes in enumerate(_batch_codes(source, parsed, spill.batch_rows))
              if source.split.may_train(parsed.batch_files[i], len(source.files)) and codes.any()}
    for i, batch in zip(sorted(wanted), spill.batches(sorted(wanted))):
        held_out = pa.Table.from_batches([batch]).filter(pa.array(wanted[i] != 0))
        _add_tally(parsed, Tally.of(held_out, counted, standardized), sign=-1)


def convert_tabular(source: TabularSource, settings: Settings, options: PrepOptions, bad: BadInput) -> dict:
    """Run the three passes for ``source`` into ``settings.output``; returns ``stats.json``'s content."""
    started = time.perf_counter()
    sparse, dense, labels = source.of_kind("sparse"), source.of_kind("dense"), source.of_kind("label")
    with OutputDir(settings.output, settings.temp_dir) as out:
        spill = SpillFile(out.work / "rows.arrow")
        budget = settings.counter_budget(len(sparse))
        counters = {f.name: KeyCounter(f.name, out.work, budget) for f in sparse if not options.vocab(f.name).hashed}
        moments = {f.name: RunningMoments() for f in dense if options.dense(f.name).standardized}
        parsed = _parse_all(source, settings, options, bad, spill, counters, moments)
        rows_per_file = parsed.rows_per_file
        _untally_held_out(source, spill, parsed)
        vocabs = {f.name: Vocabulary.build(f.name, f.key, options.vocab(f.name), counters.get(f.name), complete=False)
                  for f in sparse}
        check_vocab_memory(list(vocabs.values()), settings.cap_bytes)

        # Pass 3: encode and write.
        schema = _schema(source, settings, options, vocabs, moments, rows_per_file)
        stats = Stats([f.name for f in labels], {f.name: v.size for f, v in zip(sparse, vocabs.values())},
                      {n for n, v in vocabs.items() if v.oov_id is not None}, [f.name for f in dense])
        writers = open_split_writers(out.path, settings.rows_per_file, settings.row_group_size, stats,
                                     compression=settings.compression)
        names = [f.name for f in schema.features] + schema.labels
        progress = Progress(sum(rows_per_file), f"{source.name}: encode", settings.progress, unit="rows")

        def encode(item):
            batch, batch_codes = item
            columns = {}
            for f in dense:
                values = batch.column(f.name)
                if f.name in moments:
                    standardized = (values.to_numpy() - moments[f.name].mean) / (moments[f.name].std or 1.0)
                    values = pa.array(standardized.astype(np.float32))
                columns[f.name] = values
            for f in sparse:  # each dictionary entry looked up once, then gathered by Arrow (2x NumPy's)
                keys, present, _ = entries_of(batch.column(f.name))
                columns[f.name] = pc.take(pa.array(vocabs[f.name].encode(keys, present)[0]), batch.column(f.name).indices)
            for f in labels:
                columns[f.name] = batch.column(f.name)
            return pa.table([columns[n] for n in names], names=names), batch_codes

        def write(table: pa.Table, batch_codes: np.ndarray) -> None:
            for index, split in enumerate(SPLITS):
                rows = batch_codes == index
                if rows.all():
                    writers[split].write(table)
                elif rows.any():
                    writers[split].write(table.filter(pa.array(rows)))

        writer = InOrder()  # statistics and Parquet on a thread of their own, behind the encoding threads
        try:
            for table, batch_codes in ordered_map(encode, zip(spill.batches(), _batch_codes(source, parsed, spill.batch_rows)),
                                                     settings.workers):
                writer.submit(write, table, batch_codes)
                progress.update(table.num_rows, table.num_rows)
        finally:
            writer.close()
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
