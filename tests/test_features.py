import pytest

from bigrec.errors import SchemaError
from bigrec.features import DenseFeature, Schema, SequenceFeature, SparseFeature


def movielens_like() -> Schema:
    return Schema(
        features=[
            SparseFeature("user_id", 100),
            SparseFeature("item_id", 50, table="item"),
            SparseFeature("genres", 20, multi_valued=True, pooling="mean"),
            SequenceFeature("hist_item_ids", 50, table="item", max_len=8),
            DenseFeature("age"),
            DenseFeature("vec", dim=3),
        ],
        labels=["click"],
        metadata={"source": "test"},
    )


def test_schema_round_trip(tmp_path):
    schema = movielens_like()
    schema.save(tmp_path / "schema.json")
    loaded = Schema.load(tmp_path / "schema.json")
    assert loaded == schema
    assert loaded.tables == schema.tables
    assert loaded["hist_item_ids"].max_len == 8
    assert loaded.metadata == {"source": "test"}


def test_shared_table_and_placement():
    schema = movielens_like()
    item = schema.tables["item"]
    assert item.feature_names == ("item_id", "hist_item_ids")
    assert item.is_sequence and item.num_embeddings == 50
    # a table read by a sequence feature travels in sequence_features, pooled reads included
    assert schema.sequence_keys == ["item_id", "hist_item_ids"]
    assert schema.pooled_keys == ["user_id", "genres"]
    assert schema.dense_dim == 4


def test_inconsistent_shared_table_is_rejected():
    with pytest.raises(SchemaError, match="table 'item'"):
        Schema([SparseFeature("item_id", 50, table="item"), SequenceFeature("hist", 60, table="item")])


def test_bad_declarations_are_rejected(tmp_path):
    with pytest.raises(SchemaError, match="declared twice"):
        Schema([DenseFeature("a"), DenseFeature("a")])
    with pytest.raises(SchemaError, match="id_policy"):
        Schema([SparseFeature("a", 5, id_policy="clip")])
    (tmp_path / "bad.json").write_text('{"features": [{"name": "x", "kind": "weird"}]}')
    with pytest.raises(SchemaError, match="bad.json.*unknown kind"):
        Schema.load(tmp_path / "bad.json")
    with pytest.raises(SchemaError, match="not in the schema"):
        movielens_like()["nope"]


def test_with_embedding_dim_keeps_sharing():
    schema = movielens_like().with_embedding_dim(8)
    assert {t.embedding_dim for t in schema.tables.values()} == {8}
    assert schema.tables["item"].feature_names == ("item_id", "hist_item_ids")
