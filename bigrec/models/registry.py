"""Model registry: configs pick a model by name."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Callable, Optional, TypeVar

import torch

from bigrec.errors import ConfigError
from bigrec.features import Schema
from bigrec.models.base import RecModel
from bigrec.models.embeddings import FeatureEmbeddings, embedding_tables

_MODELS: dict[str, type[RecModel]] = {}
M = TypeVar("M", bound=type[RecModel])


def register_model(name: str) -> Callable[[M], M]:
    """Class decorator: ``@register_model("deepfm")``."""

    def wrap(cls: M) -> M:
        if name in _MODELS and _MODELS[name] is not cls:
            raise ValueError(f"model name '{name}' registered twice")
        _MODELS[name] = cls
        cls.registry_name = name
        return cls

    return wrap


def _import_zoo() -> None:
    """Import every module under ``bigrec.models`` so their decorators run."""
    import bigrec.models as package

    for info in pkgutil.walk_packages(package.__path__, prefix="bigrec.models."):
        importlib.import_module(info.name)


def available_models() -> list[str]:
    _import_zoo()
    return sorted(_MODELS)


def model_class(name: str) -> type[RecModel]:
    _import_zoo()
    if name not in _MODELS:
        raise ConfigError(f"unknown model '{name}'; available models: {sorted(_MODELS)}")
    return _MODELS[name]


def build_model(name: str, schema: Schema, params: dict, device: Optional[torch.device] = None) -> RecModel:
    """Instantiate model ``name`` with ``params``; unknown parameters are a ConfigError."""
    cls = model_class(name)
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "schema", "device")]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ConfigError(f"model '{name}' does not take parameter(s) {unknown}; it accepts {accepted}")
    model = cls(schema, **params, device=device)
    if device is not None and torch.device(device).type == "meta":
        _check_meta_parameters_reinitialisable(model)
    return model


def build_streamed_model(name: str, schema: Schema, params: dict, device: Optional[torch.device] = None) -> RecModel:
    """:func:`build_model` on ``schema`` without the histories the model never reads (:func:`unread_sequences`).

    The trainer and the planner build their models this way and stream ``model.schema``:
    the unread columns are not read, and a table such a history shared with a feature
    the model does read (MovieLens ``item_id`` and ``hist_item_ids``) becomes a pooled
    table of the model's ``EmbeddingBagCollection`` instead of an
    ``EmbeddingCollection`` of its own: one collection (lookup, input distribution)
    fewer per step. Batches must then come from ``model.schema``.
    """
    model = build_model(name, schema, params, device)
    unread = unread_sequences(model)
    if not unread:
        return model
    return build_model(name, schema.select([f.name for f in schema.features if f.name not in unread]), params, device)


def unread_sequences(model: RecModel) -> list[str]:
    """The schema's sequence features (histories) that a ranking or multi-task ``model`` never looks up.

    Such models only ever read histories through
    :class:`~bigrec.models.embeddings.FeatureEmbeddings`; recall models, which also
    read them directly, keep every history.
    """
    if model.task == "retrieval":
        return []
    read = {name for module in model.modules() if isinstance(module, FeatureEmbeddings)
            for name in module.sequence_names}
    return [f.name for f in model.schema.sequence if f.name not in read]


def _check_meta_parameters_reinitialisable(model: RecModel) -> None:
    """Every module holding meta-device parameters must be able to re-initialise them.

    ``DistributedModelParallel`` materialises meta modules with ``to_empty`` and then
    calls ``reset_parameters`` where a module has one; a weight of any other module
    (e.g. TorchRec's ``CrossNet`` kernels, ``nn.MultiheadAttention``) would train from
    uninitialised memory. Build such layers on the CPU (DMP moves them).
    """
    table_paths = {path for path, *_ in embedding_tables(model).values()}
    broken = [f"{path}.{name}" if path else name
              for path, module in model.named_modules()
              if not any(path == t or path.startswith(t + ".") for t in table_paths)
              and not hasattr(module, "reset_parameters")
              for name, p in module.named_parameters(recurse=False) if p.is_meta]
    if broken:
        raise RuntimeError(f"{type(model).__name__} builds parameters on the meta device in modules without "
                           f"reset_parameters: {broken[:4]}; DMP would leave them uninitialised, so build "
                           "those layers on the CPU (only tables need the meta device)")
