"""The model conformance suite: every registered model, the moment it is registered.

For each name of ``available_models()``, from its ``configs/<family>/<name>_synthetic.yaml``
on a tiny copy of that config's data set:

* the config's model parameters build the model on the meta device (what sharding does);
* one training step gives every parameter a gradient, and the outputs have the contract's
  shapes (``[B]`` ranking, ``[B, T]`` multi-task, user ``[B, D]``/``[B, K, D]`` recall);
* the config round-trips through ``to_dict``;
* the model's own hook ``tests/models/test_<name>.py: mechanism(model, batch)`` shows its
  mechanism changes the output;
* trained on 2 gloo ranks with every table split row-wise over both ranks, it matches 1 rank
  (same initial weights, same global batches): losses of every step and validation metrics.

The two parity runs train the whole zoo in two process groups (1 rank, then 2 ranks).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from bigrec.config import TaskConfig, config_from_dict, load_config
from bigrec.data.convert import columns_of, table_to_batch
from bigrec.features import Schema
from bigrec.models import available_models, build_model
from bigrec.models.output import ModelOutput, RecallOutput
from bigrec.tasks import build_task
from bigrec.testing import SYNTHETIC_SETS, run_ranks
from tests.models.conformance import (ROWS_PER_RANK_BATCH, data_set_name, model_test_module, synthetic_config_path,
                                      train_zoo, write_parity_data)

MODELS = available_models()


@pytest.fixture(scope="session")
def tiny_sets(tmp_path_factory) -> dict[str, Path]:
    """Every synthetic set the zoo's configs read, tiny, made once."""
    root = tmp_path_factory.mktemp("tiny_sets")
    names = {data_set_name(path) for model in MODELS if (path := synthetic_config_path(model))}
    unknown = sorted(names - set(SYNTHETIC_SETS))
    assert not unknown, f"synthetic sets {unknown} have no tiny generator in bigrec.testing.SYNTHETIC_SETS"
    sets = {}
    for name in sorted(names):
        SYNTHETIC_SETS[name](root / name, 0)
        sets[name] = root / name
    return sets


def _model_and_batch(model_name: str, tiny_sets: dict[str, Path], rows: int = 64):
    path = synthetic_config_path(model_name)
    assert path is not None, f"model '{model_name}' has no configs/<family>/{model_name}_synthetic.yaml"
    config = load_config(path)
    data_dir = tiny_sets[data_set_name(path)]
    schema = Schema.load(data_dir / "schema.json")
    torch.manual_seed(0)
    model = build_model(model_name, schema, config.model.params)
    table = pq.read_table(data_dir / "train.parquet", columns=columns_of(schema)).slice(0, rows)
    return config, schema, model, table_to_batch(table, schema)


@pytest.mark.parametrize("model_name", MODELS)
def test_builds_on_meta_from_its_config_and_round_trips(model_name, tiny_sets):
    path = synthetic_config_path(model_name)
    config, schema, _, _ = _model_and_batch(model_name, tiny_sets)
    meta = build_model(model_name, schema, config.model.params, device=torch.device("meta"))
    assert any(p.is_meta for p in meta.parameters())  # tables wait for DMP
    again = config_from_dict(config.to_dict(), source=str(path))
    assert again.to_dict() == config.to_dict()


@pytest.mark.parametrize("model_name", MODELS)
def test_one_step_reaches_every_parameter_with_contract_shapes(model_name, tiny_sets):
    config, schema, model, batch = _model_and_batch(model_name, tiny_sets)
    task = build_task(model, schema, config.task)
    module = task.wrap(model)
    module.train()
    loss, step = module(batch)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert isinstance(step[1], dict) and all(v.dim() == 0 for v in step[1].values())
    loss.backward()
    silent = [name for name, p in module.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not silent, f"{model_name}: parameters without gradient after one step: {silent}"

    model.eval()
    with torch.no_grad():
        if model.task == "retrieval":
            output = model(batch, torch.arange(1, 5))
            assert isinstance(output, RecallOutput)
            B, D = batch.batch_size, output.target.shape[-1]
            assert output.user.shape in ((B, D),) or (output.user.dim() == 3 and output.user.shape[::2] == (B, D))
            assert output.target.shape == (B, D) and output.candidates.shape == (4, D)
        else:
            output = model(batch)
            assert isinstance(output, ModelOutput)
            expected = (batch.batch_size,) if model.task == "ranking" else (batch.batch_size, model.num_tasks)
            assert output.logits.shape == expected
            assert torch.isfinite(output.logits).all()


@pytest.mark.parametrize("model_name", MODELS)
def test_mechanism_changes_the_output(model_name, tiny_sets):
    module = model_test_module(model_name)
    assert module is not None and hasattr(module, "mechanism"), \
        f"model '{model_name}' needs tests/models/test_{model_name}.py defining mechanism(model, batch)"
    _, _, model, batch = _model_and_batch(model_name, tiny_sets)
    model.eval()
    module.mechanism(model, batch)


@pytest.fixture(scope="module")
def zoo_on_one_and_two_ranks(tiny_sets, tmp_path_factory):
    root = tmp_path_factory.mktemp("parity")
    one, two = {}, {}
    for model in MODELS:
        config_path = synthetic_config_path(model)
        one[model], two[model] = root / "data1" / model, root / "data2" / model
        write_parity_data(tiny_sets[data_set_name(config_path)], one[model], two[model],
                          load_config(config_path).data.train)
    [single] = run_ranks(train_zoo, 1, {m: str(p) for m, p in one.items()}, str(root / "out1"),
                         2 * ROWS_PER_RANK_BATCH, "table_wise")
    results = run_ranks(train_zoo, 2, {m: str(p) for m, p in two.items()}, str(root / "out2"),
                        ROWS_PER_RANK_BATCH, "row_wise")
    return single, results


@pytest.mark.dist
@pytest.mark.parametrize("model_name", MODELS)
def test_two_ranks_with_split_tables_match_one_rank(model_name, zoo_on_one_and_two_ranks):
    single, (rank0, rank1) = zoo_on_one_and_two_ranks
    for result in (single[model_name], rank0[model_name], rank1[model_name]):
        assert "error" not in result, result.get("error")
    reference, first, second = single[model_name], rank0[model_name], rank1[model_name]
    assert first["losses"] == pytest.approx(second["losses"], rel=1e-6)
    assert first["losses"] == pytest.approx(reference["losses"], rel=2e-4, abs=2e-5)
    ranking_metrics = any("@" in key for key in reference["valid"])  # recall: the eval loss is in-batch, per rank
    for key, value in reference["valid"].items():
        if not (ranking_metrics and key == "loss"):
            assert first["valid"][key] == pytest.approx(value, abs=5e-4), key
    placement = first["placement"]
    assert placement and {kind for kind, _ in placement.values()} == {"row_wise"}
    assert {tuple(ranks) for _, ranks in placement.values()} == {(0, 1)}  # every table on both ranks
