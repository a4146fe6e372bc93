"""YouTube DNN: the mean of the most recent history items drives the user vector (padding and older items
do not), user-side features only by default, bad configs, and the planted signal (history beats no history)."""

from __future__ import annotations

import pytest
import torch

from bigrec.data.synthetic_interests import generate_interests
from bigrec.errors import ConfigError
from bigrec.models import build_model
from bigrec.models.recall.youtube_dnn import YouTubeDNN
from tests.model_training import fit_and_evaluate
from tests.models.recall_helpers import popular_recall, sequence_batch, sequence_schema

NONE = torch.zeros(0, dtype=torch.int64)
# in-batch negatives are each rank's own rows: the parity run scores against the full corpus
PARITY_OVERRIDES = {"task": {"options": {"loss": "full"}}}


def mechanism(model: YouTubeDNN, batch) -> None:
    """User vectors differ between users, and masking the history out (its mean = 0) changes them."""
    model.eval()
    with torch.no_grad():
        embedded = model.candidates.embed(model.embeddings, batch, NONE).batch
        users = model.user_vector(embedded)
        assert users.std(dim=0).amax() > 0
        if model.history_feature is not None:
            masks = embedded.masks[model.history_feature]
            assert masks.any(), "the batch holds no history"
            embedded.masks[model.history_feature] = torch.zeros_like(masks)
            assert (model.user_vector(embedded) - users).abs().amax() > 1e-6, "the history changes nothing"


def test_recent_mean_of_the_history_padding_and_side_defaults():
    schema = sequence_schema(max_len=8)
    torch.manual_seed(0)
    model = build_model("youtube_dnn", schema, {"hidden_units": [16, 8], "embedding_dim": 8, "max_seq_len": 3})
    model.eval()
    assert model.user_features == ["user_id", "hist_item_ids"] and model.item_features == ["item_id"]

    def user(histories, users=None):
        return model(sequence_batch(schema, histories, [1] * len(histories), users or [1] * len(histories)),
                     NONE).user

    base = user([[5, 6, 7, 8]])
    assert torch.allclose(base, user([[9, 6, 7, 8]]), atol=1e-6), "items older than max_seq_len count"
    assert torch.allclose(base, user([[5, 8, 7, 6]]), atol=1e-6), "the mean is order-free"
    assert not torch.allclose(base, user([[5, 6, 7, 9]]), atol=1e-5), "recent items must count"
    both = user([[5, 6, 7, 8], [3], []])
    assert torch.isfinite(both).all() and torch.allclose(both[1], user([[3]])[0], atol=1e-6)
    output = model(sequence_batch(schema, [[1]], [2]), torch.arange(1, 5))
    assert output.user.shape == (1, 8) and output.candidates.shape == (4, 8)
    # item vectors outside a step (full ranking, export) with a pooled user feature in the model
    assert torch.allclose(model.item_vectors(torch.arange(1, 5)), output.candidates, atol=1e-6)


def test_youtube_dnn_bad_config_is_one_clear_error():
    schema = sequence_schema()
    for params, match in (({"item_features": ["hist_item_ids"]}, "item_id"), ({"max_seq_len": 0}, "max_seq_len"),
                          ({"user_features": ["item_id"]}, "item-side"), ({"user_features": ["nope"]}, "nope")):
        with pytest.raises(ConfigError, match=match):
            build_model("youtube_dnn", schema, params)


def test_history_mean_beats_user_features_alone(tmp_path):
    """Users with 2 interests: the pooled history carries them; the user id alone learns far less."""
    generate_interests(tmp_path, num_users=800, num_items=200, num_clusters=20, interests=2, min_length=6,
                       max_length=20, history_len=20, embedding_dim=16)
    params = {"hidden_units": [32, 16], "embedding_dim": 16, "max_seq_len": 20}
    history = fit_and_evaluate(tmp_path, "youtube_dnn", {**params, "user_features": ["user_id", "hist_item_ids"]},
                               epochs=3, lr=0.01)
    alone = fit_and_evaluate(tmp_path, "youtube_dnn", {**params, "user_features": ["user_id"]}, epochs=3, lr=0.01)
    popular = popular_recall(tmp_path)
    print({"history": history["recall@10"], "user_id": alone["recall@10"], "popular": popular})
    assert history["recall@10"] > 2 * popular
    assert history["recall@10"] > alone["recall@10"] + 0.05
