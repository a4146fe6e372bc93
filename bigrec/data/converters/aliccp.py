"""Ali-CCP (Alibaba click and conversion prediction) -> one row per impression, labels ``click`` and
``conversion``, for ESMM and the multi-task models.

``--source`` holds the published files: ``sample_skeleton_{train,test}.csv``
(``sample_id,click,buy,common_feature_index,feature_num,feature_list``) and
``common_features_{train,test}.csv`` (``common_feature_index,feature_num,feature_list``),
where a feature list is ``field\\x02feature_id\\x03value`` entries joined by ``\\x01``.
Each impression is joined with its common (user) features by
``common_feature_index``, out of core: both files are spread over the same
hash partitions of the index, and each partition is joined on its own.

Columns: one per feature field of :data:`FIELDS` (``f101`` = user id, ``f205`` =
item id, ...): single-valued fields as an int64 id (the first value; missing ->
0), multi-valued ones as ``list<int64>``; values are feature ids, mapped through
a vocabulary per field counted on the training rows (default ``min_count`` 5,
rarer -> the out-of-vocabulary id 1). Labels ``click`` and ``conversion`` (the
raw ``buy``). Splits: the train file's last ``--valid-fraction`` (by line order)
is valid, the rest train; the test file is test.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bigrec.data.converters.badinput import BadInput
from bigrec.data.converters.common import PartitionedSpill, Settings, finish
from bigrec.data.converters.keys import hex_keys, int_keys, str_keys
from bigrec.data.converters.output import OutputDir, Stats, open_split_writers
from bigrec.data.converters.textio import Block, CsvFormat, parse_csv, require_file, staged_blocks
from bigrec.data.converters.vocab import KeyCounter, Vocabulary, check_vocab_memory
from bigrec.features import Schema, SparseFeature

# field -> (side, multi-valued), from the data set's description
FIELDS = {
    "101": ("user", False), "121": ("user", False), "122": ("user", False), "124": ("user", False),
    "125": ("user", False), "126": ("user", False), "127": ("user", False), "128": ("user", False),
    "129": ("user", False), "109_14": ("user", True), "110_14": ("user", True), "127_14": ("user", True),
    "150_14": ("user", True),
    "205": ("item", False), "206": ("item", False), "207": ("item", False), "210": ("item", True),
    "216": ("item", False),
    "508": ("context", True), "509": ("context", True), "702": ("context", True), "853": ("context", True),
    "301": ("context", False),
}
LABELS = ("click", "conversion")
DEFAULTS = {"vocab": {"default": {"min_count": 5}, "features": {}}, "dense": {"default": {}, "features": {}}}
SAMPLE = CsvFormat(("sample_id", "click", "conversion", "common", "count", "features"),
                   {"click": "int", "conversion": "int", "count": "int"})
COMMON = CsvFormat(("common", "count", "features"), {"count": "int"})


def column_name(field: str) -> str:
    return f"f{field}"


def parse_feature_lists(features: pa.Array, counts: np.ndarray) -> tuple[dict[str, pa.ListArray], np.ndarray]:
    """Per known field, a ``list<uint64>`` of feature-id keys per row; and a bool [N] of malformed rows
    (an entry without ``field\\x02id``, a non-integer id, or ``feature_num`` not matching)."""
    text = features.cast(pa.string(), safe=False)
    pairs = pc.split_pattern(text, "\x01")
    flat = pc.list_flatten(pairs)
    parent = pc.list_parent_indices(pairs).to_numpy()
    n = len(text)
    head = pc.list_element(pc.split_pattern(flat, "\x03"), 0)
    parts = pc.split_pattern(head, "\x02")
    well_formed = pc.equal(pc.list_value_length(parts), 2).to_numpy(zero_copy_only=False)
    padded = pc.list_slice(parts, 0, 2)
    field = pc.list_element(pc.if_else(pa.array(well_formed), padded, pa.array([["", ""]] * len(parts), padded.type)), 0)
    fid = pc.list_element(pc.if_else(pa.array(well_formed), padded, pa.array([["", "0"]] * len(parts), padded.type)), 1)
    keys, present, wrong = int_keys(fid)
    malformed = np.zeros(n, dtype=bool)
    np.logical_or.at(malformed, parent, ~well_formed | wrong | ~present)
    lengths = pc.list_value_length(pairs).to_numpy(zero_copy_only=False)
    malformed |= lengths != counts
    out = {}
    field_text = field.to_numpy(zero_copy_only=False)
    for name in FIELDS:
        rows = field_text == name
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(np.bincount(parent[rows], minlength=n), out=offsets[1:])
        out[column_name(name)] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(keys[rows], pa.uint64()))
    return out, malformed


def _staged(fmt: CsvFormat, sample: bool, bad: BadInput):
    def stage(block: Block, file_index: int) -> pa.Table:
        table, lines = parse_csv(block, fmt, bad)
        counts = table.column("count").to_numpy(zero_copy_only=False).astype(np.float64)
        columns, malformed = parse_feature_lists(table.column("features"), np.nan_to_num(counts, nan=-1))
        common, _, wrong = hex_keys(table.column("common"))
        if wrong.any():  # an index that is not hex: key it as text
            common = np.where(wrong, str_keys(table.column("common"))[0], common)
        bad.report(block.path, lines[malformed], "malformed feature list (field\\x02id\\x03value entries, "
                                                 "feature_num)")
        keep = ~malformed
        out = {"common": pa.array(common, pa.uint64())}
        if sample:
            for label in ("click", "conversion"):
                values = table.column(label).to_numpy(zero_copy_only=False).astype(np.float64)
                wrong_label = keep & ~np.isin(values, (0.0, 1.0))
                bad.report(block.path, lines[wrong_label], "label is not 0 or 1", column=label)
                keep &= ~wrong_label
                out[label] = pa.array(np.nan_to_num(values).astype(np.float32))
        out.update(columns)
        return pa.table(out).filter(pa.array(keep))

    return stage


def _spill(files: list[Path], fmt: CsvFormat, sample: bool, settings: Settings, bad: BadInput,
           spill: PartitionedSpill, name: str) -> int:
    rows = 0
    try:
        for _, table in staged_blocks(files, settings.block_bytes, settings.workers, _staged(fmt, sample, bad), bad,
                                      f"ali-ccp: {name}", settings.progress):
            if sample:
                table = table.append_column("ordinal", pa.array(np.arange(rows, rows + table.num_rows)))
            spill.write(table, table.column("common").to_numpy())
            rows += table.num_rows
    finally:
        spill.close()
    return rows


def _joined(samples: PartitionedSpill, common: PartitionedSpill):
    """Each partition's samples with the fields of their common features added (none when absent)."""
    for part, common_part in zip(samples.files, common.files):
        table = part.read_all()
        if table is None:
            continue
        users = common_part.read_all()
        if users is not None:
            users = users.sort_by("common")
            keys = users.column("common").to_numpy()
            wanted = table.column("common").to_numpy()
            pos = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
            found = keys[pos] == wanted
            for name in map(column_name, FIELDS):  # a field comes from the sample or the common features
                joined = users.column(name).take(pa.array(pos, mask=~found))
                table = table.set_column(table.schema.get_field_index(name), name,
                                         _concat_lists(table.column(name).combine_chunks(), joined.combine_chunks()))
        yield table


