"""Item catalogue: written by the recall preparers, checked on load, read by item towers through their tables."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from bigrec.config import DataConfig, TaskConfig
from bigrec.data.catalogue import ItemCatalogue
from bigrec.data.parquet_io import ITEM_CATALOGUE as CATALOGUE_FILE
from bigrec.data.convert import table_to_batch
from bigrec.data.movielens import prepare_movielens
from bigrec.data.synthetic_sequences import generate_sequences
from bigrec.errors import ConfigError, DataError
from bigrec.features import Schema
from bigrec.models import available_models, build_model
from bigrec.models.registry import model_class
from bigrec.tasks import build_task
from tests.test_data_prep import _write_grouplens

DSSM_FEATURES = {"item_features": ["item_id", "genres", "year"], "hidden_units": [16, 8], "embedding_dim": 8}


@pytest.fixture(scope="module")
def recall(tmp_path_factory):
    """The tiny MovieLens of the data-prep tests, recall layout: ``(directory, schema)``."""
    root = tmp_path_factory.mktemp("catalogue")
    prepare_movielens(_write_grouplens(root / "raw"), root / "out", history_len=3, embedding_dim=8)
    directory = root / "out" / "recall"
    return directory, Schema.load(directory / "schema.json")


def _rows(directory, split: str = "test") -> pa.Table:
    return pq.read_table(directory / f"{split}.parquet")


def test_preparers_write_a_catalogue_that_agrees_with_the_splits(recall, tmp_path):
    directory, schema = recall
    assert schema.metadata["item_catalogue"] == CATALOGUE_FILE
    items = pq.read_table(directory / CATALOGUE_FILE)
    assert items.schema == pa.schema([("item_id", pa.int64()), ("genres", pa.list_(pa.int64())),
                                      ("year", pa.int64())])  # the splits' column types
    vocab = schema["item_id"].vocab_size
    assert items.column("item_id").to_pylist() == list(range(1, vocab))  # every item, the never-rated one too
    catalogue = ItemCatalogue.for_schema(schema, directory / "schema.json")
    for split in ("train", "valid", "test"):
        rows = _rows(directory, split)
        pieces = catalogue.lookup(torch.tensor(rows.column("item_id").to_pylist()))
        values, lengths = pieces["genres"]
        assert [v.tolist() for v in values.split(lengths.tolist())] == rows.column("genres").to_pylist()
        assert pieces["year"][0].tolist() == rows.column("year").to_pylist()
    # the synthetic sequences list their items too (the id is their only feature)
    generate_sequences(tmp_path, num_users=30, num_items=12, num_clusters=3)
    synthetic = ItemCatalogue.for_schema(Schema.load(tmp_path / "schema.json"), tmp_path / "schema.json")
    assert synthetic.num_items == 13 and synthetic.features == {}
    assert pq.read_table(tmp_path / CATALOGUE_FILE).column("item_id").to_pylist() == list(range(1, 13))


@pytest.mark.parametrize("change, problem, column", [
    ("missing", "file not found", None),
    ("drop_year", "column is missing", "year"),
    ("float_year", "expected an integer id", "year"),
    ("duplicate", "appear more than once", "item_id"),
    ("out_of_range", "outside", "genres"),
])
def test_a_bad_catalogue_is_one_error_naming_file_column_and_problem(recall, tmp_path, change, problem, column):
    directory, schema = recall
    items = pq.read_table(directory / CATALOGUE_FILE)
    if change == "drop_year":
        items = items.drop(["year"])
    elif change == "float_year":
        items = items.set_column(2, "year", items.column("year").cast(pa.float64()))
    elif change == "duplicate":
        items = pa.concat_tables([items, items.slice(0, 1)])
    elif change == "out_of_range":
        items = items.set_column(1, "genres", pa.array([[999]] * items.num_rows, pa.list_(pa.int64())))
    path = tmp_path / CATALOGUE_FILE
    if change != "missing":
        pq.write_table(items, path)
    with pytest.raises(DataError) as error:
        ItemCatalogue.load(path, schema)
    assert error.value.path == str(path) and problem in error.value.problem and error.value.column == column


def _dssm(schema, catalogue=None, **params):
    model = build_model("dssm", schema, {**DSSM_FEATURES, **params})
    if catalogue is not None:
        model.attach_catalogue(catalogue.features)
    return model.eval()


def test_dssm_item_tower_reads_item_features_for_targets_candidates_and_the_corpus(recall):
    directory, schema = recall
    catalogue = ItemCatalogue.for_schema(schema, directory / "schema.json")
    torch.manual_seed(0)
    model = _dssm(schema, catalogue)
    rows = _rows(directory, "train")
    batch = table_to_batch(rows, schema)
    ids = torch.tensor(rows.column("item_id").to_pylist())
    with torch.no_grad():
        output = model(batch, ids)  # candidates = the rows' own targets, from the catalogue
        assert torch.allclose(output.candidates, output.target, atol=1e-6)
        assert torch.allclose(model.item_vectors(ids), output.target, atol=1e-6)
        # the mechanism: an item's genres and year move its vector (same id)
        changed = ItemCatalogue(catalogue.path, "item_id", catalogue.num_items, dict(catalogue.features))
        values, lengths = changed.features["genres"]
        changed.features["genres"] = (torch.full_like(values, 1), lengths)
        moved = _dssm(schema, changed)
        moved.load_state_dict(model.state_dict())
        assert not torch.allclose(moved.item_vectors(ids), output.target, atol=1e-4)
        # the default item tower is the item side of the schema
        assert build_model("dssm", schema, {}).item_features == ["item_id", "genres", "year"]
    with pytest.raises(ConfigError, match="catalogue"):
        _dssm(schema).item_vectors(ids)  # no catalogue attached: candidates cannot be embedded
    with pytest.raises(ConfigError, match="side 'user'"):
        build_model("dssm", schema, {"item_features": ["item_id", "gender"]})
    with pytest.raises(ConfigError, match="must include the item id"):
        build_model("dssm", schema, {"item_features": ["genres"]})


def test_the_task_hands_the_catalogue_over_or_says_why_it_cannot(recall, tmp_path):
    directory, schema = recall
    model = build_model("dssm", schema, DSSM_FEATURES)
    build_task(model, schema, TaskConfig(), DataConfig(path=str(directory))).wrap(model)
    assert model.candidates.attached
    bare = tmp_path / "no_catalogue"
    bare.mkdir()
    plain = Schema(list(schema.features), labels=list(schema.labels),
                   metadata={k: v for k, v in schema.metadata.items() if k != "item_catalogue"})
    plain.save(bare / "schema.json")
    with pytest.raises(ConfigError, match="names none"):
        build_task(model, plain, TaskConfig(), DataConfig(path=str(bare)))


@pytest.mark.parametrize("name", [n for n in available_models() if model_class(n).task == "retrieval"])
def test_no_item_side_feature_reaches_a_user_tower_by_default(recall, name):
    """Every recall model, default parameters: the rows' target and its item features leave the user vectors alone."""
    directory, schema = recall
    catalogue = ItemCatalogue.for_schema(schema, directory / "schema.json")
    torch.manual_seed(0)
    model = build_model(name, schema, {})
    if model.needs_catalogue:
        model.attach_catalogue(catalogue.features)
    model.eval()
    rows = _rows(directory, "train")
    other = rows
    for feature in schema.side("item"):  # every item-side column of every row replaced by another row's
        other = other.set_column(other.schema.get_field_index(feature.name), feature.name,
                                 rows.column(feature.name).take(pa.array(list(range(1, rows.num_rows)) + [0])))
    none = torch.zeros(0, dtype=torch.int64)
    with torch.no_grad():
        user = model(table_to_batch(rows, schema), none).user
        assert torch.equal(user, model(table_to_batch(other, schema), none).user)


