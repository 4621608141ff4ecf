"""The `hybrid` policy (ours): at a budget b, the KV heads that hold a retrieval head (score above `threshold`, or
the `top` best query heads) keep every position, best group score first, as many as the budget allows while every
other KV head keeps at least the observation window; the others share the rest evenly, with SnapKV's pick
instead of sink + recent (`budget.full_then`, `select.py`). Its bytes are the budget's, as every policy's.

Left out on purpose: per-head budgets among the other heads (that is `headkv`).
"""

from __future__ import annotations

from ..dims import full_attention_layers, kv_dims
from ..registry import register_policy
from .retrieval import RetrievalPolicy
from .snapkv import SnapKVPolicy


@register_policy("hybrid")
class HybridPolicy(RetrievalPolicy):
    """Full history for the retrieval KV heads that fit, SnapKV's pick for the others (module docstring)."""

    help = "at --kv-budget, KV heads holding a retrieval head keep every token (as many as fit), the others SnapKV's " \
           "pick"
    order = 42
    uses_budget = "required"

    def params(self) -> dict:
        return {**super().params(), **SnapKVPolicy.params(self)}

    def allot(self, model, n: int):
        from ..budget import SNAP, full_then
        from ..select import SNAP_WINDOW

        _, _, KV = kv_dims(model)
        full = self.retrieval_kv_heads(model)
        order = [lh for lh in self.ranked_kv_heads(model) if full[lh]]
        return full_then(n, self.budget, full_attention_layers(model), KV, order, SNAP, window=SNAP_WINDOW)
