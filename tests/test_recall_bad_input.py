"""Bad input for the recall models, each with its documented rule (docs/data.md, "Recall data: edge cases"):
histories of length 0 or 1 train and evaluate (no NaN, no index error), item ids outside the vocabulary and
``num_interests`` < 1 are one clear error, an evaluation user without training history is ranked over every
item, and items the catalogue does not list are counted and read as unknown."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from bigrec.config import TaskConfig
from bigrec.data.catalogue import ItemCatalogue
from bigrec.data.parquet_io import ITEM_CATALOGUE
from bigrec.data.seen import SeenItems
from bigrec.errors import ConfigError
from bigrec.models import build_model
from bigrec.tasks import build_task
from bigrec.tasks.retrieval.metrics import FullRankingMetrics
from bigrec.tasks.retrieval.task import RetrievalStep
from tests.models.recall_helpers import sequence_batch, sequence_schema

TOWER = {"user_features": ["hist_item_ids"], "hidden_units": [16, 8], "embedding_dim": 8}
SAMPLED = {"loss": "sampled", "num_negatives": 4}
MODELS = {  # name -> (model params, task options): every recall model of the zoo
    "dssm": (TOWER, SAMPLED),
    "facebook_dssm": (TOWER, {"loss": "margin", "num_negatives": 4, "mining": "offline", "mined_count": 2}),
    "youtube_dnn": ({**TOWER, "max_seq_len": 4}, SAMPLED),
    "gru4rec": ({"hidden_size": 8, "embedding_dim": 8}, SAMPLED),
    "narm": ({"hidden_size": 8, "attention_size": 8, "embedding_dim": 8}, SAMPLED),
    "sasrec": ({"hidden_size": 8, "num_heads": 2, "num_layers": 1, "max_len": 8}, SAMPLED),
    "mind": ({"num_interests": 2, "hidden_size": 8, "embedding_dim": 8}, SAMPLED),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_histories_of_length_0_and_1_train_and_evaluate(name):
    """Rows with an empty or one-item history give finite vectors and a finite loss; a batch of empty histories
    only (no one-pass target at all) gives a finite loss too."""
    params, options = MODELS[name]
    schema = sequence_schema(embedding_dim=8)
    torch.manual_seed(0)
    model = build_model(name, schema, params)
    module = build_task(model, schema, TaskConfig(options=options)).wrap(model)
    for histories, targets in (([[], [3], [1, 2, 3]], [5, 6, 7]), ([[], []], [5, 6]), ([[4]], [9])):
        batch = sequence_batch(schema, histories, targets)
        module.train()
        loss, _ = module(batch)
        assert torch.isfinite(loss), (name, histories)
        loss.backward()
        module.eval()
        with torch.no_grad():
            _, step = module(batch)
        assert step.user.shape[0] == len(targets) and torch.isfinite(step.user).all(), (name, histories)


def test_num_interests_below_one_is_one_clear_error():
    for bad in (0, -2):
        with pytest.raises(ConfigError, match="num_interests"):
            build_model("mind", sequence_schema(), {"num_interests": bad})


def test_an_evaluation_user_without_training_history_is_ranked_over_every_item():
    """Seen items exclude nothing for a user who has none (or an id the seen table never met)."""
    items = torch.eye(5)
    seen = SeenItems.from_pairs(torch.tensor([1, 1]).numpy(), torch.tensor([3, 4]).numpy())
    metrics = FullRankingMetrics(lambda ids: items[ids], 5, torch.device("cpu"), seen, ks=(1,), padding_item=0)
    user = torch.tensor([[0.0, 0.1, 0.2, 1.0, 0.5]] * 3)  # ranks items 3, 4, 2, 1
    # user 1 saw 3 and 4: target 2 ranks first; users 2 and 99 saw nothing: target 3 first, target 2 third
    metrics.update(RetrievalStep(torch.zeros(()), {}, user, torch.tensor([2, 3, 2]), torch.tensor([1, 2, 99])))
    assert metrics.compute()["recall@1"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("column, bad", [("hist_item_ids", 41), ("item_id", 41), ("hist_item_ids", -1)])
def test_item_ids_outside_the_vocabulary_are_one_error_naming_file_and_column(tmp_path, capsys, column, bad):
    from bigrec.cli import main
    from bigrec.data.synthetic_sequences import generate_sequences

    data = tmp_path / "data"
    generate_sequences(data, num_users=60, num_items=40, num_clusters=4, min_length=4, max_length=8, history_len=8)
    table = pq.read_table(data / "train.parquet")
    values = table.column(column).to_pylist()
    values[3] = [bad] if column == "hist_item_ids" else bad
    pq.write_table(table.set_column(table.schema.get_field_index(column), column,
                                    pa.array(values, table.schema.field(column).type)), data / "train.parquet")
    config = tmp_path / "run.yaml"
    config.write_text(f"data: {{path: {data}, batch_size: 16}}\nmodel: {{name: youtube_dnn, hidden_units: [8], "
                      f"embedding_dim: 8}}\ntrainer: {{epochs: 1, output_dir: {tmp_path / 'out'}, "
                      f"progress_bar: false}}\n")
    assert main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert "train.parquet" in err and column in err and "outside [0, 41)" in err, err


def test_items_missing_from_the_catalogue_are_counted_and_read_as_unknown(tmp_path, capsys):
    """The rule: every id of the item table stays a candidate; an unlisted one reads unknown item features."""
    from bigrec.data.movielens import prepare_movielens
    from bigrec.features import Schema
    from tests.test_data_prep import _write_grouplens

    prepare_movielens(_write_grouplens(tmp_path / "raw"), tmp_path / "out", history_len=3, embedding_dim=8)
    directory = tmp_path / "out" / "recall"
    schema = Schema.load(directory / "schema.json")
    items = pq.read_table(directory / ITEM_CATALOGUE)
    dropped = items.column("item_id")[0].as_py()
    pq.write_table(items.slice(1), directory / ITEM_CATALOGUE)
    capsys.readouterr()
    catalogue = ItemCatalogue.load(directory / ITEM_CATALOGUE, schema)
    assert "1 item id(s) of [1, " in capsys.readouterr().out
    found = catalogue.lookup(torch.tensor([dropped, items.column("item_id")[1].as_py()]))
    assert found["year"][0][0] == 0 and found["year"][0][1] > 0  # unknown year, known year
    assert found["genres"][1].tolist()[0] == 0  # no genres
