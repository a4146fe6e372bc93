"""GRU4Rec: the GRU reads order, BPR-max / TOP1-max train it, and it beats its order-free ablation."""

from __future__ import annotations

import json

import torch

from bigrec.config import TaskConfig
from bigrec.data.synthetic_sequences import build_schema
from bigrec.models import build_model
from tests.model_training import fit_and_evaluate
from tests.test_recall import _most_popular, markov  # noqa: F401 - the fixture (Markov sequences, 200 items)
from tests.test_sequence_training import NONE, _batch, assert_reaches_user

SMALL = {"hidden_size": 32, "embedding_dim": 16, "dropout_rate": 0.0}
BPR_MAX = {"loss": "bpr_max", "num_negatives": 64}

# dropout draws differ per rank (conformance parity run)
PARITY_OVERRIDES = {"model": {"dropout_rate": 0.0}}


def mechanism(model, batch) -> None:
    """The GRU's states make the user vector: they vary over positions, and zeroing them changes it."""
    model.eval()
    with torch.no_grad():
        history = model.embed(batch, NONE)
        states = model.states(history.items, history.mask)[history.mask]  # [N, E] real positions
        assert states.std(dim=0).max() > 1e-4, "GRU states are constant over positions"
    assert_reaches_user(model, model.gru, batch, "the GRU")


def test_order_padding_and_empty_history():
    torch.manual_seed(0)
    schema = build_schema(20, 40, 8, embedding_dim=8)
    model = build_model("gru4rec", schema, {"hidden_size": 12, "embedding_dim": 8}).eval()

    def user(histories):
        return model(_batch(histories, [1] * len(histories), schema), NONE).user

    base = user([[1, 2, 3, 4]])
    assert not torch.allclose(base, user([[2, 1, 3, 4]]), atol=1e-5), "the GRU must see the order"
    both = user([[], [5, 6], [1, 2, 3, 4, 5, 6, 7, 8]])  # padding never reaches a shorter row
    assert torch.isfinite(both).all()
    torch.testing.assert_close(both[1], user([[5, 6]])[0])
    mechanism(model, _batch([[1, 2, 3], [4, 5]], [6, 7], schema))
    mean = build_model("gru4rec", schema, {"embedding_dim": 8, "order_free": True}).eval()
    torch.testing.assert_close(mean(_batch([[1, 2, 3]], [1], schema), NONE).user,
                               mean(_batch([[3, 1, 2]], [1], schema), NONE).user)


def test_gru4rec_learns_markov_transitions_beyond_order_free_mean(markov):
    popular = _most_popular(markov)["recall@10"]
    fit = dict(epochs=3, batch_size=64, lr=0.01, train="train_sequences")
    bpr_max, top1_max = TaskConfig(options=BPR_MAX), TaskConfig(options={"loss": "top1_max", "num_negatives": 64})
    gru = fit_and_evaluate(markov, "gru4rec", SMALL, task=bpr_max, **fit)["recall@10"]
    mean = fit_and_evaluate(markov, "gru4rec", dict(SMALL, order_free=True), task=bpr_max, **fit)["recall@10"]
    top1 = fit_and_evaluate(markov, "gru4rec", SMALL, task=top1_max, **fit)["recall@10"]
    print(json.dumps({"gru4rec_bpr_max": gru, "order_free": mean, "gru4rec_top1_max": top1, "popular": popular}))
    assert gru > popular + 0.2 and top1 > popular + 0.2
    assert gru > mean + 0.1
