"""Model registry: names, parameters, and the meta-device initialisation guard."""

import pytest
import torch
from torchrec.modules.crossnet import CrossNet

from bigrec.errors import ConfigError
from bigrec.features import DenseFeature, Schema, SparseFeature
from bigrec.models import RecModel, available_models, build_model
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
