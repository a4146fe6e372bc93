"""PLE: gates over own + shared experts that depend on the input, task-specific paths, learning two
binary tasks and two regression tasks, and bad task_types."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bigrec.config import TaskConfig, load_config
from bigrec.data.synthetic_multitask import generate_multitask
from bigrec.errors import ConfigError
from bigrec.features import Schema
from bigrec.models import build_model
from bigrec.tasks import build_task
from tests.model_training import fit_and_evaluate

CONFIG = Path(__file__).resolve().parents[2] / "configs/multitask/ple_synthetic.yaml"


def mechanism(model, batch) -> None:
    """Every gate is a softmax over its own + the shared experts that varies with the input, and a
    task's gate in the first layer changes that task's output only."""
    model.eval()
    with torch.no_grad():
        gates = model.gates(batch)
        width = model.layers[0].task_gates[0].linear.out_features
        for layer in gates:
            for gate in layer:
                assert gate.shape == (batch.labels.shape[0], width)
                assert torch.allclose(gate.sum(dim=-1), torch.ones(gate.shape[0]))
                assert gate.std(dim=0).max() > 0  # input-dependent, not constant
        before = model(batch).logits
        model.layers[0].task_gates[0].linear.weight.mul_(-5.0)
        after = model(batch).logits
        model.layers[0].task_gates[0].linear.weight.div_(-5.0)
    assert not torch.allclose(after[:, 0], before[:, 0])
    assert torch.equal(after[:, 1:], before[:, 1:])


@pytest.fixture(scope="module")
def unrelated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ple")
    generate_multitask(out, rows=30000, correlation=0.0, seed=2, row_group_size=4096)
    return out


def test_last_shared_layer_is_the_last_layers_shared_experts(unrelated):
    model = build_model("ple", Schema.load(unrelated / "schema.json"), load_config(CONFIG).model.params)
    shared = model.last_shared_layer()  # the last layer's shared experts, not the task experts
    assert len(shared) == 2 and all(s is e.last_linear() for s, e in zip(shared, model.layers[-1].shared_experts.experts))


def test_ple_learns_two_unrelated_binary_tasks(unrelated):
    params = {k: v for k, v in load_config(CONFIG).model.params.items()}
    result = fit_and_evaluate(unrelated, "ple", params, epochs=2)
    print(result)
    assert result["task1/auc"] > 0.85 and result["task2/auc"] > 0.85


def test_ple_learns_regression_tasks(tmp_path):
    generate_multitask(tmp_path, rows=20000, correlation=0.5, seed=4, regression_scales=(1.0, 2.0),
                       row_group_size=4096)
    params = {**load_config(CONFIG).model.params, "task_types": ["regression", "regression"]}
    result = fit_and_evaluate(tmp_path, "ple", params, epochs=2, lr=1e-2)
    print(result)
    # label variances are s^2 (1 + 0.5^2): 1.25 and 5 (the noise floors are 0.25 and 1)
    assert result["task1/mse"] < 0.8 and result["task2/mse"] < 3.2
    assert set(result) >= {"task1/mae", "task2/mae", "mse", "mae"}


def test_task_types_must_match_the_labels(unrelated):
    schema = Schema.load(unrelated / "schema.json")
    with pytest.raises(ConfigError, match="task_types"):
        build_model("ple", schema, {"task_types": ["binary", "ranking"]})
    model = build_model("ple", schema, {"task_types": ["binary", "binary", "regression"], "expert_units": [4]})
    with pytest.raises(ConfigError, match="num_tasks=3 but the task reads 2 label"):
        build_task(model, schema, TaskConfig())
    with pytest.raises(ConfigError, match="num_shared_experts must be >= 1"):
        build_model("ple", schema, {"num_shared_experts": 0})
