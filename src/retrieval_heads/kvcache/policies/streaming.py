"""The `streaming` policy (StreamingLLM): every KV head of a full-attention layer on sink + recent.

Left out on purpose: anything score-driven (every head is treated alike).
"""

from __future__ import annotations

import numpy as np

from ..dims import kv_dims
from ..policy import KVPolicy
from ..registry import register_policy


@register_policy("streaming")
class StreamingPolicy(KVPolicy):
    """Every KV head of a full-attention layer on sink + recent (StreamingLLM)."""

    help = "every KV head keeps sink + recent tokens (StreamingLLM)"
    order = 30

    def full_kv_heads(self, model) -> np.ndarray:
        L, _, KV = kv_dims(model)
        return np.zeros((L, KV), dtype=bool)
