import pytest

from bigrec.config import load_config
from bigrec.errors import ConfigError

YAML = """
data: {path: some/dir, batch_size: 64}
model: {name: deepfm, hidden_units: [8, 4]}
trainer: {epochs: 2, sparse_optimizer: {name: exact_sgd, lr: 0.1}}
"""


def write(tmp_path, text=YAML):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_overrides_are_parsed_as_yaml(tmp_path):
    config = load_config(write(tmp_path), ["trainer.epochs=3", "model.hidden_units=[256,128]",
                                           "trainer.dense_optimizer.lr=0.01", "task.loss_weights=[1, 0.5]"])
    assert config.trainer.epochs == 3
    assert config.model.params["hidden_units"] == [256, 128]
    assert config.trainer.dense_optimizer.lr == 0.01
    assert config.trainer.sparse_optimizer.name == "exact_sgd"
    assert config.task.loss_weights == [1, 0.5]
    assert config.data.resolve("train") == "some/dir/train.parquet"


@pytest.mark.parametrize("override, message", [
    ("trainer.epoch=3", "unknown key 'trainer.epoch'"),
    ("trainer.dense_optimizer.lrr=1", "unknown key 'trainer.dense_optimizer.lrr'"),
    ("nosection.x=1", "unknown section"),
    ("trainer.epochs", "not of the form"),
])
def test_bad_overrides_name_the_key(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path), [override])


def test_missing_file_and_model_name(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="model.name is missing"):
        load_config(write(tmp_path, "model: {}\n"))


# Case 5 of the hostile-input issue: each of these used to load and fail later (TypeError,
# ZeroDivisionError) or run wrongly (1-2 row batches, an untrained "final" checkpoint).
@pytest.mark.parametrize("override, message", [
    ("data.batch_size=abc", "data.batch_size is 'abc', expected an integer >= 1"),
    ("data.batch_size=1.5", "data.batch_size is 1.5, expected an integer >= 1"),
    ("trainer.epochs=abc", "trainer.epochs is 'abc', expected an integer >= 1"),
    ("trainer.epochs=0", "trainer.epochs is 0, expected an integer >= 1"),
    ("trainer.log_every=0", "trainer.log_every is 0, expected an integer >= 1"),
    ("trainer.seed=-1", "trainer.seed is -1, expected an integer >= 0"),
    ("trainer.dense_optimizer.lr=0", "trainer.dense_optimizer.lr is 0, expected a number > 0"),
    ("trainer.progress_bar=maybe", "trainer.progress_bar is 'maybe', expected true or false"),
    ("trainer.early_stopping.mode=up", "trainer.early_stopping.mode is 'up', expected one of max, min"),
    ("trainer.lr_schedule=step", "expected one of constant, linear_decay, cosine"),
    ("task.loss_weights=[1, -2]", "task.loss_weights is [1, -2], expected a list of numbers, each >= 0, or null"),
    ("sharding.sharding_types=row_wise", "sharding.sharding_types is 'row_wise', expected a list of strings"),
    ("sharding.compute_device=tpu", "expected one of auto, cpu, cuda"),
    ("model.name=3", "model.name is 3, expected a string"),
])
def test_values_are_checked_against_their_type_and_range(tmp_path, override, message):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path), [override])
    text = str(caught.value)
    assert text.startswith(str(tmp_path / "run.yaml")) and message in text and "\n" not in text


def test_good_values_pass_and_numbers_widen_to_float(tmp_path):
    config = load_config(write(tmp_path), ["trainer.dense_optimizer.lr=1", "data.valid=null",
                                           "trainer.max_steps_per_epoch=null", "task.labels=[click]"])
    assert config.trainer.dense_optimizer.lr == 1.0 and isinstance(config.trainer.dense_optimizer.lr, float)
    assert config.data.valid is None and config.task.labels == ["click"]


def test_every_range_names_a_real_field():
    import dataclasses

    from bigrec import config as config_module
    from bigrec.config_check import LIMITS

    for key in LIMITS:
        cls_name, name = key.split(".")
        assert name in {f.name for f in dataclasses.fields(getattr(config_module, cls_name))}, key
