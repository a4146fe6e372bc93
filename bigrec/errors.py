"""Errors that reach the user as one clear line instead of a stack trace."""

from __future__ import annotations

import json
from pathlib import Path


class BigrecError(Exception):
    """Base class: the CLI prints ``error: <message>`` and exits with status 2."""


class ConfigError(BigrecError):
    """A config file or override names an unknown key, model, feature or value."""


class SchemaError(BigrecError):
    """A schema is inconsistent (e.g. one table declared with two sizes)."""


class DataError(BigrecError):
    """A data file is missing, corrupt, or does not match the schema.

    The message always names the file and, where one is involved, the column.
    """

    def __init__(self, path: str, problem: str, column: str | None = None) -> None:
        where = f"{path}" if column is None else f"{path}, column '{column}'"
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.column = column
        self.problem = problem


class Preempted(BigrecError):
    """Training stopped on SIGTERM/SIGINT after writing a checkpoint; the CLI exits with ``exit_status``."""

    def __init__(self, message: str, exit_status: int) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def read_json_file(path: str | Path, error: type[BigrecError], kind: str):
    """The JSON document in ``path``; a missing or unparsable file raises ``error`` naming the file and ``kind``."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise error(f"{path}: {kind} file not found") from None
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not a valid {kind} file ({exc})") from None
