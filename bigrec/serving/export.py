"""Export user and item vectors of a trained recall checkpoint, and retrieve top-K from them.

``export_embeddings(checkpoint, output)`` writes::

    OUTPUT/items.parquet   item_id int64, embedding list<float32>  (every id but the padding id)
    OUTPUT/users.parquet   user_id int64, embedding list<float32>, seen_item_ids list<int64>
                           (one row per row of the exported split, e.g. the test split;
                           a user with K interest vectors has K * dim floats, interest-major;
                           seen: every item of the user's splits before it, as in evaluation)
    OUTPUT/export.json     model, dim, interests (K), temperature, checkpoint, split

Item vectors come from the item tower over the item catalogue (every item id
with its item features), as in full-ranking evaluation.
``retrieve(export_dir, user_ids, k)`` scores users against every item by dot
product (brute-force ``torch.topk``, or FAISS ``IndexFlatIP`` when installed)
and excludes each user's seen items. With K interests per user an item's score is
its best interest's (the K top-K lists are merged).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from bigrec.config import load_config
from bigrec.data.parquet_io import write_json, write_table
from bigrec.data.stream import open_split
from bigrec.errors import ConfigError, DataError
from bigrec.features import Schema
from bigrec.models.output import score


def load_recall_model(checkpoint: str | Path):
    """``(module, task, config, schema)`` of a checkpoint directory: the recall model with its loss, on CPU,
    in eval mode (one process, no process group), and its retrieval task over the run's data."""
    from bigrec.models import build_model
    from bigrec.tasks import build_task
    from bigrec.train.checkpoint import load_model_state

    checkpoint = Path(checkpoint)
    if not (checkpoint / "config.yaml").is_file():
        raise ConfigError(f"{checkpoint}: not a bigrec checkpoint (no config.yaml); pass e.g. runs/NAME/checkpoints/best")
    config = load_config(checkpoint / "config.yaml")
    schema = Schema.load(checkpoint / "schema.json")
    model = build_model(config.model.name, schema, config.model.params, device=torch.device("cpu"))
    if model.task != "retrieval":
        raise ConfigError(f"{checkpoint}: model '{config.model.name}' is a {model.task} model; export needs a "
                          f"recall model")
    task = build_task(model, schema, config.task, config.data)
    module = task.wrap(model)
    load_model_state(checkpoint, module)
    module.eval()
    return module, task, config, schema


def _vectors_column(vectors: torch.Tensor) -> pa.Array:
    """``[N, D]`` or ``[N, K, D]`` -> one list<float32> of ``D`` (``K * D``) values per row."""
    vectors = vectors.detach().float().contiguous().reshape(vectors.shape[0], -1)
    flat = pa.array(vectors.numpy().reshape(-1), pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]).cast(pa.list_(pa.float32()))


@torch.no_grad()
def export_embeddings(checkpoint: str | Path, output: str | Path, split: str = "test", data: Optional[str] = None,
                      batch_size: int = 4096) -> dict:
    """Write ``items.parquet``, ``users.parquet`` and ``export.json`` (see the module doc)."""
    module, task, config, schema = load_recall_model(checkpoint)
    model = module.model
    padding = module.options.padding_item
    ids = torch.tensor([i for i in range(model.num_items) if i != padding], dtype=torch.int64)
    items = torch.cat([model.item_vectors(chunk) for chunk in ids.split(batch_size)]) if ids.numel() else None
    output = Path(output)
    write_table(pa.table({"item_id": pa.array(ids.numpy(), pa.int64()), "embedding": _vectors_column(items)}),
                output / "items.parquet")

    spec = data or config.data.resolve(split)
    if spec is None:
        raise ConfigError(f"the checkpoint's config has no '{split}' split; pass --data")
    dataset = open_split(spec, schema, batch_size, 0, 1)
    users, user_ids = [], []
    for batch in dataset:
        users.append(model(batch, module.no_ids).user)
        user_ids.append(module.user_ids(batch))
    users_t, user_ids_t = torch.cat(users), torch.cat(user_ids)
    interests = users_t.shape[1] if users_t.dim() == 3 else 1
    seen_lists = task.seen_items(split).lists(user_ids_t)
    write_table(pa.table({"user_id": pa.array(user_ids_t.numpy(), pa.int64()), "embedding": _vectors_column(users_t),
                          "seen_item_ids": pa.array(seen_lists, pa.list_(pa.int64()))}), output / "users.parquet")
    meta = {"model": config.model.name, "dim": int(users_t.shape[-1]), "interests": int(interests),
            "temperature": module.temperature,
            "checkpoint": str(checkpoint), "data": str(spec), "num_items": int(ids.numel()),
            "num_users": int(users_t.shape[0])}
    write_json(meta, output / "export.json")
    return meta


