"""The `snapkv` policy (Li et al. 2024, SnapKV): at a budget b, every KV head of a full-attention layer keeps
floor(b * n) positions of an n-token prompt: the last `SNAP_WINDOW` (32) prompt tokens, and the prefix positions
those tokens attend to most (their attention summed over the window and the head's query group, average-pooled
with kernel `SNAP_KERNEL` = 7). The pick is made once, after the prefill; generated tokens are all kept
(`select.py`, `budget.uniform_snap`).

Against kvpress's `SnapKVPress`: kvpress takes `compression_ratio`, the share of the prompt removed (ours:
`budget`, the share kept) and defaults to a window of 64 and a kernel of 5 (ours: 32 and 7, SnapKV's paper);
both compress the prompt once, in prefill.

Left out on purpose: re-picking during decoding and per-head budgets (that is `headkv`).
"""

from __future__ import annotations

from ..dims import full_attention_layers, kv_dims
from ..policy import KVPolicy
from ..registry import register_policy


@register_policy("snapkv")
class SnapKVPolicy(KVPolicy):
    """Every KV head keeps the same share of the prompt, picked by the observation window (module docstring)."""

    help = "at --kv-budget, every KV head keeps its share of the prompt picked by the last 32 tokens' attention " \
           "(SnapKV)"
    order = 40
    uses_budget = "required"

    def params(self) -> dict:
        from ..select import SNAP_KERNEL, SNAP_WINDOW

        return {"window": SNAP_WINDOW, "kernel": SNAP_KERNEL}

    def allot(self, model, n: int):
        from ..budget import uniform_snap
        from ..select import SNAP_WINDOW

        _, _, KV = kv_dims(model)
        return uniform_snap(n, self.budget, full_attention_layers(model), KV, SNAP_WINDOW)
