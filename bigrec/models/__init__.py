"""The model zoo: ``build_model(name, schema, params)``; see ``docs/architecture.md``."""

from bigrec.models.base import RecModel
from bigrec.models.registry import available_models, build_model, build_streamed_model, register_model

__all__ = ["RecModel", "available_models", "build_model", "build_streamed_model", "register_model"]
