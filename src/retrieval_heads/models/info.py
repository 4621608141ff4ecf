"""What a loaded model is: its shape, context, sliding windows, chat template and end tokens.

`model_info` (kept on the model as `model.rheads_info` by `load_model`), `model_dims` and `model_meta` for
result files, `model_key` (what identifies the model for resuming a run directory), and `eos_ids`.

Left out on purpose: anything that loads or runs a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .registry import OFFLINE_MODELS


@dataclass
class ModelInfo:
    """What was loaded, for result files."""

    spec: str
    name: str
    family: str
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    max_context: int | None
    sliding_window: int | None
    layer_types: list[str] | None
    is_chat: bool


def model_info(model: Any, tokenizer: Any, spec: str) -> ModelInfo:
    cfg = model.config.get_text_config()
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    window = getattr(cfg, "sliding_window", None)
    if getattr(cfg, "use_sliding_window", True) is False:
        window = None
    layer_types = getattr(cfg, "layer_types", None)
    path = Path(spec).expanduser()
    if spec in OFFLINE_MODELS or not path.exists():  # a named model or a hub id names itself
        name = spec
    else:
        name = path.stem if path.is_file() else path.resolve().name
    return ModelInfo(
        spec=spec, name=name, family=cfg.model_type, num_layers=cfg.num_hidden_layers, num_heads=heads,
        num_kv_heads=getattr(cfg, "num_key_value_heads", None) or heads, head_dim=head_dim,
        max_context=getattr(cfg, "max_position_embeddings", None), sliding_window=window,
        layer_types=list(layer_types) if layer_types is not None else None,
        is_chat=bool(getattr(tokenizer, "chat_template", None)))


def model_dims(model) -> tuple[int, int, int]:
    """(layers, query heads, max context or 0)."""
    cfg = model.config.get_text_config()
    return cfg.num_hidden_layers, cfg.num_attention_heads, getattr(cfg, "max_position_embeddings", 0) or 0


def model_meta(model) -> dict[str, Any]:
    """The model's shape, for result files."""
    cfg = model.config.get_text_config()
    info = getattr(model, "rheads_info", None)
    return {
        "spec": info.spec if info is not None else getattr(model, "name_or_path", None),
        "family": cfg.model_type,
        "num_layers": cfg.num_hidden_layers,
        "num_heads": cfg.num_attention_heads,
        "num_kv_heads": getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads,
        "max_context": getattr(cfg, "max_position_embeddings", None),
        "sliding_window": getattr(cfg, "sliding_window", None),
        "layer_types": getattr(cfg, "layer_types", None),
        "name_or_path": getattr(model, "name_or_path", None),
        "dtype": str(next(model.parameters()).dtype),
    }


def model_name(model) -> str:
    """What figures call the model: the spec it was loaded from, else its name_or_path."""
    info = getattr(model, "rheads_info", None)
    return info.name if info is not None else (getattr(model, "name_or_path", None) or type(model).__name__)


def model_key(model) -> dict[str, Any]:
    """What a resumed run directory must agree on: the model's spec (name or path), dtype, family and shape."""
    meta = model_meta(model)
    return {k: meta[k] for k in ("spec", "family", "num_layers", "num_heads", "num_kv_heads", "dtype")}


def eos_ids(model, tokenizer) -> list[int]:
    """The model's EOS ids plus the usual end-of-turn tokens the tokenizer knows."""
    ids = model.generation_config.eos_token_id
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    vocab = tokenizer.get_vocab()
    for tok in ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|endoftext|>"):
        if tok in vocab and vocab[tok] not in ids:
            ids.append(vocab[tok])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids
