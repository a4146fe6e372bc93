"""Read checkpoint files without running code from them.

A checkpoint directory is data someone may hand over, so nothing in it may run
code when bigrec reads it:

* ``ranks/rank-*.pt`` hold tensors and plain values only and are read with
  ``torch.load(weights_only=True)`` (:func:`load_plain`);
* the DCP index ``.metadata`` is a pickle; :func:`read_dcp_metadata` unpickles it
  with an allow-list of the classes DCP itself writes there (its metadata
  dataclasses, ``torch.Size``, dtypes, layouts, paths): any other global (``os.system``,
  ``builtins.eval``, ...) is refused before it is looked up;
* non-tensor values inside DCP shards are read with ``weights_only=True``
  (:class:`SafeLoadPlanner`; DCP's default planner uses ``weights_only=False``).

:class:`SafeFileSystemReader` plugs the safe index reader into ``dcp.load``.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch
from torch.distributed.checkpoint import DefaultLoadPlanner, FileSystemReader
from torch.distributed.checkpoint._traverse import set_element
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta
from torch.distributed.checkpoint.planner import ReadItem

_DCP_METADATA = "torch.distributed.checkpoint.metadata"
_ALLOWED: dict[str, set[str]] = {
    _DCP_METADATA: {"Metadata", "TensorStorageMetadata", "BytesStorageMetadata", "ChunkStorageMetadata",
                    "TensorProperties", "MetadataIndex", "StorageMeta", "_MEM_FORMAT_ENCODING"},
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch.serialization": {"_get_layout"},
    "torch": {"Size"} | {name for name, value in vars(torch).items() if isinstance(value, torch.dtype)},
    "pathlib": {"Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath"},
    "collections": {"OrderedDict"},
}


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A pickle names a global outside the allow-list."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if name in _ALLOWED.get(module, ()):
            return super().find_class(module, name)
        raise UnsafeCheckpointError(f"it references {module}.{name}, which a DCP index never holds "
                                    f"(refused without loading it)")


def read_dcp_metadata(path: str | Path) -> Metadata:
    """Unpickle a DCP ``.metadata`` file with the allow-list (UnsafeCheckpointError otherwise)."""
    with open(path, "rb") as stream:
        metadata = _RestrictedUnpickler(stream).load()
    if not isinstance(metadata, Metadata):
        raise UnsafeCheckpointError(f"it holds a {type(metadata).__name__}, not DCP Metadata")
    return metadata


class SafeFileSystemReader(FileSystemReader):
    """``FileSystemReader`` whose index is read by :func:`read_dcp_metadata`."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        if kwargs.get("rank") is not None:
            raise UnsafeCheckpointError("per-rank DCP index files are not used by bigrec")
        metadata = read_dcp_metadata(Path(self.path) / ".metadata")
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


class SafeLoadPlanner(DefaultLoadPlanner):
    """``DefaultLoadPlanner`` that reads non-tensor values with ``weights_only=True``."""

    def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
        loaded = torch.load(value, weights_only=True)
        if self.flatten_state_dict:
            set_element(self.original_state_dict, self.mappings[read_item.dest_index.fqn], loaded)
        else:
            self.state_dict[read_item.dest_index.fqn] = loaded


def load_plain(path: str | Path) -> Any:
    """``torch.load`` of a file holding tensors and plain Python values only."""
    return torch.load(path, map_location="cpu", weights_only=True)
