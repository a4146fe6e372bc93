"""Each bad input ends in one clear line naming the file, column and problem (exit 2),
raised before any process group exists."""

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch.distributed as dist

from bigrec.cli import main

CONFIG = """
data: {{path: {path}, batch_size: 256, validate: true}}
model: {{name: {model}, hidden_units: [16], embedding_dim: 8{extra}}}
trainer: {{epochs: 1, output_dir: {out}, progress_bar: false}}
"""


@pytest.fixture()
def dataset(tmp_path, criteo_small):
    """A private copy of the small Criteo-like data set that a test may spoil."""
    target = tmp_path / "data"
    shutil.copytree(criteo_small, target)
    return target


def run(tmp_path, data_dir, capsys, model="deepfm", extra="", overrides=()):
    config = tmp_path / "run.yaml"
    config.write_text(CONFIG.format(path=data_dir, model=model, extra=extra, out=tmp_path / "out"))
    with pytest.MonkeyPatch.context() as patch:  # the error must come before any process group
        patch.setattr(dist, "init_process_group", lambda *a, **k: pytest.fail("process group created"))
        code = main(["train", str(config), *overrides])
    return code, capsys.readouterr().err


def rewrite(path, change):
    table = pq.read_table(path)
    pq.write_table(change(table), path, row_group_size=2048)


def replace_column(table, name, values):
    return table.set_column(table.schema.get_field_index(name), name, values)


@pytest.mark.parametrize("spoil, expected", [
    (lambda t: t.drop_columns(["sparse_3"]), ["train.parquet", "sparse_3", "missing"]),
    (lambda t: replace_column(t, "sparse_2", pa.array(np.full(t.num_rows, "a"))),
     ["train.parquet", "sparse_2", "expected an integer id"]),
    (lambda t: replace_column(t, "sparse_5", pa.array(np.full(t.num_rows, 10**9, dtype=np.int64))),
     ["train.parquet", "sparse_5", "outside [0,"]),
    (lambda t: replace_column(t, "dense_4", pa.array(np.r_[np.nan, np.ones(t.num_rows - 1)].astype(np.float32))),
     ["train.parquet", "dense_4", "NaN/inf"]),
    (lambda t: replace_column(t, "label", pa.array(np.full(t.num_rows, np.inf, dtype=np.float32))),
     ["train.parquet", "label", "NaN/inf"]),
    # binary labels must be 0 or 1: ratings 1-5 in a click column, a 2.0, a -1
    (lambda t: replace_column(t, "label", pa.array((np.arange(t.num_rows) % 5 + 1).astype(np.float32))),
     ["train.parquet", "column 'label'", "12,800 of 16,000 label values are not 0 or 1 (e.g. 2)"]),
    (lambda t: replace_column(t, "label", pa.array(np.r_[2.0, np.zeros(t.num_rows - 1)].astype(np.float32))),
     ["train.parquet", "column 'label'", "1 of 16,000 label values are not 0 or 1 (e.g. 2)"]),
    (lambda t: replace_column(t, "label", pa.array(np.r_[np.ones(t.num_rows - 1), -1].astype(np.int64))),
     ["train.parquet", "column 'label'", "1 of 16,000 label values are not 0 or 1 (e.g. -1)"]),
])
def test_bad_columns(tmp_path, dataset, capsys, spoil, expected):
    rewrite(dataset / "train.parquet", spoil)
    code, err = run(tmp_path, dataset, capsys)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for fragment in expected:
        assert fragment in err, err


def test_empty_and_corrupt_files(tmp_path, dataset, capsys):
    (dataset / "valid.parquet").write_bytes(b"")
    code, err = run(tmp_path, dataset, capsys)
    assert code == 2 and "valid.parquet" in err and "empty" in err
    (dataset / "valid.parquet").write_bytes(b"PAR1 this is not parquet at all")
    code, err = run(tmp_path, dataset, capsys)
    assert code == 2 and "valid.parquet" in err and "not a readable Parquet file" in err


def test_unknown_model_feature_and_parameter(tmp_path, dataset, capsys):
    code, err = run(tmp_path, dataset, capsys, model="deepfmm")
    assert code == 2 and "unknown model 'deepfmm'" in err and "deepfm" in err
    code, err = run(tmp_path, dataset, capsys, extra=", features: [sparse_0, no_such_feature]")
    assert code == 2 and "no_such_feature" in err and "not in the schema" in err
    code, err = run(tmp_path, dataset, capsys, extra=", hidden_unit: [3]")
    assert code == 2 and "hidden_unit" in err and "hidden_units" in err


def test_bad_sparse_optimizer_on_cpu(tmp_path, dataset, capsys):
    code, err = run(tmp_path, dataset, capsys, overrides=["trainer.sparse_optimizer.name=adam"])
    assert code == 2 and "no CPU kernel" in err


def test_soft_labels_allow_the_unit_interval_only(tmp_path, dataset):
    from bigrec.config import config_from_dict
    from bigrec.errors import DataError
    from bigrec.train.trainer import prepare

    rewrite(dataset / "train.parquet", lambda t: replace_column(
        t, "label", pa.array(np.linspace(0, 1, t.num_rows).astype(np.float32))))
    raw = {"data": {"path": str(dataset)}, "model": {"name": "deepfm"}, "task": {"soft_labels": True}}
    prepare(config_from_dict(raw))  # probabilities in [0, 1] are fine when declared
    with pytest.raises(DataError, match=r"train.parquet, column 'label': .* are not 0 or 1"):
        prepare(config_from_dict({**raw, "task": {}}))
    rewrite(dataset / "valid.parquet", lambda t: replace_column(
        t, "label", pa.array(np.full(t.num_rows, 1.5, dtype=np.float32))))
    with pytest.raises(DataError, match=r"valid.parquet, column 'label': 2,000 of 2,000 label values are not in "
                                        r"\[0, 1\]"):
        prepare(config_from_dict(raw))


def test_labels_are_checked_while_streaming_too(tmp_path, dataset):
    """With data.validate off (and in eval/predict) the stream checks each row group it reads."""
    from bigrec.config import config_from_dict
    from bigrec.data.stream import make_loader
    from bigrec.errors import DataError
    from bigrec.train.trainer import prepare

    rewrite(dataset / "test.parquet", lambda t: replace_column(
        t, "label", pa.array(np.full(t.num_rows, 3.0, dtype=np.float32))))
    prepared = prepare(config_from_dict({"data": {"path": str(dataset), "validate": False},
                                         "model": {"name": "deepfm"}}))
    with pytest.raises(DataError, match=r"test.parquet, column 'label': 2,000 of 2,000 label values in row group 0 "
                                        r"are not 0 or 1"):
        list(make_loader(prepared.splits["test"]))
