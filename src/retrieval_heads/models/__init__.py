"""Models: the registry of named offline models, GGUF files loaded tensor by tensor (gguf.py), the tokenizer cache, loading, and model info.

Left out on purpose: running models (that is `runtime/`).
"""

from .info import ModelInfo, eos_ids, model_dims, model_info, model_key, model_meta
from .loading import DTYPES, load_model, resolve_spec
from .registry import OFFLINE_MODELS, SPEC_NOTE, format_models_table, list_models, register_offline_model

__all__ = ["DTYPES", "OFFLINE_MODELS", "SPEC_NOTE", "ModelInfo", "eos_ids", "format_models_table", "list_models",
           "load_model", "model_dims", "model_info", "model_key", "model_meta", "register_offline_model",
           "resolve_spec"]
