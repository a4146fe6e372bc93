"""NARM: the attention local encoder (weights vary, padding gets none) and its planted-purpose proof."""

from __future__ import annotations

import json

import pytest
import torch

from bigrec.config import TaskConfig
from bigrec.data.synthetic_sequences import build_schema, generate_sequences
from bigrec.models import build_model
from tests.model_training import fit_and_evaluate
from tests.test_recall import _most_popular
from tests.test_sequence_training import NONE, _batch, assert_reaches_user

SMALL = {"hidden_size": 32, "attention_size": 16, "embedding_dim": 16, "dropout_rate": 0.0}

# dropout draws differ per rank (conformance parity run)
PARITY_OVERRIDES = {"model": {"dropout_rate": 0.0}}


def mechanism(model, batch) -> None:
    """Attention weights vary over real positions, are 0 on padding, and the local context changes the output."""
    model.eval()
    with torch.no_grad():
        weights = model.attention(batch)  # [B, L]
        mask = model.embed(batch, NONE).mask
        assert torch.all(weights[~mask] == 0), "padding got attention"
        assert weights[mask].std() > 1e-6, "attention weights are constant"
    assert_reaches_user(model, model.local, batch, "the local encoder")


def test_attention_sees_every_real_state_and_no_padding():
    torch.manual_seed(0)
    schema = build_schema(20, 40, 8, embedding_dim=8)
    model = build_model("narm", schema, {"hidden_size": 12, "attention_size": 6, "embedding_dim": 8}).eval()
    batch = _batch([[1, 2, 3, 4], [5, 6], []], [7, 8, 9], schema)
    mechanism(model, batch)

    def user(histories):
        return model(_batch(histories, [1] * len(histories), schema), NONE).user

    torch.testing.assert_close(user([[5, 6], [1, 2, 3, 4, 5, 6, 7, 8]])[0], user([[5, 6]])[0])
    # an early item changes the user vector through the attention even when the GRU's last state barely moves
    assert not torch.allclose(user([[1, 2, 3, 4]]), user([[9, 2, 3, 4]]), atol=1e-5)
    assert torch.isfinite(user([[]])).all()
    no_local = build_model("narm", schema, {"embedding_dim": 8, "local_encoder": False})
    assert no_local.local is None and no_local.decoder.in_features == 64


@pytest.fixture(scope="module")
def purpose(tmp_path_factory):
    """Each item returns to the user's first cluster with probability 0.7, else a random cluster."""
    path = tmp_path_factory.mktemp("purpose")
    generate_sequences(path, num_users=1000, num_items=300, num_clusters=30, min_length=10, max_length=20,
                       history_len=20, follow=0.0, purpose=0.7, embedding_dim=16,
                       sequence_stride=20)  # one window per user, as calibrated (overlap: global-only 0.72, narm 0.65)
    return path


def test_narm_finds_the_main_purpose_beyond_its_global_encoder(purpose):
    popular = _most_popular(purpose)["recall@10"]
    fit = dict(epochs=5, batch_size=64, lr=0.02, train="train_sequences", task=TaskConfig(options={"loss": "full"}))
    narm = fit_and_evaluate(purpose, "narm", SMALL, **fit)["recall@10"]
    global_only = fit_and_evaluate(purpose, "narm", dict(SMALL, local_encoder=False), **fit)["recall@10"]
    print(json.dumps({"narm": narm, "global_encoder_only": global_only, "popular": popular}))
    assert narm > 3 * popular
    assert narm > global_only + 0.05
