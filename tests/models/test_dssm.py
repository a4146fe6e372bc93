"""DSSM: the user tower reads the user side only and its vector follows the history.

Learning: tools/bench/models_recall.py and tests/test_recall.py; parity: the conformance suite.
"""

from __future__ import annotations

import torch

from bigrec.models.recall.dssm import DSSM


# in-batch negatives are each rank's own rows: the parity run scores against the full corpus
PARITY_OVERRIDES = {"task": {"options": {"loss": "full"}}}


def mechanism(model: DSSM, batch) -> None:
    """User vectors are unit vectors that differ between users; item vectors live in the same space."""
    with torch.no_grad():
        output = model(batch, torch.arange(1, 4))
    assert torch.allclose(output.user.norm(dim=-1), torch.ones(batch.batch_size), atol=1e-5)
    assert output.user.std(dim=0).max() > 0
    assert output.candidates.shape[-1] == output.user.shape[-1]


def test_default_user_tower_takes_only_user_side_features(tmp_path):
    from bigrec.data.synthetic_sequences import generate_sequences
    from bigrec.features import Schema

    generate_sequences(tmp_path, num_users=50, num_items=30, num_clusters=3, min_length=5, max_length=8,
                       history_len=8)
    schema = Schema.load(tmp_path / "schema.json")
    model = DSSM(schema, hidden_units=[8], embedding_dim=8)
    assert model.user_features and all(schema[n].side == "user" for n in model.user_features)
