"""The `streaming` policy (StreamingLLM): every KV head of a full-attention layer on sink + recent.

At a budget (`KVConfig.budget`): every KV head keeps `floor(budget * n)` prompt positions, its first `sink` real
tokens and then the last ones (the recent window grows or shrinks to the budget), through the budget cache.

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
    uses_budget = "optional"

    def full_kv_heads(self, model) -> np.ndarray:
        if self.budget is not None:
            return super().full_kv_heads(model)
        L, _, KV = kv_dims(model)
        return np.zeros((L, KV), dtype=bool)

    def allot(self, model, n: int):
        from ..budget import WINDOW, full_then
        from ..dims import full_attention_layers

        _, _, KV = kv_dims(model)
        share = max(1, int(np.floor(self.budget * n)))
        return full_then(n, self.budget, full_attention_layers(model), KV, [], WINDOW, window=0, sink=self.sink,
                         recent=max(0, share - self.sink))
