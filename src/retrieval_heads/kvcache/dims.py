"""A model's attention shape as the KV cache sees it: layers, query heads, KV heads, and which layers attend fully.

Importable without torch or transformers (transformers is imported inside `layer_types`), so the policies and the
registry stay light for `rheads --help`.

Left out on purpose: anything per head or per token (the policies and the cache do that).
"""

from __future__ import annotations

import numpy as np

SLIDING_TYPES = ("sliding_attention", "chunked_attention")  # layers kept as the model defines them
FULL_TYPE = "full_attention"  # the only layers a policy can compress


def layer_types(config) -> list[str]:
    """The model's per-layer attention types, as transformers' caches read them."""
    from transformers.cache_utils import get_layer_types_and_kwargs

    return list(get_layer_types_and_kwargs(config.get_text_config(decoder=True))[0])


def kv_dims(model) -> tuple[int, int, int]:
    """(layers, query heads, KV heads) of a model."""
    text = model.config.get_text_config(decoder=True)
    H = text.num_attention_heads
    return text.num_hidden_layers, H, getattr(text, "num_key_value_heads", None) or H


def full_attention_layers(model) -> np.ndarray:
    """[L] bool: the layers a policy can compress (full attention; sliding layers keep their window)."""
    return np.array([t == FULL_TYPE for t in layer_types(model.config)], dtype=bool)
