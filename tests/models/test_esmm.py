"""ESMM: pCTCVR = pCTR x pCVR (stable in log space), the CVR tower learns over the entire impression
space, ESMM beats a CVR model trained on clicked rows when both score every impression, bad labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

from bigrec.config import TaskConfig
from bigrec.data.convert import columns_of, table_to_batch
from bigrec.data.synthetic import roc_auc
from bigrec.data.synthetic_selection_bias import generate_selection_bias
from bigrec.features import Schema
from bigrec.models import build_model
from bigrec.models.multitask.esmm import product_logit
from bigrec.tasks import build_task
from tests.model_training import fit, predict

ESMM = {"tower_units": [32, 16], "embedding_dim": 8}
NAIVE_CVR = {"hidden_units": [32], "task_hidden_units": [16], "num_tasks": 1, "embedding_dim": 8}  # same size


def mechanism(model, batch) -> None:
    """pCTCVR is exactly pCTR x pCVR, and the CVR tower moves pCTCVR only."""
    model.eval()
    with torch.no_grad():
        out = model(batch)
        p_ctr, p_ctcvr = torch.sigmoid(out.logits).unbind(dim=1)
        assert torch.allclose(p_ctcvr, p_ctr * out.extras["p_cvr"], rtol=1e-4, atol=1e-7)
        assert out.extras["p_cvr"].std() > 0
        head = model.towers.towers[1][-1]  # the CVR tower's output layer
        head.bias.add_(2.0)
        after = model(batch)
        head.bias.sub_(2.0)
    assert torch.equal(after.logits[:, 0], out.logits[:, 0])
    assert (after.logits[:, 1] > out.logits[:, 1]).all()


@pytest.fixture(scope="module")
def biased(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("selection_bias")
    generate_selection_bias(out, rows=60000, embedding_dim=8, seed=0, row_group_size=4096)
    return out


def test_product_logit_is_stable_and_exact():
    a = torch.tensor([-40.0, -5.0, 0.0, 3.0, 30.0, 200.0], requires_grad=True)
    b = torch.tensor([-40.0, 2.0, 0.0, 3.0, 30.0, 200.0])
    logit = product_logit(a, b)
    exact = torch.logit(torch.sigmoid(a.double()) * torch.sigmoid(b.double()))
    assert torch.allclose(logit[:5].double(), exact[:5], rtol=1e-4)
    assert torch.isfinite(logit).all() and logit[5] > 80  # saturated towers: large and finite
    logit.sum().backward()
    assert torch.isfinite(a.grad).all()


def test_cvr_tower_learns_from_unclicked_impressions(biased):
    """The CTCVR loss reaches the CVR tower on rows without a click (the entire space)."""
    schema = Schema.load(biased / "schema.json")
    model = build_model("esmm", schema, ESMM)
    module = build_task(model, schema, TaskConfig()).wrap(model)
    table = pq.read_table(biased / "train.parquet", columns=columns_of(schema)).slice(0, 2000)
    unclicked = table_to_batch(table.filter(pc.equal(table.column("click"), 0)), schema)
    module(unclicked)[0].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.towers.towers[1].parameters())


def test_esmm_beats_naive_cvr_over_the_entire_space(biased):
    esmm, _ = fit(biased, "esmm", ESMM, epochs=2)
    naive, _ = fit(biased, "shared_bottom", NAIVE_CVR, epochs=2, task=TaskConfig(labels=["conversion"]),
                   train_filter="click")
    got, cvr = predict(esmm, biased), predict(naive, biased)["score"]
    test = pq.read_table(biased / "test.parquet")
    would, click = test.column("would_convert").to_numpy(), test.column("click").to_numpy()
    conversion = test.column("conversion").to_numpy()
    assert np.array_equal(got["click"], click)  # predict's rows are the test rows in order
    aucs = {"ctr": roc_auc(got["score_click"], click), "ctcvr": roc_auc(got["score_conversion"], conversion),
            "esmm_cvr": roc_auc(got["p_cvr"], would), "naive_cvr": roc_auc(cvr, would)}
    print(aucs)
    assert aucs["ctr"] > 0.80 and aucs["ctcvr"] > 0.80  # learns both tasks
    assert aucs["esmm_cvr"] > aucs["naive_cvr"] + 0.01


def test_conversion_without_click_is_one_clear_error(biased, tmp_path, capsys):
    from tests.test_bad_input import run

    data = tmp_path / "data"
    data.mkdir()
    for name in ("valid.parquet", "test.parquet", "schema.json"):
        (data / name).write_bytes((biased / name).read_bytes())
    table = pq.read_table(biased / "train.parquet")
    conversion = table.column("conversion").to_numpy().copy()
    conversion[np.flatnonzero(table.column("click").to_numpy() == 0)[:7]] = 1
    pq.write_table(table.set_column(table.schema.get_field_index("conversion"), "conversion", pa.array(conversion)),
                   data / "train.parquet", row_group_size=100_000)
    code, err = run(tmp_path, data, capsys, model="esmm", extra=", tower_units: [8]")
    assert code == 2 and err.count("\n") == 1, err
    assert "train.parquet" in err and "'conversion'" in err and "7 row(s) have conversion = 1 where click = 0" in err

