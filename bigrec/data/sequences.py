"""The ``sequences`` layout of recall data: one training row per user sequence (or window).

The recall layout holds one training row per target (``train.parquet``): the
target ``item_id`` and the user's items before it, ``hist_item_ids`` (oldest
first, the most recent ``w`` = the history feature's ``max_len``). A sequence model
that trains on every position in one forward pass (GRU4Rec, NARM, SASRec) needs
each target once, so the preparers also write ``train_sequences.parquet``: the
rows that *end a window*, i.e. each user's last training row, then every
``w``-th row before it. The row of target ``s_t`` (history ``s_{t-w} .. s_{t-1}``)
carries the targets ``s_{t-w+1} .. s_t``: position ``j`` of the history predicts
``hist[j + 1]``, the last position predicts ``item_id``. So the windows cover
every training target of position >= 1 exactly once (the first item of a
sequence, which has no history, is never a one-pass target), with the same
columns and schema as the per-prefix rows, which stay for models that need them.

``schema.json`` records the layout under ``metadata["sequences"]``
(:func:`layout_metadata`); :func:`check_train_layout` turns a model / data
mismatch into one error before training.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Optional

import numpy as np

from bigrec.errors import ConfigError
from bigrec.features import Schema

SEQUENCES_SPLIT = "train_sequences"
SEQUENCES_FILE = f"{SEQUENCES_SPLIT}.parquet"


def window_ends(position: np.ndarray, last: np.ndarray, window: int) -> np.ndarray:
    """``[n]`` bool: the training rows that end a window of ``window`` targets.

    Args:
        position: ``[n]`` index of each row's target within its user's sequence.
        last: ``[n]`` position of the user's last training target.
        window: targets per window (the history length of the rows).
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    return (position >= 1) & (position <= last) & ((last - position) % window == 0)


def layout_metadata(window: int, rows: int, prefixes: str = "train.parquet") -> dict:
    """``schema.metadata["sequences"]`` of a data set that has the sequences layout.

    ``prefixes``: the per-prefix file holding every training interaction as a row.
    """
    return {"file": SEQUENCES_FILE, "window": int(window), "rows": int(rows), "prefixes": prefixes,
            "targets": "every history position predicts the next item; the last one predicts item_id"}


def interactions_file(schema: Schema, spec: str) -> str:
    """The file whose rows are every interaction of ``spec``: its per-prefix file for the sequences layout.

    A window row's target is only the last item of its window, so the users' seen
    items (excluded in full ranking) are read from the per-prefix rows instead.
    """
    layout = schema.metadata.get("sequences")
    path = PurePath(spec)
    if not layout or path.name != layout["file"]:
        return spec
    return str(path.with_name(layout.get("prefixes", "train.parquet")))


def check_train_layout(schema: Schema, train: Optional[str], all_positions: bool, model: str) -> None:
    """One clear error when the training file does not match how the model trains.

    A model training every position (``all_positions``) on per-prefix rows would
    see each target up to ``window`` times; a last-position model on the
    sequences layout would see one target per window. Data without
    ``metadata["sequences"]`` (prepared elsewhere) is not checked.
    """
    layout = schema.metadata.get("sequences")
    if not layout or not train:
        return
    is_sequences = PurePath(train).name == layout["file"]
    if all_positions and not is_sequences:
        raise ConfigError(f"{model} trains every position of a sequence in one pass (all_positions: true), but "
                          f"data.train '{train}' holds one row per prefix; set data.train={layout['file']} "
                          f"(or model.all_positions=false)")
    if not all_positions and is_sequences:
        raise ConfigError(f"{model} trains on the last position of each row, but data.train '{train}' is the "
                          f"sequences layout (one row per window); set data.train=train.parquet")