def _concat_lists(a: pa.ListArray, b: pa.ListArray) -> pa.ListArray:
    """Row-wise concatenation of two list arrays (nulls are empty lists)."""
    la = pc.fill_null(pc.list_value_length(a), 0).to_numpy(zero_copy_only=False)
    lb = pc.fill_null(pc.list_value_length(b), 0).to_numpy(zero_copy_only=False)
    rows = np.concatenate([np.repeat(np.arange(len(la)), la), np.repeat(np.arange(len(lb)), lb)])
    values = np.concatenate([pc.list_flatten(a).to_numpy(), pc.list_flatten(b).to_numpy()])
    order = np.argsort(rows, kind="stable")
    offsets = np.zeros(len(la) + 1, dtype=np.int32)
    np.cumsum(la + lb, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values[order], pa.uint64()))


def add_arguments(parser, positive_int) -> None:
    parser.add_argument("--valid-fraction", type=float, default=0.1,
                        help="last fraction of the train file (line order) that is valid (default 0.1)")


def convert(settings: Settings, args, bad: BadInput) -> dict:
    from bigrec.data.converters.options import options_for

    started = time.perf_counter()
    source = Path(settings.source)
    files = {what: require_file(source, (f"{what}.csv",), f"Ali-CCP {what}.csv")
             for what in ("sample_skeleton_train", "common_features_train", "sample_skeleton_test",
                          "common_features_test")}
    names = [column_name(f) for f in FIELDS]
    options = options_for(DEFAULTS, settings, names, [])
    total = sum(p.stat().st_size for p in files.values())
    count = settings.partitions(total, expansion=4.0)
    with OutputDir(settings.output, settings.temp_dir) as out:
        spills = {what: PartitionedSpill(out.work, what, count) for what in files}
        rows = {what: _spill([path], SAMPLE if what.startswith("sample") else COMMON, what.startswith("sample"),
                             settings, bad, spills[what], what) for what, path in files.items()}
        n_train = int(round(rows["sample_skeleton_train"] * (1 - args.valid_fraction)))

        budget = settings.counter_budget(len(names))
        counters = {n: KeyCounter(n, out.work, budget) for n in names if not options.vocab(n).hashed}
        for table in _joined(spills["sample_skeleton_train"], spills["common_features_train"]):
            train = pa.array(table.column("ordinal").to_numpy() < n_train)
            for name, counter in counters.items():
                counter.add(pc.list_flatten(table.column(name).filter(train)).to_numpy())
        vocabs = {n: Vocabulary.build(n, "int", options.vocab(n), counters.get(n), complete=False) for n in names}
        check_vocab_memory(list(vocabs.values()), settings.cap_bytes)

        features = [SparseFeature(column_name(f), vocabs[column_name(f)].size, settings.embedding_dim, side=side,
                                  multi_valued=multi, pooling="mean") for f, (side, multi) in FIELDS.items()]
        schema = Schema(features, labels=list(LABELS), metadata={
            "dataset": "ali-ccp", "fields": {column_name(f): f for f in FIELDS}, "preprocessing": options.raw,
            "task_split": f"train file: last {args.valid_fraction:g} (line order) valid, the rest train; test file: test",
            "id_mapping": "0 = missing; 1 = out-of-vocabulary; kept feature ids from 2 in numeric order",
            "vocabularies": {n: v.metadata([n]) for n, v in vocabs.items()}})
        stats = Stats(list(LABELS), {f.name: f.vocab_size for f in features},
                      {n for n, v in vocabs.items() if v.oov_id is not None}, [])
        writers = open_split_writers(out.path, settings.rows_per_file, settings.row_group_size, stats,
                                 compression=settings.compression)
        for kind in ("train", "test"):
            for table in _joined(spills[f"sample_skeleton_{kind}"], spills[f"common_features_{kind}"]):
                encoded = _encode(table, features, vocabs)
                if kind == "test":
                    writers["test"].write(encoded)
                    continue
                is_train = table.column("ordinal").to_numpy() < n_train
                writers["train"].write(encoded.filter(pa.array(is_train)))
                writers["valid"].write(encoded.filter(pa.array(~is_train)))
        for writer in writers.values():
            writer.close()
        schema.metadata["counts"] = {s: {"rows": w.rows, "files": w.files} for s, w in writers.items()}
        return {"": finish(out, schema, vocabs, stats, bad, started)}


def _encode(table: pa.Table, features: list[SparseFeature], vocabs: dict[str, Vocabulary]) -> pa.Table:
    columns = {}
    for feature in features:
        lists = table.column(feature.name).combine_chunks()
        keys = pc.list_flatten(lists).to_numpy()
        ids, _ = vocabs[feature.name].encode(keys, np.ones(len(keys), dtype=bool))
        lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)
        if feature.multi_valued:
            offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
            np.cumsum(lengths, out=offsets[1:])
            columns[feature.name] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(ids, pa.int64()))
        else:
            first = np.zeros(len(lengths), dtype=np.int64)
            starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
            first[lengths > 0] = ids[starts[lengths > 0]]
            columns[feature.name] = pa.array(first)
    for label in LABELS:
        columns[label] = table.column(label)
    return pa.table(columns)
