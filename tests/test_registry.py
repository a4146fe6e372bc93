"""Model registry: names, parameters, and the meta-device initialisation guard."""

import pytest
import torch
from torchrec.modules.crossnet import CrossNet

from bigrec.errors import ConfigError
from bigrec.features import DenseFeature, Schema, SparseFeature
from bigrec.models import RecModel, available_models, build_model, build_streamed_model
from bigrec.models.embeddings import FeatureEmbeddings
from bigrec.models.registry import register_model

SCHEMA = Schema([SparseFeature("a", 10, embedding_dim=8), DenseFeature("x")], labels=["y"])


@register_model("test_meta_crossnet")
class MetaCrossNetModel(RecModel):
    def __init__(self, schema, on_cpu: bool = False, device=None):
        super().__init__(schema)
        self.embeddings = FeatureEmbeddings(schema, ["a"], device=device)
        self.cross = CrossNet(8, 2) if on_cpu else _on(device, lambda: CrossNet(8, 2))


def _on(device, make):
    with torch.device(device or "cpu"):
        return make()


def test_meta_parameters_without_reset_are_refused():
    with pytest.raises(RuntimeError, match="cross.kernels.0"):
        build_model("test_meta_crossnet", SCHEMA, {}, device=torch.device("meta"))
    model = build_model("test_meta_crossnet", SCHEMA, {"on_cpu": True}, device=torch.device("meta"))
    assert not model.cross.kernels[0].is_meta


def test_zoo_names_and_parameter_errors():
    assert {"deepfm"} <= set(available_models())
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        build_model("nope", SCHEMA, {})
    with pytest.raises(ConfigError, match="does not take parameter"):
        build_model("deepfm", SCHEMA, {"hidden_unitz": [4]})


def test_histories_a_ranking_model_never_reads_are_not_streamed():
    """DeepFM reads item_id, not the history sharing its table: the table becomes a pooled one (one
    collection fewer per step); DIN reads the history and keeps it; first-order rows share the lookup."""
    from torchrec.modules.embedding_modules import EmbeddingCollection

    from bigrec.features import SequenceFeature

    schema = Schema([SparseFeature("user_id", 10, embedding_dim=8), SparseFeature("item_id", 20, embedding_dim=8,
                                                                                  table="item"),
                     SequenceFeature("hist_item_ids", 20, embedding_dim=8, table="item", max_len=5)], labels=["y"])
    meta = torch.device("meta")
    assert "hist_item_ids" in build_model("deepfm", schema, {"hidden_units": [8]}, device=meta).schema
    deepfm = build_streamed_model("deepfm", schema, {"hidden_units": [8]}, device=meta)
    assert [f.name for f in deepfm.schema.features] == ["user_id", "item_id"]
    assert not any(isinstance(m, EmbeddingCollection) for m in deepfm.modules())
    assert sorted(t.name for t in deepfm.fields.embeddings.bags.embedding_bag_configs()) == [
        "item", "item_linear", "user_id", "user_id_linear"]
    din = build_streamed_model("din", schema, {"features": ["user_id", "item_id"],
                                      "behavior_features": {"item_id": "hist_item_ids"}, "hidden_units": [8]},
                      device=meta)
    assert "hist_item_ids" in din.schema
