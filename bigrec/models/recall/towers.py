"""Two-tower helpers: default tower inputs by feature side, the history among user features."""

from __future__ import annotations

from typing import Optional, Sequence

from bigrec.errors import ConfigError
from bigrec.features import Schema


def side_features(schema: Schema, side: str, model: str, parameter: str) -> list[str]:
    """The schema's id features describing ``side`` (a tower's default input); an error naming ``parameter``."""
    names = [f.name for f in schema.id_features if f.side == side]
    if not names:
        raise ConfigError(f"{model}: the schema marks no id feature as side '{side}'; set model.{parameter}")
    return names


def history_of(schema: Schema, features: Sequence[str], item_feature: str) -> Optional[str]:
    """The sequence feature among ``features`` reading ``item_feature``'s table (the history), or None."""
    table = schema[item_feature].table
    found = [n for n in features if n in schema and schema[n].kind == "sequence" and schema[n].table == table]
    return found[0] if found else None

