"""Bad ranking-model parameters in a config fail in ``train`` with one clear error naming the model,
the parameter and the valid values, before any process group starts (the meta build in ``prepare``).
Model-level checks of the same rules: test_dien.py, test_bst.py, test_sequence_ranking.py,
test_fibinet.py, test_edcn.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch.distributed as dist

from bigrec.config import load_config
from bigrec.data.synthetic_order import generate_order
from bigrec.errors import ConfigError
from bigrec.train.trainer import train

CONFIGS = Path(__file__).resolve().parents[2] / "configs/ranking"


@pytest.fixture(scope="module")
def order_data(tmp_path_factory) -> Path:
    """A tiny order data set: user_id, item_id, item_cat and their histories (tables item, item_cat)."""
    path = tmp_path_factory.mktemp("order")
    generate_order(path, rows=200, num_items=20, num_categories=4, max_len=4, overflow=1)
    return path


BEHAVIOUR_CASES = [
    ("model.features=[user_id,item_id,no_such_feature]", r"feature\(s\) \['no_such_feature'\] are not in the schema; "
                                                         r"known features: \['user_id', 'item_id'"),
    ("model.behavior_features={item_id: hist_missing}",
     r"behavior_features names \['hist_missing'\], absent from the schema; known features"),
    ("model.behavior_features={item_cat: hist_item_ids}", "must share one table"),
]


CASES = [
    *[(name, override, f"(?i){name}: .*{message}") for name in ("din", "dien", "bst")
      for override, message in BEHAVIOUR_CASES],
    ("dien", "model.gru_type=LSTM", r"dien: gru_type 'LSTM' is not one of \['AUGRU', 'AIGRU', 'AGRU'\]"),
    ("fibinet", "model.bilinear_type=field_pair",
     r"FiBiNET: bilinear_type must be one of \['field_all', 'field_each', 'field_interaction'\]"),
    ("edcn", "model.gate_type=GLU", r"EDCN: gate_type must be one of \['FGU', 'BGU'\], got 'GLU'"),
]


@pytest.mark.parametrize("name, override, message", CASES, ids=[f"{n}-{o.split('=')[0]}" for n, o, _ in CASES])
def test_bad_model_parameter_fails_before_any_process_group(order_data, tmp_path, name, override, message):
    config = load_config(CONFIGS / f"{name}_synthetic.yaml",
                         [override, f"data.path={order_data}", f"trainer.output_dir={tmp_path}"])
    assert not dist.is_initialized()
    with pytest.raises(ConfigError, match=message) as error:
        train(config)
    assert "\n" not in str(error.value)  # one line
    assert not dist.is_initialized()
