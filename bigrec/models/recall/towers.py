"""Two-tower building blocks of Facebook DSSM and YouTube DNN."""

from __future__ import annotations

from typing import Optional, Sequence

from bigrec.errors import ConfigError
from bigrec.features import Schema


def user_side_features(schema: Schema, model: str) -> list[str]:
    """The schema's user-side id features (a user tower's default input): never an item-side feature."""
    names = [f.name for f in schema.side("user") if f.kind != "dense"]
    if not names:
        raise ConfigError(f"{model}: the schema marks no id feature as side 'user'; set model.user_features")
    return names


def history_of(schema: Schema, features: Sequence[str], item_feature: str) -> Optional[str]:
    """The sequence feature among ``features`` reading ``item_feature``'s table (the history), or None."""
    table = schema[item_feature].table
    found = [n for n in features if n in schema and schema[n].kind == "sequence" and schema[n].table == table]
    return found[0] if found else None

