"""SASRec: causal self-attention sees the order of the history.

Order, truncation and empty histories: tests/test_recall.py; learning and export: ibid.;
2-rank parity: the conformance suite.
"""

from __future__ import annotations

import torch

from bigrec.models.recall.sasrec import SASRec


# dropout draws differ per rank; the validation loss is compared only for label tasks (conformance)
PARITY_OVERRIDES = {"model": {"dropout_rate": 0.0}}


def mechanism(model: SASRec, batch) -> None:
    """Reversing every history changes the user vectors (an order-free pooling would not)."""
    with torch.no_grad():
        embedded = model.candidates.embed(model.embeddings, batch, torch.zeros(0, dtype=torch.int64)).batch
        history, mask = embedded.sequences[model.history_feature], embedded.masks[model.history_feature]
        lengths = mask.sum(dim=1)
        positions = torch.arange(mask.shape[1])[None, :]
        index = torch.where(mask, lengths[:, None] - 1 - positions, positions)  # reverse the real part
        reversed_history = history.gather(1, index[:, :, None].expand_as(history))
        forward_users = model.user_state(history, mask)
        reversed_users = model.user_state(reversed_history, mask)
    several = lengths > 1
    assert several.any()
    assert not torch.allclose(forward_users[several], reversed_users[several], atol=1e-5)
