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
