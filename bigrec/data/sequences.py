"""The ``sequences`` layout of recall data: one training row per user sequence (or window).

The recall layout holds one training row per target (``train.parquet``): the
target ``item_id`` and the user's items before it, ``hist_item_ids`` (oldest
first, the most recent ``w`` = the history feature's ``max_len``). A sequence model
that trains on every position in one forward pass (GRU4Rec, NARM, SASRec) needs
each target once, so the preparers also write ``train_sequences.parquet``: the
rows that *end a window*, i.e. each user's last training row, then every
``s``-th row before it (``s`` = the *stride*, ``1 <= s <= w``). The row of target
``s_t`` holds the history ``s_{t-n} .. s_{t-1}`` (``n = min(t, w)``); position ``j``
of the history predicts ``hist[j + 1]``, the last position predicts ``item_id``,
and only the last ``s`` positions are targets (``s_{t-s+1} .. s_t``): the first
``n - s`` are *context only*, so with ``s < w`` the windows overlap and every
target of a long sequence is trained with at least ``w - s`` items before it
(not just the window's earlier items), closer to the ``w`` most recent that
evaluation reads. The windows cover every training target of position >= 1
exactly once (the first item of a sequence, which has no history, is never a
one-pass target; a user's earliest window starts at the sequence start and has
no context-only position), with the same columns and schema as the per-prefix
rows, which stay for models that need them. ``s = w`` gives disjoint windows
without context-only positions.

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


def default_stride(window: int) -> int:
    """The default stride of the sequences layout: half a window (every target sees >= ``w - s`` items)."""
    return max(1, window // 2)


def window_ends(position: np.ndarray, last: np.ndarray, stride: int) -> np.ndarray:
    """``[n]`` bool: the training rows that end a window (each user's last row, then every ``stride``-th before).

    Args:
        position: ``[n]`` index of each row's target within its user's sequence.
        last: ``[n]`` position of the user's last training target.
        stride: targets per window (<= the history length of the rows; see the module doc).
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    return (position >= 1) & (position <= last) & ((last - position) % stride == 0)


def check_stride(window: int, stride: Optional[int] = None) -> int:
    """``stride`` (``None``: :func:`default_stride`) if ``1 <= stride <= window``, else one clear error naming
    the parameter."""
    stride = default_stride(window) if stride is None else stride
    if not 1 <= stride <= window:
        raise ValueError(f"sequence stride must be in [1, history_len={window}], got {stride}")
    return int(stride)


def layout_metadata(window: int, rows: int, stride: Optional[int] = None, prefixes: str = "train.parquet") -> dict:
    """``schema.metadata["sequences"]`` of a data set that has the sequences layout.

    ``stride``: targets per window (default ``window``: disjoint windows, no context-only
    position); ``prefixes``: the per-prefix file holding every training interaction as a row.
    """
    stride = check_stride(window, window if stride is None else stride)
    return {"file": SEQUENCES_FILE, "window": int(window), "stride": stride, "rows": int(rows),
            "prefixes": prefixes,
            "targets": "the last `stride` history positions predict the next item (the last one item_id); "
                       "earlier positions are context only"}


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
