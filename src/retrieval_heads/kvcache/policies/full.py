"""The `full` policy: every KV head keeps every position; the reference the others are measured against.

Its cache is transformers' own `DynamicCache(config=...)`, so it needs no registered attention and saves nothing.
Left out on purpose: any selection (there is none).
"""

from __future__ import annotations

import numpy as np

from ..dims import kv_dims
from ..policy import KVPolicy
from ..registry import register_policy


@register_policy("full")
class FullPolicy(KVPolicy):
    """Every KV head keeps its history (its cache is transformers' own DynamicCache)."""

    help = "every KV head keeps every token (the reference; saves nothing)"
    order = 0
    compresses = False

    def full_kv_heads(self, model) -> np.ndarray:
        L, _, KV = kv_dims(model)
        return np.ones((L, KV), dtype=bool)

    def build_cache(self, model, sink: int = 4, recent: int = 256, prefill: str = "full",
                    full_heads: np.ndarray | None = None):
        from transformers import DynamicCache

        return DynamicCache(config=model.config)
