"""Loss weighting (bigrec/tasks/weighting.py): fixed, uncertainty and GradNorm -- formulas, that the
adaptive ones move the weights the right way on tasks whose losses differ 100x in scale, GradNorm's
first-order gradient equal to the paper's double-backward one, and GradNorm under DMP on 2 ranks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bigrec.config import TaskConfig, config_from_dict
from bigrec.data.synthetic_multitask import generate_multitask
from bigrec.errors import ConfigError
from bigrec.features import Schema
from bigrec.models import build_model
from bigrec.tasks import build_task
from bigrec.tasks.weighting import GradNorm, UncertaintyWeighting, parse_weighting
from bigrec.testing import run_ranks
from tests.model_training import batches, fit

REGRESSION = {"hidden_units": [16], "task_hidden_units": [8], "task_types": ["regression", "regression"],
              "embedding_dim": 8}


@pytest.fixture(scope="module")
def scaled_tasks(tmp_path_factory) -> Path:
    """Two regression tasks whose MSE losses differ 100x (label scales 1 and 10)."""
    out = tmp_path_factory.mktemp("scaled")
    generate_multitask(out, rows=12000, correlation=0.0, seed=3, regression_scales=(1.0, 10.0), row_group_size=4096)
    return out


def _module(data_dir: Path, weighting, name: str = "shared_bottom", params: dict = REGRESSION):
    schema = Schema.load(data_dir / "schema.json")
    torch.manual_seed(0)
    model = build_model(name, schema, params)
    return build_task(model, schema, TaskConfig(loss_weighting=weighting)).wrap(model), schema


def test_fixed_weights_and_logged_terms(scaled_tasks):
    module, schema = _module(scaled_tasks, "fixed")
    module.weighting.weights.copy_(torch.tensor([2.0, 0.5]))
    batch = batches(scaled_tasks, "test", schema, 64)[0]
    loss, step = module(batch)
    per_task = torch.stack([step.terms["loss/task1"], step.terms["loss/task2"]])
    assert torch.allclose(loss, 2.0 * per_task[0] + 0.5 * per_task[1])
    assert step.terms["weight/task1"] == 2.0 and step.terms["weight/task2"] == 0.5


def test_uncertainty_formula_and_learned_weights_follow_loss_scale(scaled_tasks):
    weighting = UncertaintyWeighting([1.0, 2.0], ["binary", "regression"])
    with torch.no_grad():
        weighting.log_vars.copy_(torch.tensor([0.3, -0.2]))
    losses = torch.tensor([0.7, 5.0])
    loss, weights = weighting(losses)
    s = torch.tensor([0.3, -0.2])
    expected = 1.0 * (torch.exp(-s[0]) * 0.7 + s[0] / 2) + 2.0 * (0.5 * torch.exp(-s[1]) * 5.0 + s[1] / 2)
    assert torch.allclose(loss, expected)
    assert torch.allclose(weights, torch.tensor([torch.exp(-s[0]), 2.0 * 0.5 * torch.exp(-s[1])]))
    # trained: sigma_t^2 tracks each task's loss, so the 100x larger task gets the much smaller weight
    module, _ = fit(scaled_tasks, "shared_bottom", REGRESSION, epochs=2, lr=2e-2, batch_size=64,
                    task=TaskConfig(loss_weighting="uncertainty"))
    log_vars = module.weighting.log_vars.detach()
    assert log_vars[1] - log_vars[0] > 2.0, log_vars  # weight ratio > e^2 in favour of the small task


def _double_backward_gradnorm(losses, weights, initial, shared, alpha):
    """GradNorm as usually written: G_t = ||d(w_t L_t)/dW|| with create_graph, differentiated."""
    norms = []
    for t in range(losses.shape[0]):
        grads = torch.autograd.grad(weights[t] * losses[t], shared, retain_graph=True, create_graph=True)
        norms.append(torch.cat([g.flatten() for g in grads]).norm())
    norms = torch.stack(norms)
    ratios = losses.detach() / initial
    target = (norms.mean() * (ratios / ratios.mean()) ** alpha).detach()
    return (norms - target).abs().sum()


def test_gradnorm_weight_gradient_equals_the_double_backward_one(scaled_tasks):
    module, schema = _module(scaled_tasks, {"name": "gradnorm", "alpha": 1.5})
    batch = batches(scaled_tasks, "test", schema, 128)[0]
    gradnorm: GradNorm = module.weighting
    with torch.no_grad():
        gradnorm.weights.copy_(torch.tensor([0.4, 1.6]))
        gradnorm.initial.copy_(torch.tensor([1.5, 90.0]))
    shared = list(module.model.last_shared_layer().parameters())
    assert [p.shape for p in shared] == [(16, 72), (16,)]  # the bottom MLP's last linear layer
    module.train()
    loss, step = module(batch)
    loss.backward()
    ours = gradnorm.weights.grad.clone()
    network_grads = [p.grad.clone() for p in shared]
    module.zero_grad()
    output = module.model(batch)
    losses = module.task.per_task_losses(output.logits, module.task.targets(batch))
    weights = gradnorm.weights.detach().clone().requires_grad_(True)
    reference = _double_backward_gradnorm(losses, weights, gradnorm.initial, shared, 1.5)
    (expected,) = torch.autograd.grad(reference, weights)
    assert torch.allclose(ours, expected, rtol=1e-4, atol=1e-6), (ours, expected)
    # the network itself trains on sum_t w_t L_t only
    (losses * gradnorm.weights.detach()).sum().backward()
    for got, want in zip(network_grads, shared):
        assert torch.allclose(got, want.grad, rtol=1e-4, atol=1e-6)
    assert step.terms["weight/task1"] == pytest.approx(0.4) and gradnorm.weights.sum().item() == pytest.approx(2.0)


def test_gradnorm_balances_gradient_norms(scaled_tasks):
    module, _ = fit(scaled_tasks, "shared_bottom", REGRESSION, epochs=2, lr=1e-2, batch_size=64,
                    task=TaskConfig(loss_weighting={"name": "gradnorm", "alpha": 1.0}))
    weights = module.weighting.weights.detach()
    assert weights.sum().item() == pytest.approx(2.0, rel=1e-3) and (weights > 0).all()
    assert weights[0] > 3 * weights[1], weights  # the task with 10x smaller gradients is up-weighted
    assert (module.weighting.initial > 0).all()
    assert {"weights", "initial"} <= {k.split(".")[-1] for k in module.state_dict() if k.startswith("weighting.")}


def test_bad_weighting_configs():
    with pytest.raises(ConfigError, match="unknown; known"):
        parse_weighting("dwa")
    with pytest.raises(ConfigError, match="no option"):
        parse_weighting({"name": "uncertainty", "alpha": 1.0})
    with pytest.raises(ConfigError, match="must be > 0"):
        GradNorm([1.0, 0.0], ["binary", "binary"])


def test_gradnorm_needs_a_last_shared_layer(scaled_tasks, tmp_path):
    from bigrec.data.synthetic_selection_bias import generate_selection_bias

    schema = generate_selection_bias(tmp_path, rows=500, num_users=20, num_items=20, embedding_dim=8)
    model = build_model("esmm", schema, {"tower_units": [8], "embedding_dim": 8})  # only embeddings shared
    with pytest.raises(ConfigError, match="last shared layer.*ESMM has none"):
        build_task(model, schema, TaskConfig(loss_weighting="gradnorm"))
    shared = build_model("esmm", schema, {"hidden_units": [16], "tower_units": [8], "embedding_dim": 8})
    build_task(shared, schema, TaskConfig(loss_weighting="gradnorm"))


# ---------------------------------------------------------------- 2 ranks
def _train_gradnorm(data_dir: str, out_dir: str) -> dict:
    from bigrec.data.stream import make_loader
    from bigrec.train.trainer import Trainer, prepare

    config = config_from_dict({
        "data": {"path": data_dir, "batch_size": 128},
        "model": {"name": "ple", "expert_units": [8], "num_experts": 1, "num_layers": 2, "num_shared_experts": 2,
                  "tower_units": [8], "embedding_dim": 8},
        "task": {"loss_weighting": {"name": "gradnorm", "alpha": 1.5}},
        "trainer": {"output_dir": out_dir, "progress_bar": False, "dense_optimizer": {"name": "adam", "lr": 0.05},
                    "pipeline": True},
        "sharding": {"print_plan": False}})
    trainer = Trainer(config, prepare(config))
    trainer.model.train()
    steps = list(trainer._steps(make_loader(trainer.splits["train"]), 6))
    weighting = trainer.model.module.weighting
    return {"weights": weighting.weights.detach().tolist(), "losses": [float(s[0]) for s in steps],
            "logged": [float(steps[-1][1]["weight/task1"]), float(steps[-1][1]["weight/task2"])],
            "pipelined": trainer.pipeline is not None}


@pytest.mark.dist
def test_gradnorm_trains_under_dmp_on_two_ranks(tmp_path):
    generate_multitask(tmp_path / "data", rows=3000, correlation=0.0, seed=1, row_group_size=512)
    ranks = run_ranks(_train_gradnorm, 2, str(tmp_path / "data"), str(tmp_path / "out"))
    assert ranks[0]["pipelined"]
    assert ranks[0]["weights"] == ranks[1]["weights"]  # replicated, updated with all-reduced gradients
    assert ranks[0]["weights"] != [1.0, 1.0] and sum(ranks[0]["weights"]) == pytest.approx(2.0, abs=0.15)
    assert all(torch.isfinite(torch.tensor(r["losses"])).all() for r in ranks)