def test_item_features_on_sequence_tables_are_pooled_per_candidate_like_the_targets():
    """An item feature whose table a history also reads rides in the collection's KJT, pooled per candidate."""
    from bigrec.features import SequenceFeature, SparseFeature

    schema = Schema([
        SparseFeature("user_id", 5, 8, side="user"),
        SparseFeature("item_id", 6, 8, table="item", side="item"),
        SparseFeature("tags", 4, 8, table="tag", multi_valued=True, pooling="mean", side="item"),
        SequenceFeature("hist_item_ids", 6, 8, table="item", max_len=3),
        SequenceFeature("hist_tags", 4, 8, table="tag", max_len=3),
    ])
    tags = [[], [1, 2], [3], [1, 2, 3], [2], [3, 1]]  # item i's tags
    catalogue = {"tags": (torch.tensor([t for item in tags for t in item]),
                          torch.tensor([len(item) for item in tags], dtype=torch.int32))}
    targets = [1, 3, 5, 4]
    table = pa.table({"user_id": pa.array([1, 2, 3, 4], pa.int64()), "item_id": pa.array(targets, pa.int64()),
                      "tags": pa.array([tags[i] for i in targets], pa.list_(pa.int64())),
                      "hist_item_ids": pa.array([[2], [], [1, 4], [3]], pa.list_(pa.int64())),
                      "hist_tags": pa.array([[3], [], [1, 2], [1]], pa.list_(pa.int64()))})
    torch.manual_seed(0)
    model = build_model("dssm", schema, {"item_features": ["item_id", "tags"], "hidden_units": [8],
                                         "embedding_dim": 8})
    assert not model.candidates.candidate_keys[1].bag  # the tag table lives in the collection
    model.attach_catalogue(catalogue)
    with torch.no_grad():
        output = model.eval()(table_to_batch(table, schema), torch.tensor(targets))
        assert torch.allclose(output.candidates, output.target, atol=1e-6)
        assert torch.allclose(model.item_vectors(torch.tensor(targets)), output.target, atol=1e-6)