def _read_vectors(path: Path, id_column: str) -> tuple[np.ndarray, torch.Tensor, pa.Table]:
    if not path.is_file():
        raise DataError(str(path), "file not found; run `bigrec export` first")
    table = pq.read_table(path)
    for column in (id_column, "embedding"):
        if column not in table.column_names:
            raise DataError(str(path), "column is missing", column=column)
    ids = table.column(id_column).to_numpy()
    flat = table.column("embedding").combine_chunks().flatten().to_numpy()
    return ids, torch.from_numpy(flat.reshape(len(ids), -1).copy()), table


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def retrieve(export_dir: str | Path, user_ids: Sequence[int], k: int = 10, exclude_seen: bool = True,
             backend: str = "auto") -> dict[int, list[tuple[int, float]]]:
    """Top-``k`` ``(item_id, score)`` per user id, best first (a user's last exported row is used)."""
    if backend not in ("auto", "torch", "faiss"):
        raise ConfigError(f"backend must be auto, torch or faiss, got '{backend}'")
    if backend == "faiss" and not faiss_available():
        raise ConfigError("backend 'faiss' asked for but faiss is not installed (pip install faiss-cpu)")
    export_dir = Path(export_dir)
    item_ids, items, _ = _read_vectors(export_dir / "items.parquet", "item_id")
    all_users, vectors, table = _read_vectors(export_dir / "users.parquet", "user_id")
    last_row = {int(u): r for r, u in enumerate(all_users)}
    missing = [u for u in user_ids if int(u) not in last_row]
    if missing:
        raise DataError(str(export_dir / "users.parquet"), f"user id(s) {missing[:10]} not among the exported users")
    rows = [last_row[int(u)] for u in user_ids]
    queries = vectors[rows]
    interests = queries.shape[1] // items.shape[1]
    if interests > 1:  # [n, K * D] -> [n, K, D]: each interest retrieves, the lists are merged by score
        queries = queries.reshape(len(rows), interests, items.shape[1])
    seen = table.column("seen_item_ids").to_pylist() if exclude_seen else [[] for _ in all_users]
    extra = max((len(seen[r]) for r in rows), default=0)
    take = min(k + extra, len(item_ids))
    if interests == 1 and (backend == "faiss" or (backend == "auto" and faiss_available())):
        import faiss

        index = faiss.IndexFlatIP(items.shape[1])
        index.add(items.float().numpy())
        scores, positions = index.search(queries.float().numpy(), take)
        scores, positions = torch.from_numpy(scores), torch.from_numpy(positions)
    else:
        scores, positions = torch.topk(score(queries.float(), items.float()), take, dim=1)
    out: dict[int, list[tuple[int, float]]] = {}
    for user, row, score_row, position_row in zip(user_ids, rows, scores.tolist(), positions.tolist()):
        excluded = set(seen[row])
        ranked = [(int(item_ids[p]), s) for s, p in zip(score_row, position_row) if int(item_ids[p]) not in excluded]
        out[int(user)] = ranked[:k]
    return out
